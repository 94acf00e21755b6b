"""The stationary background of a whole head: its tissue (`head.render_tissue`),
the dural sinuses, the coil bias and the multi-slab dimming, drawn on a coarse grid
(about 1 mm) spanning the volume. The point-spread function blurs these edges anyway,
and a coarse grid keeps a 512x512x160 volume fast; it is interpolated up once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fields import acquire, smooth_noise, upsample_fast
from .head import dural_sinuses, render_tissue
from .inflow import slab_tissue
from .phantom import INT16_MAX
from .tubes import rasterise, voxel_blur_mm

#: Background anatomy is drawn on a grid of about this size (mm), in-plane and across.
COARSE_MM = (1.0, 1.0, 1.2)


@dataclass
class Background:
    """Stationary tissue of a whole head on a coarse grid spanning the volume (coil
    bias and the multi-slab dimming applied), with the brain weight and the bias."""

    tissue: np.ndarray
    brain: np.ndarray
    bias: np.ndarray
    spacing: np.ndarray  # coarse voxel size, mm


def draw_background(
    rng,
    shape,
    spacing,
    anatomy,
    style,
    head_coords,
    to_volume,
    slab_offset_mm: float = 0.0,
    bias_span_mm: float | None = None,
) -> Background:
    """The head's tissue, dural sinuses and coil bias on a ~1 mm grid over the volume.

    `head_coords(grid)` maps coarse voxel centres (..., 3), in mm of the volume's
    axes from its first voxel, to the head-frame x, y, z arrays; `to_volume` maps
    head-frame points back. Axis 2 is the slab axis; `slab_offset_mm` is how far
    above the first slice of the acquisition the volume's first slice lies.
    `bias_span_mm`, if given, draws the bias over at least that extent around the
    volume, so a small crop varies as gently as a part of a head's coil field
    rather than holding a whole field's variation."""
    shape_arr = np.asarray(shape)
    coarse_shape = tuple(
        int(min(n, math.ceil(n * s / c))) for n, s, c in zip(shape, spacing, COARSE_MM, strict=True)
    )
    coarse_spacing = shape_arr * spacing / np.asarray(coarse_shape)
    shift = 0.5 * coarse_spacing - 0.5 * spacing  # coarse centre 0, in volume mm
    axes = [
        np.arange(n, dtype=np.float32) * np.float32(c) + np.float32(o)
        for n, c, o in zip(coarse_shape, coarse_spacing, shift, strict=True)
    ]
    coords = head_coords(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1))
    tissue_c, brain_c = render_tissue(rng, coords, coarse_spacing, anatomy, style)
    del coords
    veins = vein_segments(anatomy, style, to_volume, shift)
    vein_fraction, vein_signal = rasterise(
        veins, coarse_shape, coarse_spacing, voxel_blur_mm(coarse_spacing)
    )
    tissue_c = tissue_c * (1.0 - vein_fraction) + vein_signal
    bias_shape = coarse_shape
    if bias_span_mm is not None:
        bias_shape = tuple(
            max(n, math.ceil(bias_span_mm / c))
            for n, c in zip(coarse_shape, coarse_spacing, strict=True)
        )
    bias_c = smooth_noise(rng, bias_shape, coarse_spacing, 70.0, upsample_fast)
    if bias_shape != coarse_shape:
        first = [(b - n) // 2 for b, n in zip(bias_shape, coarse_shape, strict=True)]
        bias_c = bias_c[tuple(slice(f, f + n) for f, n in zip(first, coarse_shape, strict=True))]
    bias_c = np.exp(style["bias_strength"] * bias_c)
    z_coarse = axes[2].astype(np.float64) + slab_offset_mm
    tissue_c *= bias_c * slab_tissue(z_coarse, style).astype(np.float32)[None, None, :]
    return Background(tissue_c, brain_c, bias_c, coarse_spacing)


def vein_segments(anatomy, style, to_volume, shift) -> np.ndarray:
    """Dural sinuses as tubes on the coarse grid (positions relative to its first
    centre). Venous blood is saturated: dim, sometimes partly visible."""
    level = style["tissue_level"] * style["vein_ratio"]
    rows = []
    for points, radius in dural_sinuses(anatomy):
        p = to_volume(points) - shift
        shine = np.full(len(p), level)
        if style["veins_visible"]:  # the lower, sigmoid part catches some inflow
            shine *= 1.0 + np.clip((-np.asarray(points)[:, 2] - 10.0) / 30.0, 0.0, 1.0)
        rows.append(
            np.column_stack(
                [p[:-1], p[1:], np.full((len(p) - 1, 2), radius), shine[:-1], shine[1:]]
            )
        )
    return np.vstack(rows)


def scan_image(
    rng: np.random.Generator,
    fraction: np.ndarray,
    signal: np.ndarray,
    tissue_coarse: np.ndarray,
    style: dict,
) -> np.ndarray:
    """What the scanner records of a rendered head: the vessels' signal replaces the
    tissue it displaces (partial volume, computed in place in `fraction`), then the
    point-spread function, texture and Rician noise (`acquire`); rounded and clipped
    to int16's range, still float32."""
    tissue = upsample_fast(tissue_coarse, fraction.shape)
    np.subtract(1.0, fraction, out=fraction)
    fraction *= tissue
    fraction += signal
    tissue *= np.float32(style["fine_texture"])
    noisy = acquire(rng, fraction, style, texture=tissue)
    del tissue
    np.rint(noisy, out=noisy)
    np.clip(noisy, 0, INT16_MAX, out=noisy)
    return noisy
