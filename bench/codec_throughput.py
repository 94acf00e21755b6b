"""Codec throughput: MB/s of compress and decompress for every codec, next to a bare
call of its library on the same array, so the wrapper's overhead shows as a ratio
(target <= 1.1), and the compression ratio of both (they should agree within 2 %).

    python bench/codec_throughput.py [--shape 128 128 96] [--repeats 9] [--clock cpu]
                                     [--codec zfp sz3 ...] [--json]

MB/s are of the original volume's raw bytes. "bare" is the least code that does the
same job by hand with the library alone: for zfp, compress =
zfpy.compress_numpy(volume.astype(float32), <parameter>), decompress =
zfpy.decompress_numpy(payload) (left in float32); for sz3 and sperr the same with
their bindings and the bound the wrapper hands them; lerc on the volume itself; the
image codecs on each plane shifted to unsigned samples; zstd and blosc2 on the raw
bytes. For an int16 volume the float coders' wrappers also turn the decoded floats
back into int16 (round, clip, cast), which is counted against them; `--dtype float32`
shows the wrappers without that step. A checked mode (an sz3 L2 norm or PSNR, a
sperr PSNR) decodes each slab once more to check its bound, and an image codec's rate
or PSNR searches 12 qualities: both cost their multiple of a bare call, by design.
Each figure is the median of --repeats runs; the four timed calls take turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import imagecodecs
import numpy as np
import zfpy

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.codecs.numeric import working_dtype

SPECS = [
    "zfp:rate=2",
    "zfp:rate=8",
    "zfp:rate=16",
    "zfp:tolerance=500",
    "zfp:tolerance=1000",
    "zfp:relative_tolerance=0.01",
    "zfp:precision=16",
    "zfp:reversible",
    "sz3:tolerance=500",
    "sz3:relative_tolerance=0.01",
    "sz3:psnr=50",
    "sperr:tolerance=500",
    "sperr:rate=2",
    "lerc:tolerance=500",
    "jpegls",
    "jpegls:near=4",
    "jpeg2000:lossless",
    "htj2k:lossless",
    "zstd",
    "blosc2",
]

Bare = tuple[Callable[[], bytes], Callable[[bytes], Any]]


def bare_calls(codec, volume: np.ndarray) -> Bare:
    """(compress, decompress) with the codec's library alone, doing what the wrapper
    asks of it."""
    work = volume.astype(working_dtype(volume.dtype), copy=False)
    if codec.codec_id == "zfp":
        kwargs = codec.zfp_arguments(volume)
        return (lambda: zfpy.compress_numpy(work, **kwargs)), zfpy.decompress_numpy
    if codec.codec_id == "sz3":
        from pysz import sz, szConfig, szErrorBoundMode

        mode, bound = codec.sz3_bound(volume)
        config = szConfig()
        if mode == "abs":
            config.errorBoundMode, config.absErrorBound = szErrorBoundMode.ABS, bound
        else:
            config.errorBoundMode, config.l2normErrorBound = szErrorBoundMode.L2NORM, bound
        return (
            lambda: sz.compress(work, config)[0].tobytes(),
            lambda payload: sz.decompress(
                np.frombuffer(payload, np.uint8).copy(), work.dtype, work.shape
            ),
        )
    if codec.codec_id == "sperr":
        mode = {"tolerance": "pwe", "rate": "bpp", "psnr": "psnr"}[codec.mode]
        value = codec.value
        if mode == "pwe" and volume.dtype.kind in "iu":
            value = float(max(np.floor(value), 0.25))
        return (
            lambda: bytes(imagecodecs.sperr_encode(work, value, mode))
        ), imagecodecs.sperr_decode
    if codec.codec_id == "lerc":
        return (
            lambda: bytes(imagecodecs.lerc_encode(volume, codec.tolerance)),
            imagecodecs.lerc_decode,
        )
    if codec.codec_id in ("jpegls", "jpeg2000", "htj2k"):
        encode_2d, decode_2d = {
            "jpegls": (
                lambda p: imagecodecs.jpegls_encode(p, level=codec.near),
                imagecodecs.jpegls_decode,
            ),
            "jpeg2000": (
                lambda p: imagecodecs.jpeg2k_encode(p, level=0, reversible=True, numthreads=1),
                imagecodecs.jpeg2k_decode,
            ),
            "htj2k": (
                lambda p: imagecodecs.htj2k_encode(p, reversible=True),
                imagecodecs.htj2k_decode,
            ),
        }[codec.codec_id]
        planes = (volume.astype(np.int32) - int(volume.min())).astype(np.uint16)
        streams: list[bytes] = []

        def compress() -> bytes:
            streams[:] = [bytes(encode_2d(plane)) for plane in planes]
            return b"".join(streams)

        return compress, lambda _: [decode_2d(stream) for stream in streams]
    raw = volume.tobytes()
    if codec.codec_id == "zstd":
        return (
            lambda: bytes(imagecodecs.zstd_encode(raw, level=codec.level))
        ), imagecodecs.zstd_decode
    if codec.codec_id == "blosc2":
        return (
            lambda: bytes(
                imagecodecs.blosc2_encode(
                    raw,
                    level=codec.level,
                    compressor="zstd",
                    shuffle=1,
                    typesize=volume.itemsize,
                    numthreads=1,
                )
            ),
            lambda payload: imagecodecs.blosc2_decode(payload, numthreads=1),
        )
    return (lambda: raw), (lambda payload: np.frombuffer(payload, volume.dtype))


def make_volume(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A TOF-MRA-like phantom when available, else a smooth random int16 volume."""
    try:
        from vesselzip.phantoms import make_phantom
    except ImportError:
        rng = np.random.default_rng(seed)
        axes = np.meshgrid(*(np.linspace(0, 6, n) for n in shape), indexing="ij")
        smooth = np.sin(axes[0]) * np.cos(axes[1]) * np.sin(axes[2] / 2)
        return (400 + 300 * smooth + 15 * rng.standard_normal(shape)).astype(np.int16)
    return make_phantom(seed, shape=shape).image


