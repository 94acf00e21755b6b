"""The `blosc2` codec: the voxels' bytes shuffled by significance, then Zstandard
(Blosc2 through imagecodecs), a lossless floor for every table. Config {"id":
"blosc2", "level": 0-9, default 5}; spec `blosc2` or `blosc2:level=L`."""

from __future__ import annotations

from vesselzip.codecs.base import register_codec
from vesselzip.codecs.bytes_codec import BytesCodec


@register_codec
class Blosc2Codec(BytesCodec):
    codec_id = "blosc2"
    levels = (0, 9)
    default_level = 5

    def compress(self, raw: bytes, itemsize: int) -> bytes:
        import imagecodecs

        return bytes(
            imagecodecs.blosc2_encode(
                raw, level=self.level, compressor="zstd", shuffle=1, typesize=itemsize, numthreads=1
            )
        )

    def decompress(self, payload: bytes) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.blosc2_decode(payload, numthreads=1))
