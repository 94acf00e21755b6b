"""The `sz3` codec: SZ3, the prediction-based error-bounded compressor, through pysz
(SZ3's official Python binding; imagecodecs wraps SZ3 too, but offers only its
absolute and relative bounds, not PSNR or the L2 norm).

Config: {"id": "sz3", "mode": MODE, "value": NUMBER}; spec `sz3:MODE=VALUE`. Modes:

- tolerance: max |decoded - original| <= value (absolute, in the volume's units).
- relative_tolerance: the same with value x (max - min) of the volume, 0 < value <= 1.
- psnr: PSNR >= value dB, with the peak the volume's max - min (as the service
  reports PSNR).
- l2norm: the L2 norm of the error, sqrt(sum (decoded - original)^2), <= value.

Every mode is run as one of SZ3's own modes with the whole volume's numbers, so the
bound holds for the volume however the container slices it: a tolerance per voxel
(SZ3's ABS), an L2 bound split over the slabs in proportion to the square root of
their voxel counts (SZ3's L2NORM; the squares add up to the whole bound squared), a
PSNR as the L2 bound sqrt(N) x (max - min) x 10^(-psnr/20). SZ3 aims at an L2 bound
without promising it (a small volume can land a few % over): each slab is decoded
again and, if it is over, coded once more with a bound lowered by the excess; after a
few tries the point-wise bound L2 / sqrt(voxels), which implies it, is used instead.
Integer volumes are coded as floats (`vesselzip.codecs.numeric`): a tolerance as
floor(t); an L2 bound is checked after rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from vesselzip.codecs import numeric
from vesselzip.codecs.base import ModeValueCodec, register_codec
from vesselzip.errors import CorruptBlobError

MODES = ("tolerance", "relative_tolerance", "psnr", "l2norm")
#: Codings of a slab tried for an L2 bound before the point-wise bound is used.
_L2_TRIES = 4


@register_codec
class Sz3Codec(ModeValueCodec):
    codec_id = "sz3"
    modes = MODES
    highs = {"relative_tolerance": 1.0}

    def encode_slabs(self, array: np.ndarray, planes: int) -> Iterator[bytes]:
        mode, bound = self.sz3_bound(array)
        for start in range(0, array.shape[0], planes):
            slab = array[start : start + planes]
            work = slab.astype(self.work_dtype(array.dtype), copy=False)
            if mode == "abs":
                yield _compress(work, "abs", bound)
            else:
                yield self._encode_l2(slab, work, bound * math.sqrt(slab.size / array.size))

    def _encode_l2(self, slab: np.ndarray, work: np.ndarray, bound: float) -> bytes:
        asked = bound
        for _ in range(_L2_TRIES):
            payload = _compress(work, "l2norm", asked)
            error = self.decode(payload, slab.shape, slab.dtype).astype(np.float64) - slab
            reached = math.sqrt(float(np.sum(error * error)))
            if reached <= bound:
                return payload
            asked *= 0.9 * bound / reached
        tolerance = bound / math.sqrt(slab.size)
        if slab.dtype.kind in "iu":
            tolerance = numeric.integer_tolerance(tolerance)
        return _compress(work, "abs", tolerance)

    def sz3_bound(self, array: np.ndarray) -> tuple[str, float]:
        """SZ3's mode ("abs" or "l2norm") and bound for the whole volume."""
        integer = array.dtype.kind in "iu"
        if self.mode in ("tolerance", "relative_tolerance"):
            bound = self.value
            if self.mode == "relative_tolerance":
                bound *= numeric.value_range(array)
            return "abs", numeric.integer_tolerance(bound) if integer else bound
        if self.mode == "psnr":
            # MSE <= (max - min)^2 10^(-psnr/10), i.e. this bound on the L2 norm.
            return "l2norm", math.sqrt(array.size) * numeric.value_range(array) * 10 ** (
                -self.value / 20
            )
        return "l2norm", self.value

    def work_dtype(self, dtype: np.dtype) -> np.dtype:
        return numeric.working_dtype(dtype, "sz3")

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        from pysz import sz

        work_dtype = self.work_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        try:
            work, stored = sz.decompress(np.frombuffer(payload, np.uint8).copy(), work_dtype, shape)
        except Exception as exc:  # pysz raises bare errors for streams it cannot read
            raise CorruptBlobError(f"the sz3 stream cannot be decoded ({exc})") from exc
        # SZ3 drops the axes of length 1 from what it stores.
        if _squeezed(tuple(stored.dims)) != _squeezed(shape) or work.size != math.prod(shape):
            raise CorruptBlobError(f"the sz3 stream holds {tuple(stored.dims)}, expected {shape}")
        return numeric.to_dtype(work.reshape(shape), np.dtype(dtype))


def _compress(work: np.ndarray, mode: str, bound: float) -> bytes:
    from pysz import sz, szConfig, szErrorBoundMode

    config = szConfig()
    if bound <= 0:  # a constant volume's PSNR, say: nothing may change
        mode, bound = "abs", 0.0
    if mode == "abs":
        config.errorBoundMode = szErrorBoundMode.ABS
        config.absErrorBound = bound
    else:
        config.errorBoundMode = szErrorBoundMode.L2NORM
        config.l2normErrorBound = bound
    compressed, _ratio = sz.compress(np.ascontiguousarray(work), config)
    return compressed.tobytes()


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)
