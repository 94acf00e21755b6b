"""The codec registry, the `none` codec and the `zfp` codec's guarantees."""

import importlib.util
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vesselzip.codecs import (
    Codec,
    codec_config_from_options,
    codec_ids,
    get_codec,
    parse_codec_spec,
    register_codec,
)
from vesselzip.codecs import base as codec_base
from vesselzip.codecs.zfp import fixed_rate_nbytes, stream_header, working_dtype
from vesselzip.errors import CorruptBlobError, InvalidCodecConfigError, InvalidVolumeError

DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "float32", "float64"]
INTEGER_DTYPES = ["uint8", "int8", "int16", "uint16", "int32"]


def smooth_volume(rng, shape, dtype, *, low=None, high=None) -> np.ndarray:
    """A smooth field plus noise spanning [low, high] (default: a slice of the dtype range)."""
    dtype = np.dtype(dtype)
    if low is None:
        low, high = (-3000, 3000) if dtype.kind == "f" else _integer_span(dtype)
    axes = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    field = np.sin(axes[0]) * np.cos(axes[1]) + 0.5 * np.sin(axes[2])
    field = field + 0.3 * rng.standard_normal(shape)
    span = field.max() - field.min()
    field = (field - field.min()) / (span if span > 0 else 1.0)
    values = low + field * (high - low)
    if dtype.kind in "iu":
        return np.rint(values).astype(dtype)
    return values.astype(dtype)


def _integer_span(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    if dtype == np.int32:
        return -(2**30), 2**30  # beyond float32's exact integers on purpose
    return int(info.min), int(info.max)


def round_trip(codec: Codec, array: np.ndarray) -> tuple[np.ndarray, bytes]:
    payload = codec.encode(array)
    decoded = codec.decode(payload, array.shape, array.dtype)
    assert decoded.shape == array.shape
    assert decoded.dtype == array.dtype
    return decoded, payload


def max_error(decoded: np.ndarray, original: np.ndarray) -> float:
    if original.dtype.kind in "iu":  # exact integer arithmetic
        return float(np.max(np.abs(decoded.astype(np.int64) - original.astype(np.int64))))
    return float(np.max(np.abs(decoded.astype(np.float64) - original.astype(np.float64))))


# --- registry and specs -------------------------------------------------------------


def test_registry_lists_the_codecs():
    assert {"none", "zfp"} <= set(codec_ids())
    assert get_codec({"id": "none"}).describe() == "none"


@pytest.mark.parametrize(
    ("spec", "config", "label"),
    [
        ("none", {"id": "none"}, "none"),
        ("zfp:rate=2", {"id": "zfp", "mode": "rate", "value": 2}, "zfp rate=2"),
        (
            "zfp:tolerance=500",
            {"id": "zfp", "mode": "tolerance", "value": 500},
            "zfp tolerance=500",
        ),
        ("zfp:tolerance=1e+3", {"id": "zfp", "mode": "tolerance", "value": 1000}, None),
        (
            "zfp:relative_tolerance=0.01",
            {"id": "zfp", "mode": "relative_tolerance", "value": 0.01},
            "zfp relative_tolerance=0.01",
        ),
        ("zfp:precision=12", {"id": "zfp", "mode": "precision", "value": 12}, "zfp precision=12"),
        ("zfp:reversible", {"id": "zfp", "mode": "reversible"}, "zfp reversible"),
        ("zfp:mode=rate+value=4", {"id": "zfp", "mode": "rate", "value": 4}, "zfp rate=4"),
        (" zfp:rate=2.5+backend=zfpy ", {"id": "zfp", "mode": "rate", "value": 2.5}, None),
    ],
)
def test_specs_parse_to_canonical_configs(spec, config, label):
    parsed = parse_codec_spec(spec)
    assert parsed == config
    codec = get_codec(parsed)
    assert codec.get_config() == parsed
    assert get_codec(codec.get_config()) == codec
    if label:
        assert codec.describe() == label


def test_a_grid_of_specs_splits_on_commas():
    grid = "none,zfp:rate=2,zfp:tolerance=1e+3+backend=zfpy"
    configs = [parse_codec_spec(spec) for spec in grid.split(",")]
    assert [c.get("mode") for c in configs] == [None, "rate", "tolerance"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"id": "mgard"}, "unknown codec"),
        ({"mode": "rate"}, "'id'"),
        ({"id": "zfp", "mode": "lossy", "value": 1}, "unknown zfp mode"),
        ({"id": "zfp", "mode": "rate"}, "numeric value"),
        ({"id": "zfp", "mode": "rate", "value": "2"}, "numeric value"),
        ({"id": "zfp", "mode": "rate", "value": 0}, "between 0.25 and 64"),
        ({"id": "zfp", "mode": "rate", "value": 0.2}, "between 0.25 and 64"),
        ({"id": "zfp", "mode": "rate", "value": 65}, "between 0.25 and 64"),
        ({"id": "zfp", "mode": "tolerance", "value": -1}, "above 0"),
        ({"id": "zfp", "mode": "tolerance", "value": float("nan")}, "numeric value"),
        ({"id": "zfp", "mode": "tolerance", "value": float("inf")}, "numeric value"),
        ({"id": "zfp", "mode": "relative_tolerance", "value": 1.5}, "at most 1"),
        ({"id": "zfp", "mode": "precision", "value": 2.5}, "whole number"),
        ({"id": "zfp", "mode": "precision", "value": 0}, "whole number"),
        ({"id": "zfp", "mode": "reversible", "value": 3}, "takes no value"),
        ({"id": "zfp", "mode": "rate", "value": 2, "backend": "zstd"}, "unknown zfp backend"),
        ({"id": "zfp", "mode": "rate", "value": 2, "level": 3}, "unknown option"),
        ({"id": "none", "level": 3}, "unknown option"),
    ],
)
def test_invalid_configs_are_refused(config, message):
    with pytest.raises(InvalidCodecConfigError, match=message):
        get_codec(config)


