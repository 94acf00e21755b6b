"""Codec throughput: MB/s of compress and decompress per zfp mode, next to a bare zfpy
call on the same array, so the wrapper's overhead shows as a ratio (target <= 1.1).

    python bench/codec_throughput.py [--shape 128 128 96] [--repeats 9] [--clock cpu] [--json]

MB/s are of the original volume's raw bytes. "bare" is the least code that does the
same job by hand: compress = zfpy.compress_numpy(volume.astype(float32), <parameter>),
decompress = zfpy.decompress_numpy(payload) (left in float32). For an int16 volume the
wrapper also turns the decoded floats back into int16 (round, clip, cast), which is
counted against it; `--dtype float32` shows the wrapper without that step.
Each figure is the median of --repeats runs; the four timed calls take turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import zfpy

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.codecs.zfp import working_dtype

SPECS = [
    "zfp:rate=2",
    "zfp:rate=8",
    "zfp:rate=16",
    "zfp:tolerance=500",
    "zfp:tolerance=1000",
    "zfp:relative_tolerance=0.01",
    "zfp:precision=16",
    "zfp:reversible",
]


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
    # The bare call gets the arguments the wrapper hands zfp, so both do the same work.
    kwargs = codec.zfp_arguments(volume)
    work_dtype = working_dtype(volume.dtype)
    bare_payload = zfpy.compress_numpy(volume.astype(work_dtype), **kwargs)
    assert bare_payload == payload, "the wrapper must produce zfpy's own stream"

    times = median_seconds(
        {
            "wrapper_compress": lambda: codec.encode(volume),
            "bare_compress": lambda: zfpy.compress_numpy(volume.astype(work_dtype), **kwargs),
            "wrapper_decompress": lambda: codec.decode(payload, volume.shape, volume.dtype),
            "bare_decompress": lambda: zfpy.decompress_numpy(payload),
        },
        repeats,
        clock,
    )
    megabytes = volume.nbytes / 1e6
    return {
        "spec": spec,
        "compression_ratio": volume.nbytes / len(payload),
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
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()

    volume = make_volume(tuple(args.shape), args.seed).astype(args.dtype)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    rows = [bench_spec(volume, spec, args.repeats, clock) for spec in SPECS]
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
        f"{'codec':<28}{'CR':>7} | {'compress MB/s':>20} {'ratio':>6} | "
        f"{'decompress MB/s':>20} {'ratio':>6}"
    )
    print(f"{'':<28}{'':>7} | {'wrapper':>10}{'bare':>10} {'':>6} | {'wrapper':>10}{'bare':>10}")
    for row in rows:
        print(
            f"{row['spec']:<28}{row['compression_ratio']:>7.2f} | "
            f"{row['wrapper_compress_mb_s']:>10.0f}{row['bare_compress_mb_s']:>10.0f} "
            f"{row['compress_overhead']:>6.2f} | "
            f"{row['wrapper_decompress_mb_s']:>10.0f}{row['bare_decompress_mb_s']:>10.0f} "
            f"{row['decompress_overhead']:>6.2f}"
        )


if __name__ == "__main__":
    main()
