"""How much smaller and how different a decoded volume is. Definitions (peak, SSIM
window and constants, ratios) are written out in docs/metrics.md; keep the two in step.

PSNR, the errors and SSIM come from one tiled pass (`vesselzip.metrics.fidelity`):
no full-size float copy of a volume is ever made. `CompressionMeasure` runs that pass
while the decoded volume is still being filled slab by slab (see
`vesselzip.roundtrip`); `compression_metrics` is the same on a complete one."""

from __future__ import annotations

import math

import numpy as np

from vesselzip.errors import InvalidVolumeError
from vesselzip.metrics.fidelity import SIGMA, WIN_SIZE, FidelityPass, FidelitySums, fidelity_sums

#: SSIM as in Wang et al. (2004) and MONAI's SSIMMetric defaults: an 11-voxel Gaussian
#: window with sigma 1.5 in every axis, K1 = 0.01, K2 = 0.03.
SSIM_WIN_SIZE = WIN_SIZE
SSIM_SIGMA = SIGMA
SSIM_K1 = 0.01
SSIM_K2 = 0.03


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


def _as_3d(volume: np.ndarray) -> np.ndarray:
    """Error sums run over 3D tiles: view any other shape as 3D (no copy when it can)."""
    if volume.ndim == 3:
        return volume
    return volume.reshape(-1, 1, 1) if volume.ndim < 3 else volume.reshape(*volume.shape[:2], -1)


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB = 10 log10(peak^2 / MSE), peak = max(original) - min(original).

    Identical volumes give +inf; a constant original that was changed gives -inf."""
    original, decoded = _check_pair(original, decoded)
    sums = fidelity_sums(_as_3d(original), _as_3d(decoded), c1=None, c2=None)
    return _psnr_from_mse(sums.squared_error_sum / original.size, data_range(original))


def _psnr_from_mse(mse: float, peak: float) -> float:
    if mse == 0.0:
        return math.inf
    if peak == 0.0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _ssim_fits(volume: np.ndarray) -> bool:
    return volume.ndim == 3 and min(volume.shape) >= SSIM_WIN_SIZE


def _fidelity_pass(original: np.ndarray, decoded: np.ndarray, peak: float) -> FidelityPass:
    """Errors, and SSIM when the window fits and the peak is not 0."""
    if _ssim_fits(original) and peak != 0.0:
        c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
        return FidelityPass(original, decoded, c1=c1, c2=c2)
    return FidelityPass(_as_3d(original), _as_3d(decoded), c1=None, c2=None)


def _measure(original: np.ndarray, decoded: np.ndarray, peak: float) -> FidelitySums:
    return _fidelity_pass(original, decoded, peak).finish()


def _ssim_from(sums: FidelitySums, peak: float) -> float:
    if sums.max_abs_error == 0.0:
        return 1.0  # identical volumes, exactly
    if peak == 0.0:
        return math.nan
    return sums.ssim_sum / sums.ssim_count


def ssim3d(original: np.ndarray, decoded: np.ndarray, *, peak: float | None = None) -> float:
    """Mean 3D SSIM over every position where the 11x11x11 Gaussian window fits inside
    the volume ("valid" region), with data range `peak` (default: the original's
    max - min). Equals MONAI's SSIMMetric(spatial_dims=3, data_range=peak) and
    scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=peak); computed in float32 for volumes
    of <= 16-bit integers or float32 (within 1e-6 of scikit-image's float64, see
    docs/metrics.md), else in float64.

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
    if peak is None:
        peak = data_range(original)
    return _ssim_from(_measure(original, decoded, peak), peak)


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
    return CompressionMeasure(original, decoded).finish(
        blob_nbytes=blob_nbytes,
        nifti_gz_nbytes=nifti_gz_nbytes,
        compress_s=compress_s,
        decompress_s=decompress_s,
    )


class CompressionMeasure:
    """`compression_metrics` of a `decoded` volume that is filled along its first axis
    while it is measured: call `advance(planes)` as leading planes become final (tiles
    whose inputs are in start on the shared pool), then `finish(...)` for the dict, or
    `cancel()` if filling it failed (no tile is left running after either)."""

    def __init__(self, original: np.ndarray, decoded: np.ndarray):
        original, decoded = _check_pair(original, decoded)
        self.original = original
        self.peak = data_range(original)
        self._pass = _fidelity_pass(original, decoded, self.peak)
        # A non-3D pair may be measured through a reshaped copy: only whole, then.
        self._streams = original.ndim == 3

    def advance(self, planes: int) -> None:
        if self._streams:
            self._pass.advance(planes)

    def cancel(self) -> None:
        self._pass.cancel()

    def finish(
        self,
        *,
        blob_nbytes: int,
        nifti_gz_nbytes: int | None = None,
        compress_s: float | None = None,
        decompress_s: float | None = None,
    ) -> dict:
        if blob_nbytes <= 0:
            self.cancel()
            raise ValueError(f"blob_nbytes must be positive, got {blob_nbytes}")
        original, peak = self.original, self.peak
        sums = self._pass.finish()
        raw_nbytes = int(original.nbytes)
        mse, max_abs_error = sums.squared_error_sum / original.size, sums.max_abs_error
        ssim = _finite_or_none(_ssim_from(sums, peak)) if _ssim_fits(original) else None
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
