"""A training-free vessel segmenter: multi-scale Frangi vesselness (bright tubes on
a darker background, as in TOF-MRA) followed by a threshold. It needs no weights,
so users can run and compare without a checkpoint.

Scales are in millimetres and converted per axis with the voxel spacing, so an
anisotropic volume is filtered with the same physical kernels along every axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Progress = Callable[[float], None]
#: Voxel size per axis in mm: a sequence or an array.
Spacing = Sequence[float] | np.ndarray

# Slabs of this many voxels are diagonalised at a time, bounding the 3x3 stack's memory.
_EIGEN_CHUNK_VOXELS = 1 << 20
# Largest filter scale in voxels: a kernel's cost grows with its width, and a scale
# beyond a quarter of the volume (or this many voxels) measures no tube in it.
MAX_SIGMA_VOXELS = 16.0


@dataclass(frozen=True)
class FrangiConfig:
    sigmas_mm: tuple[float, ...] = (0.5, 0.8, 1.2, 1.8)
    alpha: float = 0.5  # plate vs line sensitivity
    beta: float = 0.5  # blob vs line sensitivity
    # Vesselness (normalised to its maximum) above this fraction is vessel. Chosen on
    # phantoms (Dice 0.6-0.77 there, against 0.34-0.54 for Otsu, which is used when None).
    threshold: float | None = 0.05
    # Voxels darker than this fraction of the robust maximum intensity are never
    # vessel: removes ridges in noise and background.
    min_intensity_fraction: float = 0.15


def hessian_eigenvalues(
    image: np.ndarray, sigma_mm: float, spacing: Spacing
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues of the scale-normalised Hessian (per mm), sorted by magnitude
    |l1| <= |l2| <= |l3|, each float32 with the image's shape."""
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    largest = np.minimum(MAX_SIGMA_VOXELS, np.maximum(np.asarray(image.shape) / 4.0, 0.5))
    sigma_vox = np.minimum(sigma_mm / spacing_mm, largest)
    hessian = np.empty((3, 3) + image.shape, dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            # Per-voxel derivatives to per-mm, then sigma^2 (in mm) for scale
            # normalisation: together sigma_i * sigma_j in voxels.
            scale = sigma_vox[i] * sigma_vox[j]
            component = ndimage.gaussian_filter(image, sigma_vox, order=order, mode="nearest")
            component *= np.float32(scale)
            hessian[i, j] = component
            hessian[j, i] = component
    flat = hessian.reshape(3, 3, -1)
    eigen = np.empty((3, flat.shape[2]), dtype=np.float32)
    for start in range(0, flat.shape[2], _EIGEN_CHUNK_VOXELS):
        block = np.moveaxis(flat[:, :, start : start + _EIGEN_CHUNK_VOXELS], 2, 0)
        values = np.linalg.eigvalsh(block)
        by_magnitude = np.argsort(np.abs(values), axis=1)
        eigen[:, start : start + _EIGEN_CHUNK_VOXELS] = np.take_along_axis(
            values, by_magnitude, axis=1
        ).T
    del hessian, flat
    return (
        eigen[0].reshape(image.shape),
        eigen[1].reshape(image.shape),
        eigen[2].reshape(image.shape),
    )


def frangi_vesselness(
    image: np.ndarray,
    spacing: Spacing,
    config: FrangiConfig = FrangiConfig(),
    progress: Progress | None = None,
) -> np.ndarray:
    """Maximum over scales of Frangi's vesselness for bright tubes, float32 in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    vesselness = np.zeros(image.shape, dtype=np.float32)
    for k, sigma in enumerate(config.sigmas_mm):
        l1, l2, l3 = hessian_eigenvalues(image, sigma, spacing)
        abs2, abs3 = np.abs(l2), np.abs(l3) + np.float32(1e-10)
        plate = abs2 / abs3  # R_A
        blob = np.abs(l1) / (np.sqrt(abs2 * abs3) + np.float32(1e-10))  # R_B
        structure = np.sqrt(l1**2 + l2**2 + l3**2)  # S
        c = max(float(structure.max()) / 2, 1e-10)
        v = (1 - np.exp(-(plate**2) / (2 * config.alpha**2))) * np.exp(
            -(blob**2) / (2 * config.beta**2)
        )
        v *= 1 - np.exp(-(structure**2) / (2 * c**2))
        v[(l2 > 0) | (l3 > 0)] = 0  # bright vessels only
        np.maximum(vesselness, v, out=vesselness)
        if progress is not None:
            progress((k + 1) / (len(config.sigmas_mm) + 1))
    peak = float(vesselness.max())
    if peak > 0:
        vesselness /= peak
    return vesselness


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Threshold that maximises the between-class variance of `values`."""
    counts, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centers) / np.maximum(weight_low, 1)
    total_mean = (counts * centers).sum() / max(weight_low[-1], 1)
    mean_high = (total_mean * weight_low[-1] - mean_low * weight_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centers[int(np.argmax(between))])


def frangi_mask(
    image: np.ndarray,
    spacing: Spacing,
    config: FrangiConfig = FrangiConfig(),
    progress: Progress | None = None,
) -> np.ndarray:
    """uint8 0/1 vessel mask of `image` (same shape)."""
    vesselness = frangi_vesselness(image, spacing, config, progress)
    if config.threshold is None:
        positive = vesselness[vesselness > 1e-3]
        threshold = otsu_threshold(positive) if positive.size else 1.0
    else:
        threshold = config.threshold
    mask = vesselness > threshold
    bright = np.percentile(image, 99.9)
    mask &= image >= config.min_intensity_fraction * bright
    if progress is not None:
        progress(1.0)
    return mask.astype(np.uint8)
