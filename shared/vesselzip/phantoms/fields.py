"""Smooth random fields and the scanner: coil bias, point-spread function and
Rician noise. Shared by every field of view."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def voxel_axes(shape, spacing) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm along each axis, broadcastable to 3D."""
    axes = []
    for d, (n, s) in enumerate(zip(shape, spacing, strict=True)):
        view = [1, 1, 1]
        view[d] = n
        axes.append((np.arange(n, dtype=np.float32) * np.float32(s)).reshape(view))
    return axes


def smooth_noise(rng, shape, spacing, feature_mm: float, upsampler=None) -> np.ndarray:
    """Zero-mean, unit-std float32 random field with blobs about `feature_mm`
    across, drawn on a coarse grid and interpolated up (much faster than filtering
    at full resolution)."""
    step = np.maximum(feature_mm / 2.0 / np.asarray(spacing), 1.0)
    coarse_shape = tuple(int(math.ceil(n / s)) + 2 for n, s in zip(shape, step, strict=True))
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    field = (upsampler or upsample)(coarse, shape)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def upsample(coarse: np.ndarray, shape) -> np.ndarray:
    """Linear interpolation of a coarse grid spanning the same extent up to `shape`
    (float32), by separable products: one small matrix per axis."""
    c0, c1, c2 = coarse.shape
    up = [linear_upsampling(n, c) for n, c in zip(shape, coarse.shape, strict=True)]
    field = (up[0] @ coarse.astype(np.float32).reshape(c0, c1 * c2)).reshape(-1, c1, c2)
    field = up[1] @ field
    return (field.reshape(-1, c2) @ up[2].T).reshape(shape)


def upsample_fast(coarse: np.ndarray, shape) -> np.ndarray:
    """The same interpolation as `upsample`, skipping axes that keep their size and
    with one plain matrix product per axis (a new float32 array)."""
    (c0, c1, c2), (n0, n1, n2) = coarse.shape, shape
    field = coarse.astype(np.float32)
    if n0 != c0:
        field = (linear_upsampling(n0, c0) @ field.reshape(c0, -1)).reshape(n0, c1, c2)
    if n1 != c1:
        moved = field.transpose(1, 0, 2).reshape(c1, -1)
        field = (linear_upsampling(n1, c1) @ moved).reshape(n1, n0, c2).transpose(1, 0, 2)
        field = np.ascontiguousarray(field)
    if n2 != c2:
        field = (field.reshape(-1, c2) @ linear_upsampling(n2, c2).T).reshape(shape)
    return field


def linear_upsampling(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix interpolating n_in samples linearly to n_out."""
    if n_in == 1:
        return np.ones((n_out, 1), dtype=np.float32)
    position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.minimum(np.floor(position).astype(int), n_in - 2)
    weight = position - low
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    matrix[np.arange(n_out), low] = 1.0 - weight
    matrix[np.arange(n_out), low + 1] = weight
    return matrix


def smoothstep(x: np.ndarray, width: float) -> np.ndarray:
    """0 below -width/2, 1 above +width/2, linear in between (a partial-volume edge)."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def ellipsoid_radius(axes, centre, radii) -> np.ndarray:
    """Normalised radius (1 on the surface) of every voxel centre, float32."""
    squared = [
        ((a - float(c)) / float(r)) ** 2 for a, c, r in zip(axes, centre, radii, strict=True)
    ]
    return np.sqrt(squared[0] + squared[1] + squared[2])


def bias_field(rng, shape, spacing, style) -> np.ndarray:
    """Smooth multiplicative coil sensitivity, plus the intensity ripple at slab
    boundaries of multi-slab TOF acquisitions."""
    bias = np.exp(float(style["bias_strength"]) * smooth_noise(rng, shape, spacing, 60.0))
    if style["slab_ripple"] > 0:
        z = np.arange(shape[2]) * spacing[2]
        phase = rng.uniform(0, 2 * np.pi)
        ripple = 1.0 + style["slab_ripple"] * np.cos(2 * np.pi * z / style["slab_mm"] + phase)
        bias *= ripple.astype(np.float32)[None, None, :]
    return bias


def psf_kernel_norm(psf) -> float:
    """The L2 norm of the Gaussian point-spread function: white noise of std s
    comes out of the blur with std s * norm."""
    impulse = np.zeros((25, 25, 25), dtype=np.float32)
    impulse[12, 12, 12] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(impulse, psf) ** 2).sum()))


def acquire(rng, clean: np.ndarray, style, texture: np.ndarray | None = None) -> np.ndarray:
    """What the scanner reports: the complex signal plus white Gaussian noise in
    both channels, both blurred by the point-spread function (so the noise is
    correlated between neighbours, as on real zero-filled reconstructions), then
    the magnitude (Rician statistics). `noise_sigma` is the per-channel standard
    deviation after the blur.

    `texture`, if given, is the per-voxel standard deviation of extra white
    variation in the real channel (tissue texture finer than the point-spread
    function, which the blur then shapes like the noise); `clean` is overwritten.
    """
    psf = (style["psf_in_plane"], style["psf_in_plane"], style["psf_slices"])
    white_sigma = np.float32(style["noise_sigma"] / psf_kernel_norm(psf))
    if texture is None:
        real = clean + white_sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    else:
        # One draw serves noise and texture: independent Gaussians add in quadrature,
        # approximated here by adding their standard deviations (texture >> noise).
        texture += white_sigma
        texture *= rng.standard_normal(clean.shape, dtype=np.float32)
        clean += texture
        real = clean
        del texture
    imaginary = white_sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    # Blurring is linear, so signal and noise of a channel are blurred together.
    truncate = float(style.get("psf_truncate", 4.0))
    real = ndimage.gaussian_filter(real, psf, truncate=truncate)
    imaginary = ndimage.gaussian_filter(imaginary, psf, truncate=truncate)
    return np.hypot(real, imaginary, out=real)
