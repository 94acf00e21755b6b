"""The `zstd` codec: the raw voxels through Zstandard (imagecodecs), a lossless floor
for every table. Config {"id": "zstd", "level": 1-22, default 3}; spec `zstd` or
`zstd:level=L`."""

from __future__ import annotations

from vesselzip.codecs.base import register_codec
from vesselzip.codecs.bytes_codec import BytesCodec


@register_codec
class ZstdCodec(BytesCodec):
    codec_id = "zstd"
    levels = (1, 22)
    default_level = 3

    def compress(self, raw: bytes, itemsize: int) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.zstd_encode(raw, level=self.level))

    def decompress(self, payload: bytes) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.zstd_decode(payload))
