"""How phantoms compress under ZFP, next to the paper and a real TOF-MRA crop.

Generates crop and small-head phantoms (at --shape/--spacing) and anatomical
whole-head phantoms (at a clinical --whole-head-shape, spacing drawn per seed),
compresses each with the product's zfp codec (zfpy backend; int16 is compressed
as float32, decoded back to int16), and prints a Markdown table of mean
compression ratio (against the int16 bytes) and PSNR (peak = original max - min).
Also prints generation time per volume.

    python bench/phantom_zfp_table.py [--n 6] [--seed 100] [--shape 128 128 96]
        [--spacing 0.35 0.35 0.5] [--whole-head-n 4]
        [--whole-head-shape 512 512 160] [--per-volume]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from vesselzip.codecs import get_codec
from vesselzip.metrics.compression import psnr
from vesselzip.phantoms import DEFAULT_SPACING, make_phantom

SETTINGS = [("rate", 2), ("rate", 4), ("rate", 8), ("rate", 16)] + [
    ("tolerance", t) for t in (500, 1000, 1500)
]
# Published / measured reference figures: (CR, PSNR); None where not reported.
PAPER = {
    ("rate", 2): (7.96, 48.5),
    ("rate", 4): (3.98, 58.1),
    ("rate", 8): (1.99, 65.2),
    ("rate", 16): (0.995, 89.6),
    ("tolerance", 500): (22.9, 46.0),
    ("tolerance", 1000): (34.9, 42.4),
    ("tolerance", 1500): (49.1, 39.2),
}
REAL_CROP = {
    ("rate", 2): (7.5, 49.4),
    ("tolerance", 500): (15.4, 44.6),
    ("tolerance", 1000): (23.7, 40.7),
    ("tolerance", 1500): (34.0, 37.2),
}


def measure(image: np.ndarray) -> dict:
    row = {}
    for mode, value in SETTINGS:
        codec = get_codec({"id": "zfp", "mode": mode, "value": value})
        payload = codec.encode(image)
        decoded = codec.decode(payload, image.shape, image.dtype)
        row[(mode, value)] = (image.nbytes / len(payload), psnr(image, decoded))
    return row


def number(value: float) -> str:
    # A volume decoded to its exact int16 values has an infinite PSNR.
    return "∞" if math.isinf(value) else f"{value:.1f}"


def fmt(pair) -> str:
    return "–" if pair is None else f"{pair[0]:.1f} / {number(pair[1])}"


def spread(values) -> str:
    low, high = min(values), max(values)
    return number(low) if low == high else f"{number(low)}–{number(high)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="phantoms per field of view")
    parser.add_argument("--seed", type=int, default=100, help="first seed")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING))
    parser.add_argument("--whole-head-n", type=int, default=4, help="whole-head phantoms")
    parser.add_argument("--whole-head-shape", type=int, nargs=3, default=[512, 512, 160])
    parser.add_argument("--per-volume", action="store_true", help="also print every volume")
    args = parser.parse_args()

    kinds = {
        "crop": (args.n, tuple(args.shape), tuple(args.spacing)),
        "head": (args.n, tuple(args.shape), tuple(args.spacing)),
        "whole-head": (args.whole_head_n, tuple(args.whole_head_shape), None),
    }
    means, ranges, timings, looks = {}, {}, {}, {}
    for field_of_view, (n, shape, spacing) in kinds.items():
        if n < 1:
            continue
        rows, medians, p99s, maxima = [], [], [], []
        timings[field_of_view] = []
        for i in range(n):
            seed = args.seed + i
            started = time.perf_counter()
            phantom = make_phantom(seed, shape, spacing, field_of_view=field_of_view)
            timings[field_of_view].append(time.perf_counter() - started)
            row = measure(phantom.image)
            rows.append(row)
            medians.append(float(np.median(phantom.image)))
            p99s.append(float(np.percentile(phantom.image, 99)))
            maxima.append(int(phantom.image.max()))
            if args.per_volume:
                style = phantom.style
                print(
                    f"{field_of_view} seed {seed}: median {medians[-1]:.0f} p99 {p99s[-1]:.0f} "
                    f"max {maxima[-1]} noise {style['noise_sigma']:.1f} vessel "
                    f"{100 * style['vessel_fraction']:.1f}% | "
                    + "  ".join(fmt(row[s]) for s in SETTINGS)
                )
        means[field_of_view] = {
            s: (statistics.mean(r[s][0] for r in rows), statistics.mean(r[s][1] for r in rows))
            for s in SETTINGS
        }
        ranges[field_of_view] = {
            s: (spread([r[s][0] for r in rows]), spread([r[s][1] for r in rows])) for s in SETTINGS
        }
        looks[field_of_view] = (
            statistics.median(medians),
            statistics.median(p99s),
            statistics.median(maxima),
        )

    shape = "×".join(map(str, args.shape))
    spacing = "×".join(f"{s:g}" for s in args.spacing)
    whole = "×".join(map(str, args.whole_head_shape))
    print(
        f"\nZFP on phantoms (crop and head: {shape} voxels of {spacing} mm; whole head: "
        f"{whole}, clinical spacing drawn per seed; seeds from {args.seed}); cells are "
        "CR / PSNR dB\n"
    )
    names = list(means)
    counts = {name: kinds[name][0] for name in names}
    print(
        "| ZFP setting | paper, RSNA MRA (whole head) | real TOF crop | "
        + " | ".join(f"phantom {name} (n={counts[name]})" for name in names)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(names))
    for setting in SETTINGS:
        mode, value = setting
        cells = " | ".join(fmt(means[name][setting]) for name in names)
        print(
            f"| {mode} {value} | {fmt(PAPER.get(setting))} | {fmt(REAL_CROP.get(setting))} | "
            f"{cells} |"
        )
    print("\nSpread over the phantoms (min–max):\n")
    print("| ZFP setting | " + " | ".join(f"{n} CR | {n} PSNR" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    for setting in SETTINGS:
        cells = " | ".join(f"{ranges[n][setting][0]} | {ranges[n][setting][1]}" for n in names)
        print(f"| {setting[0]} {setting[1]} | {cells} |")
    for field_of_view, (median, p99, maximum) in looks.items():
        print(
            f"\n{field_of_view}: median of per-volume median {median:.0f}, "
            f"99th percentile {p99:.0f}, max {maximum:.0f}"
        )
    for field_of_view, seconds in timings.items():
        print(
            f"\ngeneration ({field_of_view}): mean {statistics.mean(seconds):.2f} s, "
            f"max {max(seconds):.2f} s per {'×'.join(map(str, kinds[field_of_view][1]))} volume"
        )


if __name__ == "__main__":
    main()
