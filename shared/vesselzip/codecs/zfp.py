"""The `zfp` codec: ZFP in fixed-rate, fixed-accuracy, fixed-precision or reversible mode.

Config: {"id": "zfp", "mode": MODE, "value": NUMBER, "backend": "zfpy" | "pyzfp"}
("value" is absent for "reversible"; "backend" is absent when it is the default
"zfpy"). Modes:

- rate: bits per voxel, 0.25-64 (fixed size, see `fixed_rate_nbytes`).
- tolerance: absolute error bound, max |decoded - original| <= value.
- relative_tolerance: the bound as a fraction of the volume's intensity range.
- precision: number of bit planes kept (1-64).
- reversible: lossless.

Integer volumes are compressed as floats, like the paper does, and a tolerance on
them is coded so that it holds after rounding (`vesselzip.codecs.numeric`). float32 and float64 volumes are compressed in
their own type; a tolerance finer than the type resolves at the volume's magnitude
is coded reversibly, so the bound always holds. docs/codecs.md has the details.

Backends: zfpy (default) keeps zfp's header in the payload. pyzfp writes no header,
so its payload is the parameter actually used (little-endian float64) followed by
the bare zfp stream; shape and dtype come from the container. pyzfp is always run
serially: its parallel decompression silently returns zeros.
"""

from __future__ import annotations

import importlib
import math
import numbers
import struct
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import zfpy

from vesselzip.codecs import numeric
from vesselzip.codecs.base import Codec, mode_as_key, register_codec
from vesselzip.codecs.numeric import to_dtype
from vesselzip.errors import CorruptBlobError, InvalidCodecConfigError, quoted

MODES = ("rate", "tolerance", "relative_tolerance", "precision", "reversible")
BACKENDS = ("zfpy", "pyzfp")
DEFAULT_BACKEND = "zfpy"
#: Lowest fixed rate (bits/voxel): 16 bits per 4x4x4 block, above the 9 (float32) or
#: 12 (float64) bits a block's exponent needs.
MIN_RATE = 0.25

_PYZFP_PARAMETER = struct.Struct("<d")
# Smallest tolerance zfp honours, relative to max |value|: 4 ulps of the float type
# (measured: float32 breaks its bound below about 1 ulp).
_RESOLUTION = {np.dtype(np.float32): 2.0**-21, np.dtype(np.float64): 2.0**-50}
# zfpy's full header: magic (32 bits) + field metadata (52) + mode (12, or 64 when long).
_HEADER_BITS_SHORT_MODE = 32 + 52 + 12
_HEADER_BITS_LONG_MODE = 32 + 52 + 64


