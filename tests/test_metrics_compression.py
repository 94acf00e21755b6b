"""Compression metrics: hand-computed values, edge cases, and agreement with MONAI and
scikit-image under the documented definitions."""

import json
import math
import time

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
from vesselzip.metrics.fidelity import fidelity_sums, work_dtype

# Largest |ours - scikit-image| allowed for SSIM computed in float32 (docs/metrics.md).
SKIMAGE_ABS = 1e-6


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
    # MONAI computes in float32 the direct way; scikit-image in float64. Ours is float32
    # in a well-conditioned form (docs/metrics.md): within 1e-6 of scikit-image.
    assert ours == pytest.approx(monai_ssim(original, decoded, peak), rel=1e-4)
    assert ours == pytest.approx(skimage_ssim(original, decoded, peak), abs=SKIMAGE_ABS)


def test_ssim_across_several_tiles_agrees_with_skimage():
    # Valid region 70 x 4 x 66: five tiles of up to 16 planes along the first axis.
    original, decoded = noisy_pair(4, (80, 14, 76), noise=60.0)
    peak = float(original.max()) - float(original.min())
    assert ssim3d(original, decoded) == pytest.approx(
        skimage_ssim(original, decoded, peak), abs=SKIMAGE_ABS
    )


@pytest.mark.parametrize(
    "tile", [(1, 1, None), (2, 3, None), (5, 2, 4), (16, 32, None), (3, 4, 1), (32, 64, 96)]
)
@pytest.mark.parametrize("threads", [1, 3])
def test_tiles_partition_the_volume_exactly(tile, threads):
    # Tiny tiles put many tile edges (and the last, partial tiles) inside the volume;
    # every voxel's error is counted once and the SSIM map is summed over the valid
    # region once, whatever the tiling and however many threads.
    original, decoded = noisy_pair(9, (23, 17, 13), noise=40.0)
    decoded = np.rint(decoded).astype(np.int16)
    peak = float(original.max()) - float(original.min())
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    sums = fidelity_sums(original, decoded, c1=c1, c2=c2, tile=tile, threads=threads)
    diff = original.astype(np.float64) - decoded
    assert sums.squared_error_sum == np.sum(diff**2)  # integers: exact
    assert sums.max_abs_error == np.abs(diff).max()
    assert sums.ssim_count == 13 * 7 * 3
    assert sums.ssim_sum / sums.ssim_count == pytest.approx(
        skimage_ssim(original, decoded, peak), abs=SKIMAGE_ABS
    )
    errors_only = fidelity_sums(original, decoded, c1=None, c2=None, tile=tile, threads=threads)
    assert errors_only.squared_error_sum == sums.squared_error_sum
    assert errors_only.max_abs_error == sums.max_abs_error
    assert errors_only.ssim_count == 0


@pytest.mark.parametrize("layout", ["CC", "FF", "FC", "CF"])
def test_memory_layout_does_not_change_the_metrics(layout):
    # NIfTI volumes are read Fortran-ordered; a decoded volume may be either.
    original, decoded = noisy_pair(10, (19, 14, 12), noise=30.0)
    expected = compression_metrics(original, decoded, blob_nbytes=100)
    metrics = compression_metrics(
        np.asarray(original, order=layout[0]), np.asarray(decoded, order=layout[1]), blob_nbytes=100
    )
    assert metrics["ssim"] == pytest.approx(expected["ssim"], abs=1e-7)
    assert metrics["psnr_db"] == expected["psnr_db"]
    assert metrics["max_abs_error"] == expected["max_abs_error"]
    peak = float(original.max()) - float(original.min())
    assert metrics["ssim"] == pytest.approx(skimage_ssim(original, decoded, peak), abs=SKIMAGE_ABS)


