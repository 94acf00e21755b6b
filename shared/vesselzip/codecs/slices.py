"""What the 2D image codecs (`jpegls`, `jpeg2000`, `htj2k`) share: a volume coded as a
stack of 2D images, one per plane of its first axis, each with a 2D codec.

Why the first axis: the container codes a volume in slabs of whole first-axis planes
(so that neither side holds a full-size working copy), and a plane is then a whole
image. A DICOM series stores one image per acquired slice (axial for TOF-MRA, the
NIfTI's third axis as scanners export it), but the 2D coders treat any plane alike.

Integers are shifted by the volume's minimum into the unsigned samples the coders
take (8 bits when the values span at most 255, else 16); a volume spanning more than
16 bits, or of a float type, is refused with the reason. The payload: the minimum
(int64), the sample bits, the image count, each image's length (uint32), then the
images.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from vesselzip.errors import CorruptBlobError, InvalidVolumeError

_HEAD = struct.Struct("<qBI")
_LENGTH = struct.Struct("<I")


def unsigned_samples(array: np.ndarray, codec: str) -> tuple[np.ndarray, int]:
    """(the volume as unsigned 8- or 16-bit samples, the minimum subtracted)."""
    if array.dtype.kind not in "iu":
        raise InvalidVolumeError(
            f"{codec} codes integer volumes (DICOM stores pixels as integers), not {array.dtype}"
        )
    low, high = int(array.min()), int(array.max())
    if high - low > 0xFFFF:
        raise InvalidVolumeError(
            f"{codec} codes at most 16-bit samples; this volume spans {high - low + 1} values"
        )
    sample = np.uint8 if high - low <= 0xFF else np.uint16
    return (array.astype(np.int64) - low).astype(sample), low


def encode_images(array: np.ndarray, codec: str, encode_2d: Callable[[np.ndarray], bytes]) -> bytes:
    samples, low = unsigned_samples(array, codec)
    images = [bytes(encode_2d(np.ascontiguousarray(plane))) for plane in samples]
    bits = samples.dtype.itemsize * 8
    lengths = b"".join(_LENGTH.pack(len(image)) for image in images)
    return _HEAD.pack(low, bits, len(images)) + lengths + b"".join(images)


def decode_images(
    payload: bytes,
    shape: tuple[int, ...],
    dtype: np.dtype,
    codec: str,
    decode_2d: Callable[[bytes], np.ndarray],
) -> np.ndarray:
    payload = bytes(payload)
    if len(payload) < _HEAD.size:
        raise CorruptBlobError(f"the {codec} payload is too short")
    low, bits, count = _HEAD.unpack_from(payload)
    shape = tuple(int(n) for n in shape)
    if count != shape[0] or bits not in (8, 16):
        raise CorruptBlobError(f"the {codec} payload holds {count} images, expected {shape[0]}")
    offset = _HEAD.size + count * _LENGTH.size
    lengths = [_LENGTH.unpack_from(payload, _HEAD.size + i * _LENGTH.size)[0] for i in range(count)]
    if offset + sum(lengths) != len(payload):
        raise CorruptBlobError(f"the {codec} payload's images do not add up to its length")
    out = np.empty(shape, dtype=np.dtype(dtype))
    info = np.iinfo(out.dtype)
    for index, length in enumerate(lengths):
        try:
            image = decode_2d(payload[offset : offset + length])
        except Exception as exc:  # the coders raise their own errors for bad streams
            raise CorruptBlobError(f"a {codec} image cannot be decoded ({exc})") from exc
        if image.shape != shape[1:]:
            raise CorruptBlobError(f"a {codec} image is {image.shape}, expected {shape[1:]}")
        np.clip(image.astype(np.int64) + low, info.min, info.max, out=out[index], casting="unsafe")
        offset += length
    return out


#: Bisection steps on a coder's quality setting (2^-12 of its range).
QUALITY_STEPS = 12


def images_at_quality(
    array: np.ndarray,
    codec: str,
    encode_2d: Callable[[np.ndarray, float | None], bytes],
    decode_2d: Callable[[bytes], np.ndarray],
    mode: str,
    value: float,
    peak: float,
) -> bytes:
    """The images of `array` coded at one quality q in [0, 1] (None: lossless) for all,
    the one bisection finds: for mode "rate" the best quality within `value` bits per
    voxel (the lowest when none is), for "psnr" the lowest whose PSNR (peak `peak`)
    reaches `value` (lossless when none does, so the target always holds)."""

    def coded(quality: float | None) -> bytes:
        return encode_images(array, codec, lambda image: encode_2d(image, quality))

    def good(payload: bytes) -> bool:
        if mode == "rate":
            return len(payload) * 8 <= value * array.size
        decoded = decode_images(payload, array.shape, array.dtype, codec, decode_2d)
        error = decoded.astype(np.float64) - array
        mse = float(np.mean(error * error))
        return mse == 0 or 20 * np.log10(peak) - 10 * np.log10(mse) >= value

    low, high = 0.0, 1.0
    best = None
    for _ in range(QUALITY_STEPS):
        middle = (low + high) / 2
        payload = coded(middle)
        ok = good(payload)
        if ok:
            best = payload
        # rate: look for a better quality that still fits; psnr: for a lower one that
        # still reaches the target.
        if ok == (mode == "rate"):
            low = middle
        else:
            high = middle
    if best is not None:
        return best
    return coded(0.0) if mode == "rate" else coded(None)
