"""The `jpegls` codec: JPEG-LS (CharLS through imagecodecs), lossless or near-lossless,
one of DICOM's transfer syntaxes (1.2.840.10008.1.2.4.80 lossless, .81 near-lossless).

Config: {"id": "jpegls", "near": K}; spec `jpegls:near=K` (0 lossless, the default;
at most 255): every decoded integer within K of the original. The volume is coded as
2D images (`vesselzip.codecs.slices`: integer volumes of at most 16 bits). JPEG-LS
takes NEAR up to half the samples' range; a larger K is lowered to that, which keeps
the bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vesselzip.codecs.base import Codec, register_codec
from vesselzip.codecs.slices import decode_images, encode_images
from vesselzip.errors import InvalidCodecConfigError, quoted


@register_codec
class JpeglsCodec(Codec):
    codec_id = "jpegls"

    def __init__(self, near: int = 0):
        if isinstance(near, bool) or not isinstance(near, int) or not 0 <= near <= 255:
            raise InvalidCodecConfigError(
                f"jpegls near must be a whole number 0-255, got {quoted(near)}"
            )
        self.near = near

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "near": self.near}

    def describe(self) -> str:
        return f"jpegls near={self.near}"

    def encode(self, array: np.ndarray) -> bytes:
        import imagecodecs

        def encode_2d(image: np.ndarray) -> bytes:
            near = min(self.near, int(np.iinfo(image.dtype).max) // 2)
            return bytes(imagecodecs.jpegls_encode(image, level=near))

        return encode_images(array, self.codec_id, encode_2d)

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        return decode_images(payload, shape, dtype, self.codec_id, imagecodecs.jpegls_decode)
