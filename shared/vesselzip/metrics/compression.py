"""How much smaller and how different a decoded volume is. Definitions (peak, SSIM
window and constants, ratios) are written out in docs/metrics.md; keep the two in step.

Large volumes are processed in chunks so no full-size float64 copy of a volume is
ever made."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import ndimage

from vesselzip.errors import InvalidVolumeError

#: SSIM as in Wang et al. (2004) and MONAI's SSIMMetric defaults: an 11-voxel Gaussian
#: window with sigma 1.5 in every axis, K1 = 0.01, K2 = 0.03.
SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# SSIM is computed in float64 on blocks of up to this many valid voxels per axis
# (74^3 input voxels with the window's halo), which keeps memory to tens of MB.
_SSIM_BLOCK = 64
# Voxels per float64 chunk when accumulating errors (32 MB).
_CHUNK_VOXELS = 1 << 22


def _check_pair(original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    original = np.asarray(original)
    decoded = np.asarray(decoded)
    if original.shape != decoded.shape:
        raise InvalidVolumeError(
            f"decoded volume has shape {decoded.shape}, original has {original.shape}; "
            "they must match voxel for voxel"
        )
    if original.ndim == 0 or original.size == 0:
        raise InvalidVolumeError("cannot compare empty volumes")
    return original, decoded


def data_range(volume: np.ndarray) -> float:
    """The peak used by PSNR and SSIM: max(volume) - min(volume)."""
    return float(np.max(volume)) - float(np.min(volume))


def _error_stats(original: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(mean squared error, max absolute error), accumulated in float64 over slabs of
    whole planes, so any memory layout (NIfTI data is often Fortran-ordered) works
    without copying the volume."""
    squared_sum = 0.0
    max_abs = 0.0
    plane_voxels = max(1, original.size // max(1, original.shape[0]))
    planes = max(1, _CHUNK_VOXELS // plane_voxels)
    for first in range(0, original.shape[0], planes):
        diff = original[first : first + planes].astype(np.float64)
        diff -= decoded[first : first + planes]
        squared_sum += float(np.sum(diff * diff))
        max_abs = max(max_abs, float(np.max(np.abs(diff))))
    return squared_sum / original.size, max_abs


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB = 10 log10(peak^2 / MSE), peak = max(original) - min(original).

    Identical volumes give +inf; a constant original that was changed gives -inf."""
    original, decoded = _check_pair(original, decoded)
    mse, _ = _error_stats(original, decoded)
    return _psnr_from_mse(mse, data_range(original))


def _psnr_from_mse(mse: float, peak: float) -> float:
    if mse == 0.0:
        return math.inf
    if peak == 0.0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim3d(original: np.ndarray, decoded: np.ndarray, *, peak: float | None = None) -> float:
    """Mean 3D SSIM over every position where the 11x11x11 Gaussian window fits inside
    the volume ("valid" region), with data range `peak` (default: the original's
    max - min). Equals MONAI's SSIMMetric(spatial_dims=3, data_range=peak) and
    scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=peak), computed in float64.

    Identical volumes give 1.0. A constant original that was changed gives NaN (SSIM
    is undefined with a zero data range). Raises InvalidVolumeError when the volume
    is not 3D or is smaller than the window along some axis."""
    original, decoded = _check_pair(original, decoded)
    if original.ndim != 3:
        raise InvalidVolumeError(f"SSIM needs a 3D volume, got {original.ndim} dimensions")
    if min(original.shape) < SSIM_WIN_SIZE:
        raise InvalidVolumeError(
            f"SSIM needs at least {SSIM_WIN_SIZE} voxels along every axis, got {original.shape}"
        )
    if np.array_equal(original, decoded):
        return 1.0
    if peak is None:
        peak = data_range(original)
    if peak == 0.0:
        return math.nan
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    ssim_sum = 0.0
    ssim_count = 0
    for block in _ssim_blocks(original.shape):
        ssim_map = _ssim_map(original[block], decoded[block], c1, c2)
        ssim_sum += float(ssim_map.sum())
        ssim_count += ssim_map.size
    return ssim_sum / ssim_count


def _ssim_blocks(shape: tuple[int, ...]):
    """Input blocks whose valid regions tile the volume's valid region exactly."""
    halo = SSIM_WIN_SIZE - 1
    starts_per_axis = [range(0, n - halo, _SSIM_BLOCK) for n in shape]
    for starts in itertools.product(*starts_per_axis):
        yield tuple(
            slice(start, min(start + _SSIM_BLOCK, n - halo) + halo)
            for start, n in zip(starts, shape, strict=True)
        )


def _valid_local_mean(values: np.ndarray) -> np.ndarray:
    """Gaussian-weighted window mean at every position where the whole window fits.
    One axis at a time, cropping after each pass: the boundary mode never reaches
    what is kept, and later passes run on less data."""
    radius = SSIM_WIN_SIZE // 2
    for axis in range(values.ndim):
        values = ndimage.gaussian_filter1d(values, SSIM_SIGMA, axis=axis, radius=radius)
        values = np.moveaxis(np.moveaxis(values, axis, 0)[radius:-radius], 0, axis)
    return values


def _ssim_map(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> np.ndarray:
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mu_x = _valid_local_mean(x)
    mu_y = _valid_local_mean(y)
    var_x = _valid_local_mean(x * x) - mu_x * mu_x
    var_y = _valid_local_mean(y * y) - mu_y * mu_y
    cov_xy = _valid_local_mean(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/NaN: undefined or infinite values are reported as None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _megabytes_per_second(nbytes: int, seconds: float | None) -> float | None:
    if seconds is None or seconds <= 0:
        return None
    return nbytes / 1e6 / seconds


def compression_metrics(
    original: np.ndarray,
    decoded: np.ndarray,
    *,
    blob_nbytes: int,
    nifti_gz_nbytes: int | None = None,
    compress_s: float | None = None,
    decompress_s: float | None = None,
) -> dict:
    """Size, fidelity and speed of one compressed volume, as a JSON-safe dict.

    `original` must be in its stored dtype (e.g. int16): the raw size is its nbytes.
    Values that are undefined or infinite are None: psnr_db for a lossless round trip
    (see max_abs_error == 0), ssim for volumes smaller than the SSIM window, speeds
    without timings, cr_nifti_gz without a .nii.gz size."""
    original, decoded = _check_pair(original, decoded)
    if blob_nbytes <= 0:
        raise ValueError(f"blob_nbytes must be positive, got {blob_nbytes}")
    raw_nbytes = int(original.nbytes)
    mse, max_abs_error = _error_stats(original, decoded)
    peak = data_range(original)
    try:
        ssim = _finite_or_none(ssim3d(original, decoded, peak=peak))
    except InvalidVolumeError:
        ssim = None
    return {
        "raw_nbytes": raw_nbytes,
        "blob_nbytes": int(blob_nbytes),
        "cr_raw": raw_nbytes / blob_nbytes,
        "cr_nifti_gz": None if nifti_gz_nbytes is None else nifti_gz_nbytes / blob_nbytes,
        "bits_per_voxel": 8.0 * blob_nbytes / original.size,
        "psnr_db": _finite_or_none(_psnr_from_mse(mse, peak)),
        "ssim": ssim,
        "max_abs_error": max_abs_error,
        "rmse": math.sqrt(mse),
        "compress_s": None if compress_s is None else float(compress_s),
        "decompress_s": None if decompress_s is None else float(decompress_s),
        "compress_mb_s": _megabytes_per_second(raw_nbytes, compress_s),
        "decompress_mb_s": _megabytes_per_second(raw_nbytes, decompress_s),
    }
