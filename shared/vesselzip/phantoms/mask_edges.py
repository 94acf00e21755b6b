"""Partial volume at the borders of a binary vessel mask.

A real mask says only which voxels are vessel. The vessel wall lies somewhere
between a vessel voxel and its non-vessel neighbour: taken here as halfway
between their centres, so a voxel's signed distance to the wall is half the
distance to the nearest voxel centre of the other kind (positive inside). The
fraction of the voxel inside the vessel is then the generator's edge profile (an
error function, as in `tubes.tube_fraction`) of that distance, with the blur of
the voxel's own extent (`voxel_blur_mm`) widened once more by the uncertainty of
where within the voxel the wall really runs: sigma = sqrt(2) x voxel blur.

Vessel voxels therefore fill more than half, their neighbours less than half:
`fraction >= 0.5` is exactly the mask (the generator's own mask rule), while the
borders fade over about a voxel (in-plane neighbours of a 0.3 x 0.3 x 0.6 mm
grid: 0.83 inside, 0.17 outside). Only distances up to EDGE_REACH sigmas matter,
so only neighbours that close are looked at.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import special

from .tubes import voxel_blur_mm

#: Beyond this many sigmas of signed distance a voxel is all vessel or all tissue.
EDGE_REACH = 3.0


def edge_sigma_mm(spacing) -> float:
    return math.sqrt(2.0) * voxel_blur_mm(np.asarray(spacing, dtype=np.float64))


def neighbour_offsets(spacing, reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxel offsets (m, 3) whose centres lie within `reach_mm`, nearest first, and
    their lengths in mm."""
    spacing = np.asarray(spacing, dtype=np.float64)
    span = [range(-int(reach_mm // s), int(reach_mm // s) + 1) for s in spacing]
    offsets = np.array([o for o in itertools.product(*span) if any(o)], dtype=np.int64)
    lengths = np.linalg.norm(offsets * spacing, axis=1)
    keep = lengths <= reach_mm
    order = np.argsort(lengths[keep], kind="stable")
    return offsets[keep][order], lengths[keep][order]


def occupancy(vessels, flat, coords, spacing, brightness) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each voxel inside a vessel, and the vessel signal there (fraction x
    the `brightness` of the nearest vessel voxel), as float32 arrays of the mask's
    shape. `flat`, `coords` are the vessel voxels (`mask_paths.vessel_voxels`),
    `brightness` their signal."""
    shape = vessels.shape
    sigma = edge_sigma_mm(spacing)
    offsets, lengths = neighbour_offsets(spacing, 2.0 * EDGE_REACH * sigma)
    is_vessel = vessels.ravel()
    # Distance from each vessel voxel to the nearest non-vessel centre, and from each
    # non-vessel voxel to the nearest vessel centre with that vessel voxel's
    # brightness; inf where none is within reach (all vessel, or all tissue).
    depth = np.full(len(flat), np.inf, dtype=np.float32)
    nearest = np.full(vessels.size, np.inf, dtype=np.float32)
    signal = np.zeros(vessels.size, dtype=np.float32)
    brightness = np.asarray(brightness, dtype=np.float32)
    for offset, length in zip(offsets, lengths, strict=True):
        neighbour = coords + offset
        inside = np.all((neighbour >= 0) & (neighbour < np.asarray(shape)), axis=1)
        source = np.flatnonzero(inside)
        target = np.ravel_multi_index(tuple(neighbour[inside].T), shape)
        wall = ~is_vessel[target]
        source, target = source[wall], target[wall]
        depth[source] = np.minimum(depth[source], length)
        # Each offset reaches every target at most once, and nearer offsets come first.
        closer = length < nearest[target]
        nearest[target[closer]] = length
        signal[target[closer]] = brightness[source[closer]]
    fringe = np.flatnonzero(np.isfinite(nearest))
    outside = _edge_fraction(-nearest[fringe], sigma)
    fraction = nearest
    fraction.fill(0.0)
    fraction[fringe] = outside
    signal[fringe] *= outside
    inner = _edge_fraction(depth, sigma)
    fraction[flat] = inner
    signal[flat] = inner * brightness
    return fraction.reshape(shape), signal.reshape(shape)


def _edge_fraction(distance_between_centres, sigma: float) -> np.ndarray:
    """Share of a voxel inside the wall, the wall halfway to the nearest centre of
    the other kind (signed: positive inside)."""
    return special.ndtr(np.asarray(distance_between_centres) / (2.0 * sigma)).astype(np.float32)