@pytest.mark.parametrize(
    "spec", ["lz4", "zfp:rate", "zfp:rate=", "zfp:rate=2+tolerance=3", "zfp:=2", "zfp:rate=x"]
)
def test_invalid_specs_are_refused(spec):
    with pytest.raises(InvalidCodecConfigError):
        parse_codec_spec(spec)


@pytest.mark.parametrize(
    ("codec_id", "options", "spec"),
    [
        ("none", {}, "none"),
        ("zfp", {"rate": "2"}, "zfp:rate=2"),
        ("zfp", {"tolerance": "1e+3", "backend": "zfpy"}, "zfp:tolerance=1e+3+backend=zfpy"),
        ("zfp", {"reversible": None}, "zfp:reversible"),
        ("zfp", {"mode": "rate", "value": "4"}, "zfp:mode=rate+value=4"),
    ],
)
def test_options_give_what_their_spec_gives(codec_id, options, spec):
    assert codec_config_from_options(codec_id, options) == parse_codec_spec(spec)


@pytest.mark.parametrize(
    ("codec_id", "options", "message"),
    [
        ("lz4", {}, "unknown codec 'lz4'; available"),
        ("zfp", {"rate": None}, "numeric value"),
        ("zfp", {"rate": "x"}, "numeric value"),
        ("zfp", {"rate": "9" * 400}, "numeric value"),
        ("zfp", {"fastest": "1"}, "fastest"),
        ("zfp", {"rate=2+backend": "pyzfp"}, "unknown option"),
    ],
)
def test_invalid_options_are_refused_as_their_spec_is(codec_id, options, message):
    with pytest.raises(InvalidCodecConfigError, match=re.escape(message)):
        codec_config_from_options(codec_id, options)


def test_a_new_codec_is_one_registered_class(monkeypatch):
    monkeypatch.setattr(codec_base, "_registry", dict(codec_base._registry))  # undone after

    @register_codec
    class NegateCodec(Codec):
        codec_id = "test-negate"

        def get_config(self):
            return {"id": self.codec_id}

        def encode(self, array):
            return (-array).tobytes()

        def decode(self, payload, shape, dtype):
            return -np.frombuffer(payload, dtype=dtype).reshape(shape)

        def describe(self):
            return "negate"

    assert "test-negate" in codec_ids()
    codec = get_codec(parse_codec_spec("test-negate"))
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    np.testing.assert_array_equal(round_trip(codec, array)[0], array)


