"""The `sperr` codec: SPERR, wavelet-based and error-bounded (imagecodecs' binding;
the only Python one).

Config: {"id": "sperr", "mode": MODE, "value": NUMBER}; spec `sperr:MODE=VALUE`. Modes:

- tolerance: point-wise error, max |decoded - original| <= value.
- rate: bits per voxel of the stream (a target SPERR meets within about 1 %; no
  error bound).
- psnr: PSNR >= value dB, the peak being the volume's max - min. SPERR aims at a PSNR
  without promising it (it lands up to about 0.2 dB short): each slab is decoded
  again and, if it falls short, coded once more with a target raised by the shortfall;
  after a few tries the point-wise bound (max - min) x 10^(-psnr/20), which implies
  the PSNR, is used instead.

Integer volumes are coded as floats (`vesselzip.codecs.numeric`); their PSNR is
checked after rounding. SPERR cannot take a slab of a single plane (it aborts the
process), so such a slab is coded with its plane repeated once and decoded without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

from vesselzip.codecs import numeric
from vesselzip.codecs.base import ModeValueCodec, register_codec
from vesselzip.errors import CorruptBlobError

MODES = ("tolerance", "rate", "psnr")
_SPERR_MODE: dict[str, Literal["pwe", "bpp", "psnr"]] = {
    "tolerance": "pwe",
    "rate": "bpp",
    "psnr": "psnr",
}
#: Codings of a slab tried for a PSNR before the point-wise bound is used.
_PSNR_TRIES = 4


@register_codec
class SperrCodec(ModeValueCodec):
    codec_id = "sperr"
    modes = MODES
    highs = {"rate": 64.0}

    def encode_slabs(self, array: np.ndarray, planes: int) -> Iterator[bytes]:
        work_dtype = numeric.working_dtype(array.dtype, "sperr")
        peak = numeric.value_range(array)  # the whole volume's, for every slab
        for start in range(0, array.shape[0], planes):
            slab = array[start : start + planes]
            work = np.ascontiguousarray(slab, dtype=work_dtype)
            if work.shape[0] == 1:
                work = np.concatenate([work, work])
            if self.mode == "psnr":
                yield self._encode_psnr(work, slab, peak)
            elif self.mode == "tolerance":
                tolerance = self.value
                if array.dtype.kind in "iu":
                    tolerance = numeric.integer_tolerance(tolerance)
                yield _sperr_encode(work, tolerance, "tolerance")
            else:
                yield _sperr_encode(work, self.value, "rate")

    def _encode_psnr(self, work: np.ndarray, slab: np.ndarray, peak: float) -> bytes:
        if peak == 0:  # a constant volume: any error would be infinitely large
            return _sperr_encode(work, _smallest_tolerance(work), "tolerance")
        target = self.value
        for _ in range(_PSNR_TRIES):
            payload = _sperr_encode(work, target, "psnr")
            reached = _psnr(slab, self._decoded(payload, slab), peak)
            if reached >= self.value:
                return payload
            target += self.value - reached + 0.05
        tolerance = peak * 10 ** (-self.value / 20)
        if slab.dtype.kind in "iu":
            tolerance = numeric.integer_tolerance(tolerance)
        return _sperr_encode(work, tolerance, "tolerance")

    def _decoded(self, payload: bytes, slab: np.ndarray) -> np.ndarray:
        return self.decode(payload, slab.shape, slab.dtype)

    def decode(self, payload: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        import imagecodecs

        shape = tuple(int(n) for n in shape)
        stored_shape = (2, *shape[1:]) if shape[0] == 1 else shape
        try:
            work = imagecodecs.sperr_decode(bytes(payload))
        except Exception as exc:  # imagecodecs raises its own errors for bad streams
            raise CorruptBlobError(f"the sperr stream cannot be decoded ({exc})") from exc
        if work.shape != stored_shape:
            raise CorruptBlobError(f"the sperr stream holds {work.shape}, expected {shape}")
        return numeric.to_dtype(work[: shape[0]], np.dtype(dtype))


def _sperr_encode(work: np.ndarray, value: float, mode: str) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.sperr_encode(work, value, _SPERR_MODE[mode]))


def _smallest_tolerance(work: np.ndarray) -> float:
    magnitude = float(np.abs(work).max()) or 1.0
    return magnitude * float(np.finfo(work.dtype).eps)


def _psnr(original: np.ndarray, decoded: np.ndarray, peak: float) -> float:
    error = decoded.astype(np.float64) - original
    mse = float(np.mean(error * error))
    return math.inf if mse == 0 else 20 * math.log10(peak) - 10 * math.log10(mse)
