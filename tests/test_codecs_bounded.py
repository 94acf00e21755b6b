"""The codecs beyond ZFP (sz3, sperr, lerc, jpegls and the lossless floors zstd and
blosc2): each bounded mode keeps its bound on integer and float volumes of any shape,
through the container's slabs too; each codec's size is the bare library's; what a
codec cannot take is refused with the reason."""

from __future__ import annotations

import math

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_codecs import DTYPES, INTEGER_DTYPES, max_error, round_trip, smooth_volume
from vesselzip import container
from vesselzip.codecs import codec_ids, get_codec, parse_codec_spec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.errors import InvalidCodecConfigError, InvalidVolumeError
from vesselzip.volumes import Volume, read_volume

volume_shapes = st.tuples(*(st.integers(1, 13) for _ in range(3)))


def as_volume(array: np.ndarray) -> Volume:
    import nibabel as nib

    return read_volume(nib.Nifti1Image(array, np.diag([0.4, 0.4, 0.6, 1.0])).to_bytes())


def l2(decoded: np.ndarray, original: np.ndarray) -> float:
    error = decoded.astype(np.float64) - original.astype(np.float64)
    return math.sqrt(float(np.sum(error * error)))


def psnr(decoded: np.ndarray, original: np.ndarray) -> float:
    peak = float(original.max()) - float(original.min())
    error = decoded.astype(np.float64) - original.astype(np.float64)
    mse = float(np.mean(error * error))
    return math.inf if mse == 0 else 20 * math.log10(peak) - 10 * math.log10(mse)


def test_every_codec_is_registered():
    assert {"sz3", "sperr", "lerc", "jpegls", "jpeg2000", "htj2k", "zstd", "blosc2"} <= set(
        codec_ids()
    )


@pytest.mark.parametrize(
    "spec, config",
    [
        ("sz3:tolerance=500", {"id": "sz3", "mode": "tolerance", "value": 500.0}),
        ("sz3:relative_tolerance=0.01", {"id": "sz3", "mode": "relative_tolerance", "value": 0.01}),
        ("sz3:psnr=60", {"id": "sz3", "mode": "psnr", "value": 60.0}),
        ("sz3:l2norm=1e4", {"id": "sz3", "mode": "l2norm", "value": 1e4}),
        ("sperr:tolerance=5", {"id": "sperr", "mode": "tolerance", "value": 5.0}),
        ("sperr:rate=2", {"id": "sperr", "mode": "rate", "value": 2.0}),
        ("sperr:psnr=50", {"id": "sperr", "mode": "psnr", "value": 50.0}),
        ("lerc:tolerance=3", {"id": "lerc", "tolerance": 3.0}),
        ("jpegls", {"id": "jpegls", "near": 0}),
        ("jpegls:near=3", {"id": "jpegls", "near": 3}),
        ("jpeg2000:lossless", {"id": "jpeg2000", "mode": "lossless"}),
        ("jpeg2000:rate=2", {"id": "jpeg2000", "mode": "rate", "value": 2.0}),
        ("htj2k:psnr=50", {"id": "htj2k", "mode": "psnr", "value": 50.0}),
        ("zstd", {"id": "zstd", "level": 3}),
        ("zstd:level=19", {"id": "zstd", "level": 19}),
        ("blosc2", {"id": "blosc2", "level": 5}),
    ],
)
def test_specs_give_canonical_configs(spec, config):
    assert parse_codec_spec(spec) == config
    assert get_codec(config).get_config() == config


@pytest.mark.parametrize(
    "spec, message",
    [
        ("sz3:rate=2", "unknown option 'rate'"),
        ("sz3:mode=rate+value=2", "unknown sz3 mode"),
        ("sz3:tolerance=0", "above 0"),
        ("sz3:tolerance=-5", "above 0"),
        ("sz3:relative_tolerance=2", "at most 1"),
        ("sz3:psnr=nan", "numeric value"),
        ("sz3:tolerance=5+psnr=40", "one sz3 mode"),
        ("sperr:rate=100", "at most 64"),
        ("sperr:mode=reversible", "unknown sperr mode"),
        ("lerc:tolerance=-1", "at least 0"),
        ("jpegls:near=1.5", "whole number 0-255"),
        ("jpegls:near=256", "whole number 0-255"),
        ("jpeg2000:lossless=3", "takes no value"),
        ("htj2k:rate=0", "above 0"),
        ("zstd:level=0", "whole number 1-22"),
        ("blosc2:level=10", "whole number 0-9"),
        ("zstd:tolerance=5", "unknown option"),
    ],
)
def test_invalid_specs_say_why(spec, message):
    with pytest.raises(InvalidCodecConfigError, match=message):
        parse_codec_spec(spec)


# -- the bounds, on random volumes -------------------------------------------------------

POINTWISE = [
    ("sz3", "tolerance"),
    ("sperr", "tolerance"),
]


