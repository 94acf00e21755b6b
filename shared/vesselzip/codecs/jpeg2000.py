"""The `jpeg2000` codec: JPEG 2000 (OpenJPEG through imagecodecs), one of DICOM's
transfer syntaxes (1.2.840.10008.1.2.4.90 lossless, .91 lossy), as a hospital
archive would store each image.

Config: {"id": "jpeg2000", "mode": MODE, "value": NUMBER}; specs `jpeg2000:lossless`
(the reversible 5/3 wavelet), `jpeg2000:rate=B` (at most B bits per voxel, the best
quality that fits) and `jpeg2000:psnr=P` (PSNR >= P dB with the peak the volume's
max - min; lossless if no lossy quality reaches it). The volume is coded as 2D images
(`vesselzip.codecs.slices`: integer volumes of at most 16 bits); for a rate or a PSNR
one quality setting (OpenJPEG's distortion target, 20-120 dB of its own measure, in whole dB) is
searched by bisection per slab and used for all of the slab's images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vesselzip.codecs import numeric
from vesselzip.codecs.base import Codec, bounded_number, mode_as_key, register_codec
from vesselzip.codecs.slices import decode_images, encode_images, images_at_quality
from vesselzip.errors import InvalidCodecConfigError, quoted

MODES = ("lossless", "rate", "psnr")


class ImageCodec(Codec):
    """A 2D image coder with a lossless mode and one quality setting in [0, 1]."""

    def __init__(self, mode: str = "lossless", value: float | None = None):
        if mode not in MODES:
            raise InvalidCodecConfigError(
                f"unknown {self.codec_id} mode {quoted(mode)}; choose one of {', '.join(MODES)}"
            )
        if mode == "lossless":
            if value is not None:
                raise InvalidCodecConfigError(
                    f"{self.codec_id} lossless takes no value; write {self.codec_id}:lossless"
                )
            self.value: float | None = None
        else:
            self.value = bounded_number(
                self.codec_id, mode, value, 0.0, 64.0 if mode == "rate" else 200.0
            )
        self.mode = mode

    @classmethod
    def config_from_options(cls, options: dict[str, str | None]) -> dict[str, Any]:
        return mode_as_key(cls.codec_id, super().config_from_options(options), MODES)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"id": self.codec_id, "mode": self.mode}
        if self.value is not None:
            config["value"] = self.value
        return config

    def describe(self) -> str:
        return f"{self.codec_id} {self.mode}" + (f"={self.value:g}" if self.value else "")

    def encode(self, array: np.ndarray) -> bytes:
        (payload,) = self.encode_slabs(array, array.shape[0])
        return payload

    def encode_slabs(self, array, planes):
        peak = numeric.value_range(array) if array.dtype.kind in "iu" else 0.0
        for start in range(0, array.shape[0], planes):
            slab = array[start : start + planes]
            if self.mode == "lossless" or self.value is None:
                yield encode_images(slab, self.codec_id, lambda image: self.encode_2d(image, None))
            else:
                yield images_at_quality(
                    slab,
                    self.codec_id,
                    self.encode_2d,
                    self.decode_2d,
                    self.mode,
                    self.value,
                    peak or 1.0,
                )

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return decode_images(payload, shape, dtype, self.codec_id, self.decode_2d)

    def encode_2d(self, image: np.ndarray, quality: float | None) -> bytes:
        raise NotImplementedError

    def decode_2d(self, stream: bytes) -> np.ndarray:
        raise NotImplementedError


@register_codec
class Jpeg2000Codec(ImageCodec):
    codec_id = "jpeg2000"

    def encode_2d(self, image: np.ndarray, quality: float | None) -> bytes:
        import imagecodecs

        if quality is None:
            return bytes(imagecodecs.jpeg2k_encode(image, level=0, reversible=True, numthreads=1))
        return bytes(
            imagecodecs.jpeg2k_encode(image, level=round(20 + 100 * quality), numthreads=1)
        )

    def decode_2d(self, stream: bytes) -> np.ndarray:
        import imagecodecs

        return imagecodecs.jpeg2k_decode(stream, numthreads=1)