# --- none ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_none_codec_is_exact_and_raw_sized(rng, dtype):
    array = smooth_volume(rng, (5, 6, 7), dtype)
    decoded, payload = round_trip(get_codec({"id": "none"}), array)
    np.testing.assert_array_equal(decoded, array)
    assert len(payload) == array.nbytes


def test_none_codec_refuses_a_payload_of_the_wrong_size():
    with pytest.raises(CorruptBlobError):
        get_codec({"id": "none"}).decode(b"\0" * 10, (2, 2, 2), np.dtype("int16"))


# --- zfp: reversible, rate, precision -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 9, 3), (8, 8, 8)])
def test_reversible_is_bit_exact(rng, dtype, shape):
    array = smooth_volume(rng, shape, dtype)
    decoded, _ = round_trip(get_codec({"id": "zfp", "mode": "reversible"}), array)
    np.testing.assert_array_equal(decoded, array)


def test_reversible_keeps_int32_extremes_and_odd_floats():
    ints = np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max, 2**24 + 1, -7] * 4, np.int32)
    floats = np.array([1e-30, -3.3e38, 1 / 3, 0.0] * 4, np.float32)
    codec = get_codec({"id": "zfp", "mode": "reversible"})
    for array in (ints.reshape(2, 2, 4), floats.reshape(4, 2, 2)):
        np.testing.assert_array_equal(round_trip(codec, array)[0], array)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32", "float64", "int32"])
@pytest.mark.parametrize("shape", [(4, 4, 4), (5, 9, 3), (13, 1, 7), (17, 16, 15)])
@pytest.mark.parametrize("rate", [0.25, 0.3, 1, 2, 3.7, 8, 16, 32])
def test_fixed_rate_size_is_exactly_as_predicted(rng, dtype, shape, rate):
    array = smooth_volume(rng, shape, dtype)
    codec = get_codec({"id": "zfp", "mode": "rate", "value": rate})
    decoded, payload = round_trip(codec, array)
    assert len(payload) == fixed_rate_nbytes(shape, array.dtype, rate)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rate", [33, 64])
def test_fixed_rate_size_with_a_long_header(dtype, rate):
    array = np.linspace(0, 1, 6 * 5 * 4, dtype=dtype).reshape(6, 5, 4)
    payload = get_codec({"id": "zfp", "mode": "rate", "value": rate}).encode(array)
    assert len(payload) == fixed_rate_nbytes(array.shape, array.dtype, rate)


def test_fixed_rate_matches_the_paper_compression_ratios(rng):
    # The paper: int16 volumes through float32, rate 2 -> 7.96:1, rate 16 -> 0.995:1.
    array = smooth_volume(rng, (64, 64, 48), "int16", low=0, high=1200)
    ratios = {}
    for rate in (2, 4, 8, 16):
        _, payload = round_trip(get_codec({"id": "zfp", "mode": "rate", "value": rate}), array)
        ratios[rate] = array.nbytes / len(payload)
    assert ratios[2] == pytest.approx(8.0, rel=1e-3)
    assert ratios[4] == pytest.approx(4.0, rel=1e-3)
    assert ratios[8] == pytest.approx(2.0, rel=1e-3)
    assert ratios[16] == pytest.approx(1.0, rel=1e-3)


