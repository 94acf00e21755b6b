"""The `lerc` codec: LERC (Esri's Limited Error Raster Compression), error-bounded,
through imagecodecs (the maintained binding with LERC 4).

Config: {"id": "lerc", "tolerance": NUMBER}; spec `lerc:tolerance=T`: max |decoded -
original| <= T. LERC codes every supported dtype in its own type, integers included
(a tolerance under 0.5 on integers is lossless; on floats 0 is lossless).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vesselzip.codecs.base import Codec, bounded_number, register_codec
from vesselzip.errors import CorruptBlobError, InvalidVolumeError
from vesselzip.volumes import SUPPORTED_DTYPES


@register_codec
class LercCodec(Codec):
    codec_id = "lerc"

    def __init__(self, tolerance: float = 0.0):
        self.tolerance = bounded_number(
            self.codec_id, "tolerance", tolerance, 0.0, math.inf, open_low=False
        )

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "tolerance": self.tolerance}

    def describe(self) -> str:
        return f"lerc tolerance={self.tolerance:g}"

    def encode(self, array: np.ndarray) -> bytes:
        import imagecodecs

        if array.dtype not in SUPPORTED_DTYPES:
            raise InvalidVolumeError(f"lerc cannot compress dtype {array.dtype}")
        return bytes(imagecodecs.lerc_encode(np.ascontiguousarray(array), self.tolerance))

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        try:
            decoded = imagecodecs.lerc_decode(bytes(payload))
        except Exception as exc:  # imagecodecs raises its own errors for bad streams
            raise CorruptBlobError(f"the lerc stream cannot be decoded ({exc})") from exc
        shape = tuple(int(n) for n in shape)
        if decoded.shape == shape[:2] and shape[2] == 1:  # LERC drops a single band
            decoded = decoded.reshape(shape)
        if decoded.shape != shape or decoded.dtype != np.dtype(dtype):
            raise CorruptBlobError(
                f"the lerc stream holds {decoded.dtype} {decoded.shape}, expected {dtype} {shape}"
            )
        return decoded
