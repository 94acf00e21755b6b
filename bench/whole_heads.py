"""A model on fresh whole heads and fresh crops: the model card's accuracy rows.

    python bench/whole_heads.py [--model mvn-small] [--checkpoint PT]
                                [--heads 4] [--head-seed 3000] [--head-shape 512 512 160]
                                [--crops 24] [--crop-seed 10000] [--json]

Whole heads ("whole-head" phantoms, never seen in training) are scored the paper's way,
against the union of the named arterial territories (`Phantom.mask`), with the Dice
against every vessel (`Phantom.vessels`) beside it; the Circle-of-Willis crop of each
head (`cow_window`, --cow-margin-mm, as TopCoW cuts its region of interest: about
43x41x24 mm) alone against the same truths, with its agreement with the whole head's
mask on that region ("fov agreement"); crops (the generator's default
128x128x96 "crop"/"head" volumes) against their every-vessel mask, as before. Each row
also gives how connected the predicted mask is (`connectivity_metrics`: pieces, the
share of its voxels in pieces under 50 voxels) and the seconds per volume.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vesselzip.dataset_crops import cow_window
from vesselzip.metrics import connectivity_metrics, segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.phantoms import make_phantom
from vesselzip.volumes import Volume


def score(segmenter, volume: Volume, seed: int, truths: dict[str, np.ndarray]) -> dict:
    started = time.perf_counter()
    predicted = segmenter.segment(volume)
    row = {"seed": seed, "seconds": time.perf_counter() - started, "mask": predicted}
    for name, truth in truths.items():
        row[f"dice_{name}"] = segmentation_metrics(predicted, truth)["dice"]
    connectivity = connectivity_metrics(predicted)
    row["pieces"] = connectivity["pieces"]
    row["speck_share"] = connectivity["speck_share"]
    row["marked_voxels"] = connectivity["voxels"]
    # The first truth's own pieces: phantom masks have twigs cut by the field of view.
    row["truth_pieces"] = connectivity_metrics(next(iter(truths.values())))["pieces"]
    return row


def cow_row(segmenter, head, head_mask: np.ndarray, margin_mm: float) -> dict:
    """The head's Circle-of-Willis crop segmented alone, against its truths and against
    the whole head's mask on that region."""
    window = cow_window(head.territories, head.spacing, margin_mm)
    affine = head.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([w.start for w in window], dtype=np.float64)
    crop = Volume(np.ascontiguousarray(head.image[window]), affine, header=None)
    truths = {"labelled": head.mask[window], "every_vessel": head.vessels[window]}
    row = score(segmenter, crop, head.seed, truths)
    row["fov_agreement"] = segmentation_metrics(row["mask"], head_mask[window])["dice"]
    row["shape"] = list(crop.data.shape)
    return row


def shown(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "mask"}


def summary(kind: str, rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k.startswith("dice_") or k == "fov_agreement"] + [
        "pieces",
        "truth_pieces",
        "speck_share",
        "seconds",
    ]
    return (
        {"cases": kind, "volumes": len(rows)}
        | {key: float(np.mean([row[key] for row in rows])) for key in keys}
        | {"min_" + k: float(min(row[k] for row in rows)) for k in keys if k.startswith("dice_")}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mvn-small")
    parser.add_argument("--checkpoint", default=None, help="with --model mvn-checkpoint")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-seed", type=int, default=3000)
    parser.add_argument("--head-shape", type=int, nargs=3, default=(512, 512, 160))
    parser.add_argument("--cow-margin-mm", type=float, default=5.0)
    parser.add_argument("--crops", type=int, default=24)
    parser.add_argument("--crop-seed", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    segmenter = load_segmenter(args.model, checkpoint=args.checkpoint)
    head_rows, cow_rows, crop_rows = [], [], []
    for i in range(args.heads):
        head = make_phantom(args.head_seed + i, tuple(args.head_shape), spacing=None)
        truths = {"labelled": head.mask, "every_vessel": head.vessels}
        volume = Volume(head.image, head.affine, header=None)
        head_rows.append(score(segmenter, volume, head.seed, truths))
        print(json.dumps({"whole_head": shown(head_rows[-1])}), flush=True)
        cow_rows.append(cow_row(segmenter, head, head_rows[-1]["mask"], args.cow_margin_mm))
        print(json.dumps({"cow_crop": shown(cow_rows[-1])}), flush=True)
    for i in range(args.crops):
        crop = make_phantom(args.crop_seed + i, spacing=None)
        volume = Volume(crop.image, crop.affine, header=None)
        crop_rows.append(score(segmenter, volume, crop.seed, {"every_vessel": crop.mask}))
        print(json.dumps({"crop": shown(crop_rows[-1])}), flush=True)

    summaries = []
    if head_rows:
        summaries.append(summary(f"whole heads {tuple(args.head_shape)}", head_rows))
        summaries.append(summary("their Circle-of-Willis crops", cow_rows))
    if crop_rows:
        summaries.append(summary("crops 128x128x96", crop_rows))
    if args.json:
        rows = {"heads": head_rows, "cow_crops": cow_rows, "crops": crop_rows}
        print(
            json.dumps({"summaries": summaries} | {k: list(map(shown, v)) for k, v in rows.items()})
        )
        return
    print(f"\nmodel {segmenter!r}")
    print(
        "| cases | volumes | Dice labelled | Dice every vessel | min Dice | pieces "
        "| pieces of the truth | voxels in specks | s/volume | fov agreement |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in summaries:
        labelled = row.get("dice_labelled")
        main_min = row.get("min_dice_labelled", row.get("min_dice_every_vessel"))
        print(
            f"| {row['cases']} | {row['volumes']} | "
            f"{'' if labelled is None else f'{labelled:.4f}'} | {row['dice_every_vessel']:.4f} | "
            f"{main_min:.4f} | {row['pieces']:.0f} | {row['truth_pieces']:.0f} | "
            f"{100 * row['speck_share']:.1f} % | "
            f"{row['seconds']:.1f} | {row.get('fov_agreement', float('nan')):.4f} |"
        )


if __name__ == "__main__":
    main()