def test_lossy_integer_output_is_rounded_and_clipped_to_the_dtype(rng):
    # Values at the very ends of the range overshoot when coded at a low rate.
    for dtype in ("int16", "uint8", "uint16"):
        info = np.iinfo(dtype)
        array = np.where(rng.random((12, 12, 12)) < 0.5, info.min, info.max).astype(dtype)
        decoded, _ = round_trip(get_codec({"id": "zfp", "mode": "rate", "value": 1}), array)
        assert decoded.min() >= info.min and decoded.max() <= info.max
        assert max_error(decoded, array) > 0  # really lossy


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_more_precision_means_less_error(rng, dtype):
    array = smooth_volume(rng, (16, 16, 16), dtype)
    errors = [
        max_error(
            round_trip(get_codec({"id": "zfp", "mode": "precision", "value": p}), array)[0], array
        )
        for p in (4, 10, 20)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_working_types():
    assert working_dtype(np.int16) == np.float32
    assert working_dtype(np.uint8) == np.float32
    assert working_dtype(np.int32) == np.float64
    assert working_dtype(np.float64) == np.float64
    with pytest.raises(InvalidVolumeError):
        working_dtype(np.int64)


def test_unsupported_dtype_is_refused():
    with pytest.raises(InvalidVolumeError):
        get_codec({"id": "zfp", "mode": "rate", "value": 2}).encode(np.zeros((2, 2, 2), np.int64))


def test_a_damaged_or_mismatched_zfp_stream_is_a_corrupt_blob(rng):
    codec = get_codec({"id": "zfp", "mode": "tolerance", "value": 1})
    array = smooth_volume(rng, (6, 6, 6), "int16")
    payload = codec.encode(array)
    with pytest.raises(CorruptBlobError):
        codec.decode(b"not a zfp stream at all", array.shape, array.dtype)
    with pytest.raises(CorruptBlobError, match="expected"):
        codec.decode(payload, (6, 6, 7), array.dtype)
    with pytest.raises(CorruptBlobError, match="expected"):
        codec.decode(payload, array.shape, np.dtype("float64"))


@pytest.mark.skipif(importlib.util.find_spec("pyzfp") is not None, reason="pyzfp is installed")
def test_pyzfp_backend_without_pyzfp_is_a_clear_error():
    with pytest.raises(InvalidCodecConfigError, match="pyzfp backend is not installed"):
        get_codec({"id": "zfp", "mode": "tolerance", "value": 500, "backend": "pyzfp"})
    with pytest.raises(InvalidCodecConfigError, match="not installed"):
        parse_codec_spec("zfp:rate=2+backend=pyzfp")


@pytest.mark.skipif(importlib.util.find_spec("pyzfp") is None, reason="pyzfp is not installed")
@pytest.mark.parametrize(
    "config",
    [
        {"mode": "rate", "value": 4},
        {"mode": "tolerance", "value": 20},
        {"mode": "relative_tolerance", "value": 0.01},
        {"mode": "precision", "value": 12},
    ],
)
def test_pyzfp_backend_means_the_same_as_zfpy(rng, config):
    array = smooth_volume(rng, (9, 10, 11), "int16")
    by_zfpy = round_trip(get_codec({"id": "zfp", **config}), array)[0]
    by_pyzfp = round_trip(get_codec({"id": "zfp", "backend": "pyzfp", **config}), array)[0]
    np.testing.assert_array_equal(by_pyzfp, by_zfpy)


# --- zfp: the error bound, over random volumes ---------------------------------------

volume_shapes = st.tuples(*(st.integers(1, 13) for _ in range(3)))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    tolerance=st.one_of(
        st.floats(0.01, 0.99),
        st.floats(1, 20),
        st.floats(20, 2000),
        st.sampled_from([0.5, 1.0, 1.5, 500.0, 500.5, 500.7, 1000.0, 1500.0]),
    ),
)
def test_fixed_accuracy_keeps_every_voxel_within_the_tolerance(dtype, shape, seed, tolerance):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    codec = get_codec({"id": "zfp", "mode": "tolerance", "value": tolerance})
    decoded, _ = round_trip(codec, array)
    assert max_error(decoded, array) <= tolerance


