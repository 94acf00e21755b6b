"""What the lossy codecs share about numbers: the float type an integer volume is
coded in, how decoded floats return to the volume's dtype, and the error bound that
survives that return.

Integer volumes are coded as floats (uint8, int8, int16 and uint16 as float32, int32
as float64, so every int32 is exact) and rounded half to even and clipped on decode.
A point-wise bound t on integers is coded as floor(t) (0.25 when t < 1): a decoded
value within floor(t) + 0.5 of an integer rounds to within floor(t) of it, so the
bound holds on the integers themselves."""

from __future__ import annotations

import math

import numpy as np

from vesselzip.errors import InvalidVolumeError
from vesselzip.volumes import SUPPORTED_DTYPES


def working_dtype(dtype: np.dtype, codec: str = "this codec") -> np.dtype:
    """The float type a volume of `dtype` is coded in."""
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise InvalidVolumeError(f"{codec} cannot compress dtype {dtype}")
    wide = dtype in (np.dtype("int32"), np.dtype("float64"))
    return np.dtype(np.float64) if wide else np.dtype(np.float32)


def to_dtype(work: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Decoded floats back to `dtype`: integers are rounded half to even (in place: the
    codec's own output) and clipped."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return work.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    np.rint(work, out=work)
    result = np.empty(work.shape, dtype=dtype)
    np.clip(work, info.min, info.max, out=result, casting="unsafe")  # clip and cast in one pass
    return result


def integer_tolerance(tolerance: float) -> float:
    """The point-wise bound to code an integer volume with, so that `tolerance` holds
    after rounding."""
    return float(math.floor(tolerance)) if tolerance >= 1 else 0.25


def value_range(array: np.ndarray) -> float:
    return float(array.max()) - float(array.min())