@pytest.mark.parametrize(
    ("offset", "scale", "dtype"),
    [(0, 400, np.int16), (-30000, 300, np.int16), (60000, 2000, np.uint16), (0, 40, np.uint8)],
)
def test_float32_ssim_holds_far_from_zero_and_on_every_narrow_type(offset, scale, dtype):
    # Values far from 0 relative to their range are where float32 variances go wrong
    # when computed directly as E[x^2] - mu^2; centring s = x + y keeps them exact.
    rng = np.random.default_rng(11)
    shape = (21, 18, 25)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    info = np.iinfo(dtype)
    original = np.clip(smooth / smooth.std() * scale + offset + scale, info.min, info.max)
    original = original.astype(dtype)
    decoded = np.clip(original + rng.normal(0, scale / 20, shape), info.min, info.max)
    decoded = np.rint(decoded).astype(dtype)
    peak = float(original.max()) - float(original.min())
    assert ssim3d(original, decoded) == pytest.approx(
        skimage_ssim(original, decoded, peak), abs=SKIMAGE_ABS
    )
    # (MONAI's float32 E[x^2] - mu^2 is off by 5e-4 at the -30000 offset: not compared.)


def test_wide_types_are_measured_in_float64():
    original, decoded = noisy_pair(12, (14, 15, 16), noise=10.0)
    original = original.astype(np.float64) + 1e6  # float32 would lose the noise here
    decoded = decoded.astype(np.float64) + 1e6
    peak = float(original.max()) - float(original.min())
    assert work_dtype(original.dtype, decoded.dtype) == np.float64
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


# The pipelined round trip (vesselzip.roundtrip): encode, decode and measure at once.


@pytest.fixture
def tiny_slabs_and_tiles(monkeypatch):
    """Slabs of 4 planes and tiles of a few voxels, so that a small volume spans many
    of both and tiles start while later slabs are still being coded."""
    from vesselzip import container
    from vesselzip.metrics import fidelity

    monkeypatch.setattr(container, "SLAB_VOXELS", 1)  # the minimum: 4 planes a slab
    monkeypatch.setattr(fidelity, "SHORT_ROW_TILE", (3, 4, 5))
    monkeypatch.setattr(fidelity, "SHORT_ROWS_FROM_VOXELS", 0)
    monkeypatch.setattr(fidelity, "_WHOLE_ROWS", (3, 4, None))


def upload_volume(order: str, shape=(37, 18, 15), dtype=np.int16):
    import nibabel as nib

    from vesselzip.volumes import Volume

    original, _ = noisy_pair(12, shape, noise=0.0)
    data = np.asarray(original.astype(dtype), order=order)
    return Volume(data=data, affine=np.eye(4), header=nib.Nifti1Header())


def sequential_round_trip(volume, codec):
    from vesselzip.container import decode_volume, encode_volume

    fortran = volume.data.flags.f_contiguous and not volume.data.flags.c_contiguous
    blob = encode_volume(volume, codec)
    decoded = decode_volume(blob, order="F" if fortran else "C").data
    return blob, decoded, compression_metrics(volume.data, decoded, blob_nbytes=len(blob))


@pytest.mark.usefixtures("tiny_slabs_and_tiles")
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize(
    "spec", ["zfp:tolerance=30", "zfp:relative_tolerance=0.05", "zfp:rate=3", "zfp:reversible"]
)
def test_pipelined_round_trip_equals_the_sequential_one(order, spec, monkeypatch):
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.metrics.fidelity import FidelityPass
    from vesselzip.roundtrip import encode_decode_measure

    volume = upload_volume(order)
    codec = get_codec(parse_codec_spec(spec))
    started_early = []
    advance = FidelityPass.advance

    def counting_advance(self, planes):
        advance(self, planes)
        if planes < volume.shape[0]:
            started_early.append(self._next)

    monkeypatch.setattr(FidelityPass, "advance", counting_advance)
    result = encode_decode_measure(volume, codec)
    blob, decoded, metrics = sequential_round_trip(volume, codec)
    assert result.blob == blob  # byte for byte
    assert result.decoded.flags.f_contiguous == (order == "F")
    np.testing.assert_array_equal(result.decoded, decoded)
    timings = ("compress_s", "decompress_s", "compress_mb_s", "decompress_mb_s")
    for key, value in metrics.items():
        if key not in timings:
            assert result.metrics[key] == value, key  # the same tiles, summed exactly
    assert result.metrics["compress_s"] == result.encode_s > 0
    assert result.metrics["decompress_s"] == result.decode_s > 0
    assert result.measure_s >= 0
    # Tiles were under way before the last slab was decoded.
    assert max(started_early) > 0


