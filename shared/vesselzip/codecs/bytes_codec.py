"""What the lossless floors (`zstd`, `blosc2`) share: the voxels as C-order
little-endian bytes, as the `none` codec stores them, through a byte compressor with
a level."""

from __future__ import annotations

from typing import Any

import numpy as np

from vesselzip.codecs.base import Codec
from vesselzip.codecs.none import NoneCodec
from vesselzip.errors import CorruptBlobError, InvalidCodecConfigError, InvalidVolumeError, quoted
from vesselzip.volumes import SUPPORTED_DTYPES


def checked_level(codec_id: str, level: Any, low: int, high: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
        raise InvalidCodecConfigError(
            f"{codec_id} level must be a whole number {low}-{high}, got {quoted(level)}"
        )
    return level


class BytesCodec(Codec):
    levels: tuple[int, int]
    default_level: int

    def __init__(self, level: int | None = None):
        self.level = checked_level(
            self.codec_id, self.default_level if level is None else level, *self.levels
        )

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "level": self.level}

    def describe(self) -> str:
        return f"{self.codec_id} level={self.level}"

    def encode(self, array: np.ndarray) -> bytes:
        if array.dtype not in SUPPORTED_DTYPES:
            raise InvalidVolumeError(f"{self.codec_id} cannot compress dtype {array.dtype}")
        return self.compress(NoneCodec().encode(array), array.dtype.itemsize)

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        try:
            raw = self.decompress(bytes(payload))
        except Exception as exc:  # imagecodecs raises its own errors for bad streams
            raise CorruptBlobError(f"the {self.codec_id} stream cannot be decoded ({exc})") from exc
        return NoneCodec().decode(raw, shape, dtype)

    def compress(self, raw: bytes, itemsize: int) -> bytes:
        raise NotImplementedError

    def decompress(self, payload: bytes) -> bytes:
        raise NotImplementedError
