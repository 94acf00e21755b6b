"""What measuring a compressed volume costs next to the codec that compressed it.

For each phantom shape, read from NIfTI bytes as an upload is (Fortran-ordered int16):
encode and decode seconds as the gateway runs them (`encode_volume`, `decode_volume`:
slab by slab), seconds of `compression_metrics` on the round trip (each the best of
--repeats), their ratio (metrics / (encode + decode); the gateway's target is <= 1),
and the peak memory the metrics allocate beyond their two inputs (tracemalloc, which
sees numpy's buffers), in MiB and as a multiple of the raw volume.

Then the same round trip as the gateway runs it (`vesselzip.roundtrip`: metric tiles on
the shared pool while later slabs are coded): its wall seconds, "beyond codec" =
(round trip - (encode + decode alone)) / (encode + decode alone), the gateway's target
being <= 1, and its peak allocations beyond the original (the decoded volume, the blob
and every buffer) as a multiple of the raw volume. Its metrics are checked to equal
the sequential ones.

    python bench/compression_metrics.py --shapes 128,128,96 512,512,160 --codec zfp:tolerance=500
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import nibabel as nib

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics.compression import compression_metrics
from vesselzip.phantoms import make_phantom
from vesselzip.roundtrip import encode_decode_measure
from vesselzip.volumes import read_volume


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def one_shape(shape: tuple[int, int, int], codec_spec: str, repeats: int) -> dict:
    image = make_phantom(seed=1, shape=shape).image
    volume = read_volume(nib.Nifti1Image(image, None).to_bytes())
    codec = get_codec(parse_codec_spec(codec_spec))
    encode_s, blob = best_of(repeats, lambda: encode_volume(volume, codec))
    decode_s, decoded = best_of(repeats, lambda: decode_volume(blob, order="F").data)
    original = volume.data

    def measure():
        return compression_metrics(original, decoded, blob_nbytes=len(blob))

    metrics_s, metrics = best_of(repeats, measure)
    tracemalloc.start()
    measure()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    round_trip_s, round_trip = best_of(repeats, lambda: encode_decode_measure(volume, codec))
    for key in ("psnr_db", "ssim", "rmse", "max_abs_error"):
        assert round_trip.metrics[key] == metrics[key], key
    del round_trip
    tracemalloc.start()
    encode_decode_measure(volume, codec)
    _, round_trip_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "shape": shape,
        "dtype": str(original.dtype),
        "decoded_dtype": str(decoded.dtype),
        "raw_nbytes": original.nbytes,
        "encode_s": encode_s,
        "decode_s": decode_s,
        "metrics_s": metrics_s,
        "ratio": metrics_s / (encode_s + decode_s),
        "peak_bytes": peak,
        "round_trip_s": round_trip_s,
        "beyond_codec": (round_trip_s - encode_s - decode_s) / (encode_s + decode_s),
        "round_trip_peak_bytes": round_trip_peak,
        "psnr_db": metrics["psnr_db"],
        "ssim": metrics["ssim"],
        "max_abs_error": metrics["max_abs_error"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["128,128,96", "512,512,160"])
    parser.add_argument("--codec", default="zfp:tolerance=500")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    mib = 1 << 20
    print(f"codec {args.codec}, best of {args.repeats}")
    print(
        f"{'shape':>14} {'encode s':>9} {'decode s':>9} {'metrics s':>10} "
        f"{'metrics/codec':>14} {'peak MiB':>9} {'x raw':>6} {'pipelined s':>11} "
        f"{'beyond codec':>12} {'x raw':>6}  psnr_db / ssim"
    )
    for text in args.shapes:
        shape = tuple(int(n) for n in text.split(","))
        row = one_shape(shape, args.codec, args.repeats)  # type: ignore[arg-type]
        print(
            f"{'x'.join(map(str, row['shape'])):>14} {row['encode_s']:9.3f} "
            f"{row['decode_s']:9.3f} {row['metrics_s']:10.3f} {row['ratio']:14.2f} "
            f"{row['peak_bytes'] / mib:9.1f} {row['peak_bytes'] / row['raw_nbytes']:6.2f} "
            f"{row['round_trip_s']:11.3f} {row['beyond_codec']:12.2f} "
            f"{row['round_trip_peak_bytes'] / row['raw_nbytes']:6.2f}  "
            f"{row['psnr_db']:.6f} / {row['ssim']:.9f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