@register_codec
class ZfpCodec(Codec):
    codec_id = "zfp"

    def __init__(
        self, mode: str = "reversible", value: float | None = None, backend: str = DEFAULT_BACKEND
    ):
        self.mode = mode
        self.value = _checked_value(mode, value)
        self.backend = backend
        if backend not in BACKENDS:
            raise InvalidCodecConfigError(
                f"unknown zfp backend {quoted(backend)}; choose one of {', '.join(BACKENDS)}"
            )
        self._pyzfp = _import_pyzfp() if backend == "pyzfp" else None
        if backend == "pyzfp" and mode == "reversible":
            raise InvalidCodecConfigError("the pyzfp backend has no reversible mode; use zfpy")

    @classmethod
    def config_from_options(cls, options: dict[str, str | None]) -> dict[str, Any]:
        """Accept the mode as the key: "zfp:rate=2" means mode=rate, value=2, and
        "zfp:reversible" mode=reversible."""
        return mode_as_key(cls.codec_id, super().config_from_options(options), MODES)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"id": self.codec_id, "mode": self.mode}
        if self.value is not None:
            config["value"] = self.value
        if self.backend != DEFAULT_BACKEND:
            config["backend"] = self.backend
        return config

    def describe(self) -> str:
        label = f"zfp {self.mode}" if self.value is None else f"zfp {self.mode}={self.value:g}"
        return label if self.backend == DEFAULT_BACKEND else f"{label} ({self.backend})"

    def encode(self, array: np.ndarray) -> bytes:
        return self._encode(array, self.zfp_arguments(array))

    def encode_slabs(self, array: np.ndarray, planes: int) -> Iterator[bytes]:
        """Slabs coded with the parameters of the whole volume. With `planes` a multiple
        of 4, slab boundaries fall on zfp's 4x4x4 block boundaries and zfp codes blocks
        independently, so the decoded voxels equal those of a whole-volume stream."""
        arguments = self.zfp_arguments(array)
        for start in range(0, array.shape[0], planes):
            yield self._encode(array[start : start + planes], arguments)

    def _encode(self, array: np.ndarray, arguments: dict[str, float | int]) -> bytes:
        work = array.astype(working_dtype(array.dtype), copy=False)
        if self._pyzfp is None:
            return zfpy.compress_numpy(work, **arguments)
        if not arguments:
            raise InvalidCodecConfigError(
                f"{self.describe()} is below what {work.dtype} resolves in this volume; "
                "use a larger tolerance or the zfpy backend"
            )
        stream = self._pyzfp.compress(np.ascontiguousarray(work), parallel=False, **arguments)
        (parameter,) = arguments.values()
        return _PYZFP_PARAMETER.pack(parameter) + bytes(stream)

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        work_dtype = working_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        if self._pyzfp is None:
            # zfpy allocates whatever the stream's own header declares: check it first.
            declared = stream_header(payload)
            if declared != (work_dtype, shape):
                raise CorruptBlobError(
                    f"the zfp stream declares {declared[0]} {declared[1]}, "
                    f"expected {work_dtype} {shape}"
                )
            try:
                work = zfpy.decompress_numpy(bytes(payload))
            except Exception as exc:  # zfpy raises bare exceptions for bad streams
                raise CorruptBlobError(f"the zfp stream cannot be decoded ({exc})") from exc
        else:
            if len(payload) < _PYZFP_PARAMETER.size:
                raise CorruptBlobError("the pyzfp payload is too short")
            (parameter,) = _PYZFP_PARAMETER.unpack_from(payload)
            work = self._pyzfp.decompress(
                bytes(payload[_PYZFP_PARAMETER.size :]),
                shape,
                work_dtype,
                parallel=False,  # pyzfp's parallel decompression returns zeros
                **{_zfp_keyword(self.mode): _pyzfp_parameter_type(self.mode)(parameter)},
            )
        if work.shape != shape or work.dtype != work_dtype:
            raise CorruptBlobError(
                f"the zfp stream holds {work.dtype} {work.shape}, expected {work_dtype} {shape}"
            )
        return to_dtype(work, dtype)

    def zfp_arguments(self, array: np.ndarray) -> dict[str, float | int]:
        """The keyword zfp gets for this array, e.g. {"tolerance": 500.0}; {} is reversible."""
        value = self.value
        if self.mode == "reversible" or value is None:  # value is None only when reversible
            return {}
        if self.mode in ("rate", "precision"):
            return {self.mode: value}
        tolerance = value
        if array.dtype.kind in "iu":
            if self.mode == "relative_tolerance":
                tolerance *= float(array.max()) - float(array.min())
            return {"tolerance": numeric.integer_tolerance(tolerance)}
        low, high = float(array.min()), float(array.max())
        if self.mode == "relative_tolerance":
            tolerance *= high - low
        # zfp cannot keep a bound finer than the float type resolves at the volume's
        # magnitude (nor a zero one): such volumes are coded losslessly instead.
        if tolerance <= max(abs(low), abs(high)) * _RESOLUTION[array.dtype]:
            return {}
        return {"tolerance": tolerance}