@settings(max_examples=60, deadline=None)
@given(
    codec_mode=st.sampled_from(POINTWISE),
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    tolerance=st.one_of(st.floats(0.01, 0.99), st.floats(1, 50), st.sampled_from([500.0, 1500.0])),
)
def test_a_tolerance_holds_for_every_voxel(codec_mode, dtype, shape, seed, tolerance):
    codec_id, mode = codec_mode
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    decoded, _ = round_trip(get_codec({"id": codec_id, "mode": mode, "value": tolerance}), array)
    assert max_error(decoded, array) <= tolerance


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    tolerance=st.one_of(st.just(0.0), st.floats(0.01, 0.99), st.floats(1, 50), st.just(500.0)),
)
def test_lerc_keeps_its_tolerance(dtype, shape, seed, tolerance):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    decoded, _ = round_trip(get_codec({"id": "lerc", "tolerance": tolerance}), array)
    assert max_error(decoded, array) <= tolerance


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    fraction=st.floats(1e-4, 0.2),
)
def test_sz3_relative_tolerance_is_a_fraction_of_the_range(dtype, shape, seed, fraction):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    codec = get_codec({"id": "sz3", "mode": "relative_tolerance", "value": fraction})
    decoded, _ = round_trip(codec, array)
    assert max_error(decoded, array) <= fraction * (float(array.max()) - float(array.min()))


@settings(max_examples=40, deadline=None)
@given(
    codec_id=st.sampled_from(["sz3", "sperr"]),
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    target=st.floats(20, 100),
)
def test_a_psnr_target_is_reached(codec_id, dtype, shape, seed, target):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    decoded, _ = round_trip(get_codec({"id": codec_id, "mode": "psnr", "value": target}), array)
    assert psnr(decoded, array) >= target


@settings(max_examples=30, deadline=None)
@given(
    codec_id=st.sampled_from(["jpeg2000", "htj2k"]),
    dtype=st.sampled_from(INTEGER_DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    target=st.floats(20, 90),
)
def test_image_codecs_reach_a_psnr_target(codec_id, dtype, shape, seed, target):
    low, high = (-1000, 3000) if dtype in ("int16", "int32") else (None, None)
    array = smooth_volume(np.random.default_rng(seed), shape, dtype, low=low, high=high)
    decoded, _ = round_trip(get_codec({"id": codec_id, "mode": "psnr", "value": target}), array)
    assert psnr(decoded, array) >= target


@pytest.mark.parametrize("codec_id", ["jpeg2000", "htj2k", "sperr"])
@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0, 4.0])
def test_a_rate_is_kept_within_its_bits_per_voxel(rng, codec_id, rate):
    array = smooth_volume(rng, (8, 128, 128), "int16", low=0, high=1200)
    _, payload = round_trip(get_codec({"id": codec_id, "mode": "rate", "value": rate}), array)
    assert len(payload) * 8 / array.size <= rate * (1.015 if codec_id == "sperr" else 1.0)
    if codec_id != "jpeg2000":  # its quality moves in whole dB: steps can be large
        assert len(payload) * 8 / array.size >= rate * 0.7  # and spends most of it


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    per_voxel=st.floats(0.1, 100),
)
def test_sz3_l2_norm_bound_holds(dtype, shape, seed, per_voxel):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    bound = per_voxel * math.sqrt(array.size)
    decoded, _ = round_trip(get_codec({"id": "sz3", "mode": "l2norm", "value": bound}), array)
    assert l2(decoded, array) <= bound


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(INTEGER_DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    near=st.integers(0, 255),
)
def test_jpegls_keeps_every_integer_within_near(dtype, shape, seed, near):
    rng = np.random.default_rng(seed)
    low, high = (-1000, 3000) if dtype in ("int16", "int32") else (None, None)
    array = smooth_volume(rng, shape, dtype, low=low, high=high)
    decoded, _ = round_trip(get_codec({"id": "jpegls", "near": near}), array)
    assert max_error(decoded, array) <= near


@settings(max_examples=30, deadline=None)
@given(
    spec=st.sampled_from(
        [
            "zstd",
            "zstd:level=19",
            "blosc2",
            "blosc2:level=0",
            "jpegls",
            "jpeg2000:lossless",
            "htj2k:lossless",
        ]
    ),
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
)
def test_lossless_codecs_are_exact(spec, dtype, shape, seed):
    images = spec.startswith(("jpegls", "jpeg2000", "htj2k"))
    if images and dtype not in INTEGER_DTYPES:
        return
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    if images and dtype in ("int16", "int32", "uint16"):
        array = smooth_volume(np.random.default_rng(seed), shape, dtype, low=0, high=65535)
    decoded, _ = round_trip(get_codec(parse_codec_spec(spec)), array)
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    "spec, check",
    [
        ("sz3:l2norm=2000", "l2"),
        ("sz3:psnr=45", "psnr"),
        ("sperr:psnr=45", "psnr"),
        ("sz3:relative_tolerance=0.002", "relative"),
    ],
)
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_whole_volume_bounds_hold_across_the_containers_slabs(monkeypatch, rng, spec, check, dtype):
    monkeypatch.setattr(container, "SLAB_VOXELS", 3000)  # many slabs of a small volume
    array = smooth_volume(rng, (29, 17, 23), dtype)
    volume = as_volume(array)
    codec = get_codec(parse_codec_spec(spec))
    assert container.slab_planes(array.shape) < array.shape[0]
    decoded = decode_volume(encode_volume(volume, codec)).data
    if check == "l2":
        assert l2(decoded, array) <= codec.value
    elif check == "psnr":
        assert psnr(decoded, array) >= codec.value
    else:
        assert max_error(decoded, array) <= codec.value * (float(array.max()) - float(array.min()))


