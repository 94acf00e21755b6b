"""Compression metrics: hand-computed values, edge cases, and agreement with MONAI and
scikit-image under the documented definitions."""

import json
import math

import numpy as np
import pytest
import torch
import zfpy
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import PSNRMetric, SSIMMetric
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vesselzip.errors import InvalidVolumeError
from vesselzip.metrics.compression import compression_metrics, psnr, ssim3d


def noisy_pair(seed: int, shape, noise: float = 25.0):
    """An int16 MRA-like volume (smooth, non-negative) and a float32 noisy copy."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    original = np.clip(smooth / smooth.std() * 400 + 300, 0, None).astype(np.int16)
    decoded = (original + rng.normal(0, noise, shape)).astype(np.float32)
    return original, decoded


def monai_ssim(original, decoded, peak) -> float:
    metric = SSIMMetric(spatial_dims=3, data_range=peak, kernel_type="gaussian", win_size=11)
    x = torch.from_numpy(np.asarray(decoded, dtype=np.float32))[None, None]
    y = torch.from_numpy(np.asarray(original, dtype=np.float32))[None, None]
    return metric(x, y).item()


def skimage_ssim(original, decoded, peak) -> float:
    return structural_similarity(
        original.astype(np.float64),
        decoded.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=peak,
    )


def test_psnr_hand_computed():
    original = np.zeros((4, 5, 6), dtype=np.int16)
    original[1, 2, 3] = 100  # peak 100
    decoded = original.astype(np.float32) + 1.0  # MSE 1
    assert psnr(original, decoded) == pytest.approx(40.0)


def test_psnr_peak_is_the_original_range_not_its_maximum():
    original = np.full((3, 3, 3), 1000, dtype=np.int16)
    original[0, 0, 0] = 1100  # range 100, max 1100
    decoded = original - 1
    assert psnr(original, decoded) == pytest.approx(40.0)


def test_psnr_of_identical_volumes_is_infinite():
    original, _ = noisy_pair(0, (8, 9, 10))
    assert psnr(original, original.copy()) == math.inf


def test_psnr_of_a_changed_constant_volume():
    original = np.full((4, 4, 4), 7, dtype=np.int16)
    assert psnr(original, original + 1) == -math.inf


def test_psnr_agrees_with_monai_and_skimage():
    original, decoded = noisy_pair(1, (13, 17, 19))
    peak = float(original.max() - original.min())
    metric = PSNRMetric(max_val=peak)
    expected = metric(
        torch.from_numpy(decoded.astype(np.float64))[None, None],
        torch.from_numpy(original.astype(np.float64))[None, None],
    ).item()
    assert psnr(original, decoded) == pytest.approx(expected, rel=1e-9)
    from_skimage = peak_signal_noise_ratio(
        original.astype(np.float64), decoded.astype(np.float64), data_range=peak
    )
    assert psnr(original, decoded) == pytest.approx(from_skimage, rel=1e-9)


def test_psnr_over_several_chunks_and_mixed_memory_layouts():
    # More than the 4 Mi voxels accumulated at a time, and the original in Fortran
    # order as nibabel often returns it while the decoded volume is in C order.
    rng = np.random.default_rng(2)
    shape = (161, 160, 170)
    original = np.asfortranarray(rng.integers(0, 2000, shape, dtype=np.int16))
    decoded = (original + rng.normal(0, 3, shape)).astype(np.float32)
    diff = original.astype(np.float64) - decoded.astype(np.float64)
    peak = float(original.max()) - float(original.min())
    expected = 10 * math.log10(peak**2 / np.mean(diff**2))
    assert psnr(original, decoded) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_constant_volumes_hand_computed():
    # Constant volumes: no variance, so SSIM is the luminance term alone.
    original = np.full((12, 12, 12), 100.0)
    decoded = np.full((12, 12, 12), 90.0)
    c1 = (0.01 * 100) ** 2
    expected = (2 * 100 * 90 + c1) / (100**2 + 90**2 + c1)
    assert ssim3d(original, decoded, peak=100.0) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_identical_volumes_is_one():
    original, _ = noisy_pair(3, (11, 12, 13))
    assert ssim3d(original, original.copy()) == 1.0
    constant = np.zeros((11, 11, 11), dtype=np.int16)
    assert ssim3d(constant, constant) == 1.0


def test_ssim_of_a_changed_constant_volume_is_undefined():
    constant = np.zeros((11, 11, 11), dtype=np.int16)
    assert math.isnan(ssim3d(constant, constant + 1))


def test_ssim_needs_the_window_to_fit():
    with pytest.raises(InvalidVolumeError, match="11 voxels"):
        ssim3d(np.zeros((10, 20, 20)), np.zeros((10, 20, 20)))
    with pytest.raises(InvalidVolumeError, match="3D"):
        ssim3d(np.zeros((20, 20)), np.zeros((20, 20)))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(11, 31), st.integers(11, 31), st.integers(11, 31)),
    noise=st.floats(1.0, 300.0),
)
def test_ssim_agrees_with_monai_and_skimage(seed, shape, noise):
    original, decoded = noisy_pair(seed, shape, noise)
    peak = float(original.max()) - float(original.min())
    ours = ssim3d(original, decoded)
    # MONAI computes in float32; scikit-image in float64 like us.
    assert ours == pytest.approx(monai_ssim(original, decoded, peak), rel=1e-4)
    assert ours == pytest.approx(skimage_ssim(original, decoded, peak), rel=1e-9)


def test_ssim_across_several_blocks_agrees_with_skimage():
    # Valid region 70 x 4 x 66: two blocks of up to 64 along the first and last axes.
    original, decoded = noisy_pair(4, (80, 14, 76), noise=60.0)
    peak = float(original.max()) - float(original.min())
    assert ssim3d(original, decoded) == pytest.approx(
        skimage_ssim(original, decoded, peak), rel=1e-9
    )


def test_compression_metrics_hand_computed():
    original = np.zeros((10, 10, 10), dtype=np.int16)  # 2000 raw bytes
    original[0, 0, 0] = 200
    decoded = original.astype(np.float32)
    decoded[5, 5, 5] = 2.0  # one voxel off by 2

    metrics = compression_metrics(
        original,
        decoded,
        blob_nbytes=500,
        nifti_gz_nbytes=1000,
        compress_s=0.001,
        decompress_s=0.004,
    )

    assert metrics["raw_nbytes"] == 2000
    assert metrics["blob_nbytes"] == 500
    assert metrics["cr_raw"] == pytest.approx(4.0)
    assert metrics["cr_nifti_gz"] == pytest.approx(2.0)
    assert metrics["bits_per_voxel"] == pytest.approx(4.0)
    assert metrics["max_abs_error"] == pytest.approx(2.0)
    assert metrics["rmse"] == pytest.approx(math.sqrt(4 / 1000))
    assert metrics["psnr_db"] == pytest.approx(10 * math.log10(200**2 / (4 / 1000)))
    assert metrics["compress_mb_s"] == pytest.approx(2.0)
    assert metrics["decompress_mb_s"] == pytest.approx(0.5)
    assert metrics["compress_s"] == 0.001
    assert metrics["decompress_s"] == 0.004
    assert metrics["ssim"] is None  # 10 voxels per axis: smaller than the SSIM window
    json.dumps(metrics, allow_nan=False)


def test_compression_metrics_of_a_lossless_round_trip_are_json_safe():
    original, _ = noisy_pair(5, (12, 12, 12))
    metrics = compression_metrics(original, original.copy(), blob_nbytes=1234)
    assert metrics["psnr_db"] is None  # infinite
    assert metrics["max_abs_error"] == 0.0
    assert metrics["rmse"] == 0.0
    assert metrics["ssim"] == 1.0
    for key in ("cr_nifti_gz", "compress_mb_s", "decompress_mb_s", "compress_s", "decompress_s"):
        assert metrics[key] is None
    json.dumps(metrics, allow_nan=False)


def test_compression_metrics_ssim_is_ssim3d():
    original, decoded = noisy_pair(6, (12, 13, 14))
    metrics = compression_metrics(original, decoded, blob_nbytes=100)
    assert metrics["ssim"] == ssim3d(original, decoded)
    assert 0.0 < metrics["ssim"] < 1.0


def test_compression_metrics_of_small_and_constant_volumes():
    small = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    metrics = compression_metrics(small, small + 1, blob_nbytes=10, compress_s=0.0)
    assert metrics["ssim"] is None  # smaller than the SSIM window
    assert metrics["psnr_db"] == pytest.approx(20 * math.log10(26))
    assert metrics["compress_mb_s"] is None  # a zero time gives no speed
    json.dumps(metrics, allow_nan=False)

    constant = np.zeros((11, 11, 11), dtype=np.uint8)
    metrics = compression_metrics(constant, constant + 1, blob_nbytes=10)
    assert metrics["psnr_db"] is None
    assert metrics["ssim"] is None
    json.dumps(metrics, allow_nan=False)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(InvalidVolumeError, match="shape"):
        compression_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)), blob_nbytes=1)
    with pytest.raises(InvalidVolumeError, match="shape"):
        psnr(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)))


@pytest.mark.parametrize("tolerance", [5.0, 50.0])
def test_zfp_error_bound_shows_in_the_metrics(tolerance):
    original, _ = noisy_pair(7, (24, 20, 16))
    blob = zfpy.compress_numpy(original.astype(np.float32), tolerance=tolerance)
    decoded = zfpy.decompress_numpy(blob)

    metrics = compression_metrics(original, decoded, blob_nbytes=len(blob))

    assert 0.0 < metrics["max_abs_error"] <= tolerance
    assert metrics["rmse"] <= metrics["max_abs_error"]
    peak = float(original.max()) - float(original.min())
    assert metrics["psnr_db"] >= 20 * math.log10(peak / tolerance)
    assert metrics["cr_raw"] == pytest.approx(original.nbytes / len(blob))


def test_zfp_fixed_rate_gives_the_requested_bits_per_voxel():
    original, _ = noisy_pair(8, (32, 32, 32))  # whole 4x4x4 blocks, so no padding
    blob = zfpy.compress_numpy(original.astype(np.float32), rate=4)
    decoded = zfpy.decompress_numpy(blob)

    metrics = compression_metrics(original, decoded, blob_nbytes=len(blob))

    # The zfpy stream adds a small header to the 4 bits per voxel.
    assert metrics["bits_per_voxel"] == pytest.approx(4.0, rel=0.01)
    assert metrics["cr_raw"] == pytest.approx(16 / 4, rel=0.01)
    assert 0.0 < metrics["ssim"] < 1.0
