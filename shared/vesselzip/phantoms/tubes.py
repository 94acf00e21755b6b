"""Tubes to voxels: partial-volume fraction and signal of a union of tapered
segments, and the mask rule (a voxel is vessel when at least half of it is inside
a tube)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .phantom import check_shape


def vessel_mask(segments: np.ndarray, shape, spacing) -> np.ndarray:
    """The exact mask (uint8 0/1) of tubes given as `Phantom.segments` rows, by the
    same rule as the phantom's own mask: vessel where at least half the voxel is
    inside a tube. With a phantom's segments, shape and spacing it reproduces
    `phantom.vessels`; with altered ones it shows how much the mask moves when the
    geometry does."""
    spacing = np.asarray(spacing, dtype=np.float64)
    fraction, _ = rasterise(
        np.asarray(segments), check_shape(shape), spacing, voxel_blur_mm(spacing)
    )
    return mask_of(fraction)


def voxel_blur_mm(spacing: np.ndarray) -> float:
    """A voxel averages the object over its own box: a Gaussian of the same
    variance (sigma = size / sqrt(12)) stands in for it."""
    return float(np.prod(spacing) ** (1 / 3)) / math.sqrt(12.0)


def mask_of(fraction: np.ndarray) -> np.ndarray:
    return (fraction >= 0.5).astype(np.uint8)


def segment_boxes(segments, shape, spacing, blur_mm) -> tuple[np.ndarray, np.ndarray]:
    """Voxel bounding boxes [lo, hi) of the segments, clipped to the volume."""
    shape_arr = np.asarray(shape)
    start, end = segments[:, 0:3], segments[:, 3:6]
    reach = segments[:, 6:8].max(axis=1, keepdims=True) + 3.0 * blur_mm
    lo = np.floor((np.minimum(start, end) - reach) / spacing).astype(int)
    hi = np.ceil((np.maximum(start, end) + reach) / spacing).astype(int) + 1
    return np.clip(lo, 0, shape_arr), np.clip(hi, 0, shape_arr)


def rasterise(
    segments, shape, spacing, blur_mm, wall_darkening=0.0, region=None
) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fraction and vessel signal of the union of tubes.

    Each segment is evaluated only in its bounding box; per voxel the largest
    fraction (and largest fraction x brightness) over segments wins. Segments with
    boxes of the same (rounded-up) size are evaluated together as one array.
    `wall_darkening` dims the lumen towards the wall (slower laminar flow there
    is more saturated), 0 for a flat profile. `region`, a voxel box (lo, hi) of the
    volume, returns only that part (voxel values are the same as in the whole).
    """
    shape_arr = np.asarray(shape)
    region_lo = np.zeros(3, dtype=int) if region is None else np.asarray(region[0])
    region_hi = shape_arr if region is None else np.asarray(region[1])
    out_shape = tuple(int(n) for n in region_hi - region_lo)
    fraction = np.zeros(int(np.prod(out_shape)), dtype=np.float32)
    signal = np.zeros_like(fraction)
    if len(segments) == 0:
        return fraction.reshape(out_shape), signal.reshape(out_shape)
    lo, hi = segment_boxes(segments, shape, spacing, blur_mm)
    lo, hi = np.clip(lo, region_lo, region_hi), np.clip(hi, region_lo, region_hi)
    keep = np.all(hi > lo, axis=1)
    segments, lo, hi = segments[keep], lo[keep], hi[keep]
    box = -(-(hi - lo) // 2) * 2  # round box sizes up to even numbers of voxels
    for size in np.unique(box, axis=0):
        group = np.flatnonzero(np.all(box == size, axis=1))
        per_chunk = max(1, 2_000_000 // int(np.prod(size)))
        for first in range(0, len(group), per_chunk):
            rows = group[first : first + per_chunk]
            flat, frac, shine = _segment_voxels(
                segments[rows],
                lo[rows],
                size,
                hi[rows],
                spacing,
                region_lo,
                out_shape,
                blur_mm,
                wall_darkening,
            )
            np.maximum.at(fraction, flat, frac)
            np.maximum.at(signal, flat, frac * shine)
    return fraction.reshape(out_shape), signal.reshape(out_shape)


def _segment_voxels(segments, lo, size, hi, spacing, region_lo, out_shape, blur_mm, wall_darkening):
    """For segments whose boxes share `size`: flat indices (in the output region)
    of the voxels they touch, the fill fraction there and the lumen brightness."""
    n = len(segments)
    start = segments[:, 0:3]
    direction = segments[:, 3:6] - start
    length2 = np.maximum((direction**2).sum(axis=1), 1e-12)
    index, offset, inside = [], [], []
    for d in range(3):
        view = [n, 1, 1, 1]
        view[d + 1] = int(size[d])
        voxel = lo[:, d : d + 1] + np.arange(size[d])  # (n, size)
        index.append((voxel - region_lo[d]).reshape(view))
        inside.append((voxel < hi[:, d : d + 1]).reshape(view))
        offset.append((voxel * spacing[d] - start[:, d : d + 1]).reshape(view).astype(np.float32))

    def per_segment(values):
        return values.reshape(n, 1, 1, 1).astype(np.float32)

    dx, dy, dz = (per_segment(direction[:, d]) for d in range(3))
    t = (offset[0] * dx + offset[1] * dy + offset[2] * dz) / per_segment(length2)
    np.clip(t, 0.0, 1.0, out=t)
    dist = np.sqrt(
        (offset[0] - t * dx) ** 2 + (offset[1] - t * dy) ** 2 + (offset[2] - t * dz) ** 2
    )
    r_a, r_b, b_a, b_b = (per_segment(segments[:, c]) for c in range(6, 10))
    radius = r_a + (r_b - r_a) * t
    # Only voxels within reach of the tube surface get the (costly) profile.
    near = inside[0] & inside[1] & inside[2] & (dist < radius + 3.0 * blur_mm)
    frac = tube_fraction(dist[near], radius[near], math.sqrt(2.0) * blur_mm)
    useful = frac > 1e-3
    flat = np.broadcast_to(
        (index[0] * out_shape[1] + index[1]) * out_shape[2] + index[2], near.shape
    )
    shine = np.broadcast_to(b_a + (b_b - b_a) * t, near.shape)[near][useful]
    wall = np.minimum(dist[near][useful] / radius[near][useful], 1.0) ** 2
    return flat[near][useful], frac[useful], shine * (1.0 - wall_darkening * wall)


def tube_fraction(dist, radius, sqrt2_blur):
    """Fraction of a blurred voxel filled by a tube of `radius` at distance `dist`.

    Across the tube this is a slab profile (difference of error functions), scaled
    so that the centre matches the exact value for a Gaussian-blurred disc,
    1 - exp(-r^2 / 2 sigma^2). That keeps sub-voxel vessels faint instead of
    bright and thin.
    """
    scale = np.float32(1.0 / sqrt2_blur)
    slab = 0.5 * (special.erf((radius - dist) * scale) + special.erf((radius + dist) * scale))
    centre_disc = -np.expm1(-((radius * scale) ** 2))
    centre_slab = special.erf(radius * scale)
    return slab * (centre_disc / centre_slab)
