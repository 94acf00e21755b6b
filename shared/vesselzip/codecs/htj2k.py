"""The `htj2k` codec: High-Throughput JPEG 2000 (JPEG 2000 Part 15, OpenJPH through
imagecodecs), DICOM's newest transfer syntaxes (1.2.840.10008.1.2.4.201 lossless,
.203 lossy): JPEG 2000's wavelet with a much faster block coder.

Config and specs as `jpeg2000` (`htj2k:lossless`, `htj2k:rate=B`, `htj2k:psnr=P`);
the quality searched is OpenJPH's quantisation step, 10^-6 to 1 on a log scale.
"""

from __future__ import annotations

import numpy as np

from vesselzip.codecs.base import register_codec
from vesselzip.codecs.jpeg2000 import ImageCodec


@register_codec
class Htj2kCodec(ImageCodec):
    codec_id = "htj2k"

    def encode_2d(self, image: np.ndarray, quality: float | None) -> bytes:
        import imagecodecs

        if quality is None:
            return bytes(imagecodecs.htj2k_encode(image, reversible=True))
        return bytes(imagecodecs.htj2k_encode(image, level=10 ** (-6 * quality)))

    def decode_2d(self, stream: bytes) -> np.ndarray:
        import imagecodecs

        return imagecodecs.htj2k_decode(stream)
