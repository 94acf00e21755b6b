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


def shade(segments, style, bias_c, coarse_spacing, spacing) -> np.ndarray:
    """Inflow signal at both ends of each segment: fading with the path since the
    slab entry (columns 8-9 hold it), saturating within each slab from its bottom,
    times the coil bias; never below `min_contrast` times tissue."""
    shaded = np.empty((len(segments), 2))
    step = style["slab_mm"] - style["slab_overlap_mm"]
    for end in (0, 1):
        points = segments[:, 3 * end : 3 * end + 3]
        path = np.maximum(segments[:, 8 + end], 0.0)
        fade = style["fade_floor"] + (1 - style["fade_floor"]) * np.exp(-path / style["fade_mm"])
        in_slab = slab_position(points[:, 2], style) * step
        saturation = np.exp(-in_slab / style["slab_saturation_mm"])
        index = ((points + 0.5 * spacing) / coarse_spacing - 0.5).T
        bias = ndimage.map_coordinates(bias_c, index, order=1, mode="nearest")
        signal = style["inflow"] * fade * saturation
        shaded[:, end] = bias * np.maximum(signal, style["min_contrast"] * style["tissue_level"])
    return shaded
