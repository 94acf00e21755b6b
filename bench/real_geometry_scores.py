"""The bundled models on volumes rendered around real vessel masks (`vesselzip phantom
--geometry`), scored against the mask they were rendered around.

    python bench/real_geometry_scores.py --masks DIR [--model mvn-vessels mvn-arteries]
                                         [--seed 0] [--only NAME ...] [--json OUT]

Mask i (in name order) is rendered with seed SEED + i, as `real_geometry.py` does. Each
line: the mask, its kind (binary: every vessel; TopCoW: the named arteries of the
Circle of Willis), the model, the Dice against the mask, the pieces of the predicted
mask and of the truth, the share of the prediction in pieces under 50 voxels and the
seconds of inference. A binary mask's truth is every vessel, what `mvn-vessels`
answers; a TopCoW mask's is the named arteries, what `mvn-arteries` answers.
Reference masks are in the team's shared folder (real_tof/labels_only)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vesselzip.metrics import connectivity_metrics, segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.phantoms.around_mask import render_around_mask
from vesselzip.phantoms.real_masks import read_real_mask
from vesselzip.volumes import Volume


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--model", nargs="+", default=["mvn-vessels", "mvn-arteries"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=[], help="masks whose name holds one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    paths = sorted(p for p in args.masks.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    rows = []
    for index, path in enumerate(paths):
        if args.only and not any(part in path.name for part in args.only):
            continue
        mask = read_real_mask(path)
        phantom = render_around_mask(mask, args.seed + index)
        volume = Volume(phantom.image, phantom.affine, header=None)
        truth_pieces = connectivity_metrics(phantom.mask)["pieces"]
        for name in args.model:
            segmenter = load_segmenter(name)
            started = time.perf_counter()
            predicted = segmenter.segment(volume)
            seconds = time.perf_counter() - started
            pieces = connectivity_metrics(predicted)
            row = {
                "mask": mask.name,
                "kind": mask.kind,
                "model": name,
                "dice": segmentation_metrics(predicted, phantom.mask)["dice"],
                "pieces": pieces["pieces"],
                "truth_pieces": truth_pieces,
                "speck_share": pieces["speck_share"],
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"{row['mask'][:44]:44} {row['kind']:7} {name:13} Dice {row['dice']:.3f}  "
                f"pieces {row['pieces']:4d} (truth {truth_pieces:4d})  specks "
                f"{row['speck_share']:.1%}  {seconds:5.1f} s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