# -- what the codecs cannot take ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", ["jpegls:near=1", "jpeg2000:lossless", "htj2k:rate=2"])
def test_image_codecs_refuse_float_volumes(rng, dtype, spec):
    with pytest.raises(InvalidVolumeError, match="integer volumes"):
        get_codec(parse_codec_spec(spec)).encode(smooth_volume(rng, (4, 5, 6), dtype))


def test_jpegls_refuses_more_than_16_bits(rng):
    array = smooth_volume(rng, (4, 5, 6), "int32", low=0, high=70000)
    with pytest.raises(InvalidVolumeError, match="16-bit"):
        get_codec({"id": "jpegls", "near": 1}).encode(array)


@pytest.mark.parametrize("spec", ["sz3:tolerance=1", "sperr:rate=2", "lerc:tolerance=1", "zstd"])
def test_unsupported_dtypes_are_refused(spec):
    with pytest.raises(InvalidVolumeError, match="dtype"):
        get_codec(parse_codec_spec(spec)).encode(np.zeros((4, 4, 4), dtype=np.complex64))


# -- sizes against the bare libraries ----------------------------------------------------


@pytest.fixture(scope="module")
def tof_like() -> np.ndarray:
    """A 96x128x128 int16 volume: smooth tissue, noise and bright tubes."""
    rng = np.random.default_rng(7)
    array = smooth_volume(rng, (96, 128, 128), "int16", low=0, high=400).astype(np.int32)
    _, y, x = np.ogrid[:96, :128, :128]
    for cy, cx in [(40, 40), (90, 70), (64, 100)]:
        array[np.broadcast_to(((y - cy) ** 2 + (x - cx) ** 2) < 9, array.shape)] += 600
    return array.astype(np.int16)


def bare_size(spec: str, array: np.ndarray) -> int:
    """The size the library alone gives for the same coding, called directly."""
    codec = get_codec(parse_codec_spec(spec))
    work = array.astype(np.float32)
    if codec.codec_id == "sz3":
        from pysz import sz, szConfig, szErrorBoundMode

        config = szConfig()
        config.errorBoundMode = szErrorBoundMode.ABS
        config.absErrorBound = float(math.floor(codec.value))
        return len(sz.compress(work, config)[0])
    if codec.codec_id == "sperr":
        mode = {"tolerance": "pwe", "rate": "bpp"}[codec.mode]
        value = float(math.floor(codec.value)) if mode == "pwe" else codec.value
        return len(imagecodecs.sperr_encode(work, value, mode))
    if codec.codec_id == "lerc":
        return len(imagecodecs.lerc_encode(array, codec.tolerance))
    if codec.codec_id == "jpegls":
        shifted = (array.astype(np.int32) - array.min()).astype(np.uint16)
        return sum(len(imagecodecs.jpegls_encode(plane, level=codec.near)) for plane in shifted)
    if codec.codec_id in ("jpeg2000", "htj2k"):  # lossless: the reversible wavelet
        shifted = (array.astype(np.int32) - array.min()).astype(np.uint16)
        if codec.codec_id == "htj2k":
            return sum(len(imagecodecs.htj2k_encode(plane, reversible=True)) for plane in shifted)
        return sum(
            len(imagecodecs.jpeg2k_encode(plane, level=0, reversible=True, numthreads=1))
            for plane in shifted
        )
    if codec.codec_id == "zstd":
        return len(imagecodecs.zstd_encode(array.tobytes(), level=codec.level))
    return len(
        imagecodecs.blosc2_encode(
            array.tobytes(), level=codec.level, compressor="zstd", shuffle=1, typesize=2
        )
    )


@pytest.mark.parametrize(
    "spec",
    [
        "sz3:tolerance=5",
        "sz3:tolerance=50",
        "sperr:tolerance=5",
        "sperr:rate=1",
        "lerc:tolerance=5",
        "jpegls:near=2",
        "jpegls",
        "jpeg2000:lossless",
        "htj2k:lossless",
        "zstd",
        "blosc2",
    ],
)
def test_compression_ratio_is_the_bare_librarys_within_2_percent(tof_like, spec):
    volume = as_volume(tof_like)
    ours = len(encode_volume(volume, get_codec(parse_codec_spec(spec))))
    bare = bare_size(spec, tof_like)
    assert abs(tof_like.nbytes / ours - tof_like.nbytes / bare) <= 0.02 * tof_like.nbytes / bare