def median_seconds(functions: dict, repeats: int, clock) -> dict[str, float]:
    """Median time of each function; they take turns so a busy machine slows all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = clock()
            function()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_spec(volume: np.ndarray, spec: str, repeats: int, clock) -> dict:
    codec = get_codec(parse_codec_spec(spec))
    payload = codec.encode(volume)
    # The bare call gets the arguments the wrapper hands its library: the same work.
    bare_compress, bare_decompress = bare_calls(codec, volume)
    bare_payload = bare_compress()
    if codec.codec_id == "zfp":
        assert bare_payload == payload, "the wrapper must produce zfpy's own stream"

    times = median_seconds(
        {
            "wrapper_compress": lambda: codec.encode(volume),
            "bare_compress": bare_compress,
            "wrapper_decompress": lambda: codec.decode(payload, volume.shape, volume.dtype),
            "bare_decompress": lambda: bare_decompress(bare_payload),
        },
        repeats,
        clock,
    )
    megabytes = volume.nbytes / 1e6
    return {
        "spec": spec,
        "compression_ratio": volume.nbytes / len(payload),
        "bare_compression_ratio": volume.nbytes / len(bare_payload),
        **{f"{name}_mb_s": megabytes / seconds for name, seconds in times.items()},
        "compress_overhead": times["wrapper_compress"] / times["bare_compress"],
        "decompress_overhead": times["wrapper_decompress"] / times["bare_decompress"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype",
        choices=["int16", "float32"],
        default="int16",
        help="float32 leaves out the integer round trip, showing the bare wrapper cost",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine)",
    )
    parser.add_argument("--codec", nargs="+", help="only these codecs (ids), e.g. sz3 lerc")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()

    volume = make_volume(tuple(args.shape), args.seed).astype(args.dtype)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    specs = [s for s in SPECS if not args.codec or s.split(":")[0] in args.codec]
    rows = [bench_spec(volume, spec, args.repeats, clock) for spec in specs]
    if args.json:
        summary = {"shape": args.shape, "dtype": str(volume.dtype), "clock": args.clock}
        print(json.dumps({**summary, "rows": rows}, indent=2))
        return
    shape = "x".join(map(str, args.shape))
    print(
        f"{shape} {volume.dtype} ({volume.nbytes / 1e6:.2f} MB), "
        f"median of {args.repeats} runs, {args.clock} clock"
    )
    print(
        f"{'codec':<28}{'CR':>8}{'bare':>8} | {'compress MB/s':>20} {'ratio':>6} | "
        f"{'decompress MB/s':>20} {'ratio':>6}"
    )
    print(
        f"{'':<28}{'':>8}{'':>8} | {'wrapper':>10}{'bare':>10} {'':>6} | {'wrapper':>10}{'bare':>10}"
    )
    for row in rows:
        print(
            f"{row['spec']:<28}{row['compression_ratio']:>8.2f}{row['bare_compression_ratio']:>8.2f} | "
            f"{row['wrapper_compress_mb_s']:>10.0f}{row['bare_compress_mb_s']:>10.0f} "
            f"{row['compress_overhead']:>6.2f} | "
            f"{row['wrapper_decompress_mb_s']:>10.0f}{row['bare_decompress_mb_s']:>10.0f} "
            f"{row['decompress_overhead']:>6.2f}"
        )


if __name__ == "__main__":
    main()
