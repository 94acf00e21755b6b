"""The `none` codec: raw little-endian voxels, for the uncompressed baseline."""

from __future__ import annotations

import math

import numpy as np

from vesselzip.codecs.base import Codec, register_codec
from vesselzip.errors import CorruptBlobError


@register_codec
class NoneCodec(Codec):
    codec_id = "none"

    def get_config(self) -> dict:
        return {"id": self.codec_id}

    def encode(self, array: np.ndarray) -> bytes:
        # C order, little-endian: the payload means the same on every machine.
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        expected = math.prod(shape) * dtype.itemsize
        if len(payload) != expected:
            raise CorruptBlobError(f"raw payload is {len(payload)} bytes, expected {expected}")
        stored = np.frombuffer(payload, dtype=dtype.newbyteorder("<")).reshape(shape)
        return stored.astype(dtype.newbyteorder("="))

    def describe(self) -> str:
        return "none"