@settings(max_examples=100, deadline=None)
@given(
    dtype=st.sampled_from(["float32", "float64"]),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    magnitude=st.floats(-12, 12),
    ulps=st.floats(-4, 8),
)
def test_fixed_accuracy_holds_down_to_the_float_resolution(dtype, shape, seed, magnitude, ulps):
    # Tolerances from 1/16 to 256 ulps of the largest value: zfp alone breaks its bound
    # below about one float32 ulp, so such volumes must be coded losslessly.
    scale = 10.0**magnitude
    array = smooth_volume(np.random.default_rng(seed), shape, dtype, low=-scale, high=scale)
    peak = float(np.max(np.abs(array)))
    if peak == 0:
        return
    tolerance = peak * float(np.finfo(dtype).eps) * 2.0**ulps
    decoded, _ = round_trip(
        get_codec({"id": "zfp", "mode": "tolerance", "value": tolerance}), array
    )
    assert max_error(decoded, array) <= tolerance


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(INTEGER_DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    tolerance=st.floats(0.01, 0.99),
)
def test_integer_volumes_with_a_tolerance_below_one_come_back_exact(dtype, shape, seed, tolerance):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    decoded, _ = round_trip(
        get_codec({"id": "zfp", "mode": "tolerance", "value": tolerance}), array
    )
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=volume_shapes,
    seed=st.integers(0, 2**32 - 1),
    fraction=st.floats(1e-4, 0.2),
)
def test_relative_tolerance_is_a_fraction_of_the_intensity_range(dtype, shape, seed, fraction):
    array = smooth_volume(np.random.default_rng(seed), shape, dtype)
    decoded, _ = round_trip(
        get_codec({"id": "zfp", "mode": "relative_tolerance", "value": fraction}), array
    )
    span = float(array.max()) - float(array.min())
    assert max_error(decoded, array) <= fraction * span


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_constant_volume_survives_relative_tolerance(dtype):
    array = np.full((5, 6, 7), 42, dtype=dtype)
    codec = get_codec({"id": "zfp", "mode": "relative_tolerance", "value": 0.01})
    np.testing.assert_array_equal(round_trip(codec, array)[0], array)


def test_larger_tolerance_compresses_more(rng):
    array = smooth_volume(rng, (32, 32, 32), "int16", low=0, high=1500)
    sizes = [
        len(get_codec({"id": "zfp", "mode": "tolerance", "value": t}).encode(array))
        for t in (1, 10, 100, 500)
    ]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] > 2 * sizes[-1]


def test_encode_leaves_the_input_untouched_and_float32_decodes_in_place(rng):
    array = smooth_volume(rng, (8, 9, 10), "float32")
    before = array.copy()
    codec = get_codec({"id": "zfp", "mode": "tolerance", "value": 0.5})
    round_trip(codec, array)
    np.testing.assert_array_equal(array, before)
    fortran = np.asfortranarray(array)
    np.testing.assert_array_equal(round_trip(codec, fortran)[0], round_trip(codec, array)[0])


def test_a_zfp_header_claiming_a_huge_volume_is_refused_before_decoding():
    """A crafted stream whose own header says 2048^3 (32 GiB of float32) while the
    container says 8^3: refused from the header, before zfpy allocates anything."""
    import tracemalloc

    codec = get_codec({"id": "zfp", "mode": "rate", "value": 8})
    payload = bytearray(codec.encode(np.zeros((8, 8, 8), np.float32)))
    assert stream_header(payload) == (np.dtype(np.float32), (8, 8, 8))
    words = int.from_bytes(payload[:16], "little")
    for axis in range(3):  # each size - 1 in 16 bits, after magic (32) and type+dims (4)
        shift = 32 + 4 + 16 * axis
        words = (words & ~(0xFFFF << shift)) | (2047 << shift)
    payload[:16] = words.to_bytes(16, "little")
    assert stream_header(payload) == (np.dtype(np.float32), (2048, 2048, 2048))
    tracemalloc.start()
    with pytest.raises(CorruptBlobError, match=r"declares float32 \(2048, 2048, 2048\)"):
        codec.decode(bytes(payload), (8, 8, 8), np.float32)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()
    with pytest.raises(CorruptBlobError, match="not a zfp stream"):
        codec.decode(b"\0" * 64, (8, 8, 8), np.float32)


@pytest.mark.parametrize("value", ["9" * 400, "1e999", "nan", "1" * 5000])
def test_absurd_numbers_in_a_codec_spec_are_config_errors(value):
    for mode in ("rate", "tolerance", "precision", "relative_tolerance"):
        with pytest.raises(InvalidCodecConfigError):
            parse_codec_spec(f"zfp:{mode}={value}")
