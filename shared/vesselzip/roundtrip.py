"""Encode an upload, decode it and measure what the codec did, in one pipelined pass.

Done one after the other, measuring a full-size volume costs about as much again as
the codec. Here the calling thread encodes the volume slab by slab (docs/format.md)
and decodes each slab straight from its stream into the decoded volume, while the
metric tiles whose inputs are complete run on the shared tile pool
(`vesselzip.metrics.fidelity`; zfp, numpy and BLAS release the GIL). The blob, the
decoded voxels and the metrics are exactly those of `encode_volume`, `decode_volume`
and `compression_metrics` run in turn (the tests check it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vesselzip.codecs import Codec
from vesselzip.container import blob_from_slabs, decode_slab, slab_planes
from vesselzip.metrics.compression import CompressionMeasure
from vesselzip.volumes import Volume


@dataclass
class RoundTrip:
    blob: bytes
    decoded: np.ndarray  # laid out as the original (C or Fortran order)
    metrics: dict[str, Any]  # compression_metrics' dict
    # Wall seconds of the codec's own calls, summed over slabs: encoding, decoding.
    # Metric tiles run on other threads meanwhile, so on a busy machine these can
    # exceed what the same calls take alone.
    encode_s: float
    decode_s: float
    # The rest of the pass's wall time: metrics that did not overlap the codec, the
    # blob's assembly and the wait for the last tiles.
    measure_s: float


def encode_decode_measure(
    volume: Volume, codec: Codec, *, nifti_gz_nbytes: int | None = None
) -> RoundTrip:
    """Compress `volume` into a blob, decode the blob's slabs again and measure the
    round trip; the codec's errors are raised as they are, with no tile left running."""
    start = time.perf_counter()
    original = volume.data
    fortran = original.flags.f_contiguous and not original.flags.c_contiguous
    # Laid out as the original, so that the two are compared quickly.
    decoded = np.empty(original.shape, dtype=original.dtype, order="F" if fortran else "C")
    measure = CompressionMeasure(original, decoded)
    planes = slab_planes(volume.shape)
    payloads: list[bytes] = []
    encode_s = decode_s = 0.0
    try:
        slabs = iter(codec.encode_slabs(original, planes))
        for first in range(0, original.shape[0], planes):
            t0 = time.perf_counter()
            payload = next(slabs)
            t1 = time.perf_counter()
            decode_slab(codec, payload, decoded[first : first + planes])
            t2 = time.perf_counter()
            encode_s += t1 - t0
            decode_s += t2 - t1
            payloads.append(payload)
            measure.advance(first + planes)
    except BaseException:
        measure.cancel()
        raise
    blob = blob_from_slabs(volume, codec, planes, payloads)
    del payloads  # the blob holds them now
    metrics = measure.finish(
        blob_nbytes=len(blob),
        nifti_gz_nbytes=nifti_gz_nbytes,
        compress_s=encode_s,
        decompress_s=decode_s,
    )
    measure_s = time.perf_counter() - start - encode_s - decode_s
    return RoundTrip(blob, decoded, metrics, encode_s, decode_s, measure_s)
