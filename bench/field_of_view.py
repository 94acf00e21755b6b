"""Does a segmenter see a crop the same alone and inside a larger field of view?

    python bench/field_of_view.py [--model mvn-small] [--checkpoint PATH]
                                  [--phantoms 8] [--seed 10000] [--tubes 4] [--json]

Each volume is segmented alone, then placed inside a field of view twice as large
per axis, the rest Rician air (σ = 5 % of the volume's median intensity), once at an
offset on the 4-voxel block grid of the tissue detection and once off it. Rows per
placement: the agreement of the two masks on the volume (Dice), the voxels marked in
the air around it, and the Dice of each against the volume's truth. Volumes: fresh
crop phantoms (seeds from --seed, every vessel as truth) and volumes from the other
generator of `bench/robustness.py` (tissue throughout, a 12-bit scale).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

# Run as a script, the bench folder is on the path: the other generator is shared.
from robustness import as_volume, tube_volume

from vesselzip.metrics.segmentation import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.phantoms import make_phantom

PLACEMENTS = {"on the block grid": (0, 0, 0), "off the block grid": (2, 3, 1)}


def in_air(image: np.ndarray, placement: tuple[int, int, int], seed: int):
    """`image` inside air twice its size per axis, and the slices where it lies."""
    rng = np.random.default_rng(seed)
    shape = tuple(2 * n for n in image.shape)
    sigma = 0.05 * float(np.median(image))
    air = np.hypot(rng.normal(0.0, sigma, shape), rng.normal(0.0, sigma, shape))
    corner = [(n // 2) // 4 * 4 + shift for n, shift in zip(image.shape, placement, strict=True)]
    inside = tuple(slice(c, c + n) for c, n in zip(corner, image.shape, strict=True))
    air[inside] = image
    return air.astype(image.dtype), inside


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * (a & b).sum() / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mvn-small")
    parser.add_argument("--checkpoint", default=None, help="with --model mvn-checkpoint")
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=10000, help="first phantom seed")
    parser.add_argument("--tubes", type=int, default=4, help="volumes from the other generator")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    segmenter = load_segmenter(args.model, checkpoint=args.checkpoint)
    volumes = []
    for i in range(args.phantoms):
        phantom = make_phantom(args.seed + i, field_of_view="crop")
        volumes.append((f"phantom {args.seed + i}", phantom.image, phantom.mask, phantom.spacing))
    for i in range(args.tubes):
        volumes.append((f"other generator {args.seed + i}", *tube_volume(args.seed + i)))
    rows = []
    for index, (name, image, truth, spacing) in enumerate(volumes, 1):
        alone = segmenter.segment(as_volume(image, spacing))
        for placement, shift in PLACEMENTS.items():
            embedded, inside = in_air(image, shift, seed=index)
            started = time.perf_counter()
            around = segmenter.segment(as_volume(embedded, spacing))
            row = {
                "volume": name,
                "placement": placement,
                "agreement_dice": round(dice(alone, around[inside]), 4),
                "voxels_in_air": int(around.sum() - around[inside].sum()),
                "dice_alone": round(segmentation_metrics(alone, truth, spacing)["dice"], 4),
                "dice_inside": round(
                    segmentation_metrics(around[inside], truth, spacing)["dice"], 4
                ),
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            if not args.json:
                print(
                    f"[{index}/{len(volumes)}] {name}, {placement}: agreement "
                    f"{row['agreement_dice']:.4f}, {row['voxels_in_air']} voxels in air",
                    flush=True,
                )
    if args.json:
        print(json.dumps({"model": args.model, "rows": rows}, indent=2))
        return
    print(f"\n{args.model}\n| placement | volumes | agreement Dice (min / mean) | voxels in air |")
    print("|---|---:|---:|---:|")
    for placement in PLACEMENTS:
        chosen = [r for r in rows if r["placement"] == placement]
        agreement = [r["agreement_dice"] for r in chosen]
        print(
            f"| {placement} | {len(chosen)} | {min(agreement):.4f} / "
            f"{np.mean(agreement):.4f} | {sum(r['voxels_in_air'] for r in chosen)} |"
        )


if __name__ == "__main__":
    main()