def stream_header(payload: bytes) -> tuple[np.dtype | None, tuple[int, ...]]:
    """(scalar type, numpy shape) from a zfpy stream's header, without decoding it.

    The header is 32 bits of magic ("zfp" and the codec version), then 52 bits of
    metadata: the scalar type (2 bits), dimensions - 1 (2 bits) and, for 3D, each
    size - 1 in 16 bits, fastest axis first."""
    if len(payload) < 16 or bytes(payload[:3]) != b"zfp":
        raise CorruptBlobError("the payload is not a zfp stream (no zfp header)")
    meta = (int.from_bytes(bytes(payload[:16]), "little") >> 32) & ((1 << 52) - 1)
    scalars: dict[int, np.dtype] = {2: np.dtype(np.float32), 3: np.dtype(np.float64)}
    scalar = scalars.get(meta & 3)
    dims = ((meta >> 2) & 3) + 1
    if dims != 3:
        return scalar, (dims,)  # never equal to a 3D shape
    sizes = [((meta >> (4 + 16 * axis)) & 0xFFFF) + 1 for axis in range(3)]
    return scalar, tuple(reversed(sizes))


def working_dtype(dtype: np.dtype) -> np.dtype:
    """The float type zfp compresses a volume of `dtype` in."""
    return numeric.working_dtype(dtype, "zfp")


def fixed_rate_nbytes(shape: tuple[int, ...], dtype: np.dtype, rate: float) -> int:
    """Exact size of a zfpy fixed-rate payload (header included) for a 3D volume."""
    working_dtype(dtype)  # refuse what cannot be compressed
    block_bits = math.floor(64 * rate + 0.5)  # as zfp_stream_set_rate rounds it
    n_blocks = math.prod(math.ceil(n / 4) for n in shape)
    header_bits = _HEADER_BITS_SHORT_MODE if block_bits <= 2048 else _HEADER_BITS_LONG_MODE
    words = math.ceil((header_bits + n_blocks * block_bits) / 64)  # stream ends word-aligned
    return words * 8


def _checked_value(mode: str, value: Any) -> float | int | None:
    if mode not in MODES:
        raise InvalidCodecConfigError(
            f"unknown zfp mode {quoted(mode)}; choose one of {', '.join(MODES)}"
        )
    if mode == "reversible":
        if value is not None:
            raise InvalidCodecConfigError(
                "zfp mode 'reversible' is lossless and takes no value; write zfp:reversible"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
        raise InvalidCodecConfigError(
            f"zfp mode {mode!r} needs a numeric value, got {quoted(value)}"
        )
    # numbers.Real declares neither int() nor comparisons with an int; float stands for
    # any real number here.
    value = cast(float, value)
    if mode == "precision":
        if value != int(value) or not 1 <= value <= 64:
            raise InvalidCodecConfigError(
                f"zfp precision must be a whole number 1-64, got {quoted(value)}"
            )
        return int(value)
    value = float(value)
    if mode == "rate" and not MIN_RATE <= value <= 64:
        # Below a block's exponent bits zfp writes past its buffer (heap corruption).
        raise InvalidCodecConfigError(
            f"zfp rate must be between {MIN_RATE} and 64 bits/voxel, got {value:g}"
        )
    if mode == "tolerance" and not value > 0:
        raise InvalidCodecConfigError(f"zfp tolerance must be above 0, got {value:g}")
    if mode == "relative_tolerance" and not 0 < value <= 1:
        raise InvalidCodecConfigError(
            f"zfp relative_tolerance must be above 0 and at most 1, got {value:g}"
        )
    return value


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _zfp_keyword(mode: str) -> str:
    """The keyword zfpy and pyzfp take for a mode."""
    return {"rate": "rate", "precision": "precision"}.get(mode, "tolerance")


def _pyzfp_parameter_type(mode: str) -> type:
    return int if mode == "precision" else float


def _import_pyzfp():
    try:
        return importlib.import_module("pyzfp")
    except ImportError as exc:
        raise InvalidCodecConfigError(
            "the pyzfp backend is not installed (pip install 'vesselzip[pyzfp]'); use backend=zfpy"
        ) from exc