def test_pipelined_metrics_of_a_single_slab_volume():
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.roundtrip import encode_decode_measure

    volume = upload_volume("F", shape=(12, 11, 13))
    codec = get_codec(parse_codec_spec("zfp:tolerance=30"))
    result = encode_decode_measure(volume, codec)
    blob, decoded, metrics = sequential_round_trip(volume, codec)
    assert result.blob == blob
    assert result.metrics["ssim"] == metrics["ssim"]
    assert result.metrics["psnr_db"] == metrics["psnr_db"]


class InFlight:
    """Counts tiles running on any thread; a tile can be made to fail."""

    def __init__(self, monkeypatch, fail_at: int | None = None):
        import threading

        from vesselzip.metrics import fidelity

        self.running = self.ran = 0
        self.lock = threading.Lock()
        run = fidelity._TiledSSIM.run

        def counted(pass_, tile):
            with self.lock:
                self.running += 1
                self.ran += 1
                number = self.ran
            try:
                if number == fail_at:
                    raise InvalidVolumeError("tile failed on purpose")
                return run(pass_, tile)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(fidelity._TiledSSIM, "run", counted)


def assert_nothing_left_running(in_flight):
    """No tile runs once the error is raised, and none starts later (cancelled tiles
    are skipped when the pool reaches them: let it reach them)."""
    from vesselzip.metrics.fidelity import THREADS, shared_pool

    assert in_flight.running == 0
    ran = in_flight.ran
    for future in [shared_pool().submit(lambda: None) for _ in range(4 * THREADS)]:
        future.result()
    assert (in_flight.ran, in_flight.running) == (ran, 0)


@pytest.mark.usefixtures("tiny_slabs_and_tiles")
@pytest.mark.parametrize("where", ["encode", "decode"])
def test_a_codec_error_mid_volume_propagates_and_stops_the_tiles(where, monkeypatch):
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.errors import CorruptBlobError
    from vesselzip.roundtrip import encode_decode_measure

    volume = upload_volume("F")
    codec = get_codec(parse_codec_spec("zfp:tolerance=30"))
    in_flight = InFlight(monkeypatch)
    expected = CorruptBlobError if where == "decode" else InvalidVolumeError
    calls = []
    name = "_encode" if where == "encode" else "decode"
    original_call = getattr(codec, name)

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            # Tiles submitted for the first slabs get a moment to start on a busy
            # machine; none submitted and the assertion below fails.
            deadline = time.monotonic() + 10.0
            while in_flight.ran == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            raise expected(f"slab 6 cannot be {where}d")
        return original_call(*args, **kwargs)

    monkeypatch.setattr(codec, name, failing)
    with pytest.raises(expected, match="slab 6"):
        encode_decode_measure(volume, codec)
    assert in_flight.ran > 0  # tiles had started before the failing slab
    assert_nothing_left_running(in_flight)


@pytest.mark.usefixtures("tiny_slabs_and_tiles")
def test_an_error_in_a_tile_thread_propagates_and_stops_the_others(monkeypatch):
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.roundtrip import encode_decode_measure

    volume = upload_volume("F")
    codec = get_codec(parse_codec_spec("zfp:tolerance=30"))
    in_flight = InFlight(monkeypatch, fail_at=3)
    with pytest.raises(InvalidVolumeError, match="on purpose"):
        encode_decode_measure(volume, codec)
    assert_nothing_left_running(in_flight)


def test_an_unsupported_dtype_is_refused_as_before():
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.roundtrip import encode_decode_measure

    volume = upload_volume("F", dtype=np.int64)
    with pytest.raises(InvalidVolumeError, match="int64"):
        encode_decode_measure(volume, get_codec(parse_codec_spec("zfp:tolerance=30")))
