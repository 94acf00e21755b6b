"""Time-of-flight signal of flowing blood: fresh inflow is bright and saturates
with the path it travels, and again within each slab of a multi-slab acquisition
(the "venetian blind" of projections), where stationary tissue also dims."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def slab_position(z, style) -> np.ndarray:
    """Depth (0-1) of each z (mm from the first slice) within its acquisition slab."""
    step = style["slab_mm"] - style["slab_overlap_mm"]
    return (np.asarray(z) % step) / step


def slab_tissue(z, style) -> np.ndarray:
    """Stationary tissue dims towards the top of each slab (the 'venetian blind')."""
    return 1.0 - style["slab_ripple"] * slab_position(z, style)


def inflow_signal(z, path, style) -> np.ndarray:
    """Blood signal before the coil bias, at heights `z` (mm from the first slice)
    after `path` mm travelled since the slab entry: fading with the path,
    saturating within each slab from its bottom; never below `min_contrast` times
    tissue."""
    step = style["slab_mm"] - style["slab_overlap_mm"]
    path = np.maximum(path, 0.0)
    fade = style["fade_floor"] + (1 - style["fade_floor"]) * np.exp(-path / style["fade_mm"])
    in_slab = slab_position(z, style) * step
    saturation = np.exp(-in_slab / style["slab_saturation_mm"])
    signal = style["inflow"] * fade * saturation
    return np.maximum(signal, style["min_contrast"] * style["tissue_level"])


def coarse_value(field_c, points, coarse_spacing, spacing) -> np.ndarray:
    """A field drawn on the coarse background grid (e.g. the coil bias), linearly
    interpolated at points (n, 3) in mm from the first full-resolution voxel."""
    index = ((points + 0.5 * spacing) / coarse_spacing - 0.5).T
    return ndimage.map_coordinates(field_c, index, order=1, mode="nearest")


def shade(segments, style, bias_c, coarse_spacing, spacing) -> np.ndarray:
    """Inflow signal at both ends of each segment (`inflow_signal` of the path since
    the slab entry, which columns 8-9 hold), times the coil bias."""
    shaded = np.empty((len(segments), 2))
    for end in (0, 1):
        points = segments[:, 3 * end : 3 * end + 3]
        bias = coarse_value(bias_c, points, coarse_spacing, spacing)
        shaded[:, end] = bias * inflow_signal(points[:, 2], segments[:, 8 + end], style)
    return shaded
