"""Choose a model's probability smoothing and vessel threshold on held-out data.

    python bench/threshold_scan.py DATASET.json [...] [--model mvn-arteries] [--checkpoint PT]
                                   [--sigma 0 0.5 0.75 1] [--thresholds 0.3 0.4 ...]
                                   [--label label] [--real VOLUME.nii.gz ...]
                                   [--codec zfp:tolerance=500 zfp:tolerance=1500] [--json]

The network runs once per volume (every volume of each dataset.json's `training` and
`validation` lists, and each --real volume with each --codec round trip); every
smoothing sigma (`probability_sigma`) and threshold then gives the mask with the
model's own cleanup. Per setting: the mean Dice against the label over the datasets'
volumes, and for each real volume the agreement of the mask after each codec with the
mask of the original and the share of voxels marked. A smoothing that steadies the
rims under compression is worth its cost in Dice only when both are seen together."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.model.inference import mask_from_logits
from vesselzip.model.segmenters import NetworkSegmenter
from vesselzip.model.train import datalist
from vesselzip.volumes import read_volume


def masks_by_setting(segmenter: NetworkSegmenter, volume, settings) -> dict:
    output = segmenter.logits(volume)
    return {
        (sigma, t): mask_from_logits(
            output, replace(segmenter.config, probability_sigma=sigma, vessel_threshold=t)
        )
        for sigma, t in settings
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="*", type=Path, help="dataset.json files with labels")
    parser.add_argument("--model", default="mvn-arteries")
    parser.add_argument("--checkpoint", default=None, help="with --model mvn-checkpoint")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0])
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    )
    parser.add_argument("--label", default="label", help="the truth key of the datasets")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="unlabelled volumes")
    parser.add_argument("--codec", nargs="*", default=["zfp:tolerance=500", "zfp:tolerance=1500"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    segmenter = load_segmenter(args.model, checkpoint=args.checkpoint)
    if not isinstance(segmenter, NetworkSegmenter):
        parser.error(f"{args.model} is not a network model")
    settings = [(s, t) for s in args.sigma for t in args.thresholds]
    started = time.perf_counter()
    dice: dict[tuple, list[float]] = {setting: [] for setting in settings}
    by_dataset: dict[tuple, list[list[float]]] = {setting: [] for setting in settings}
    for path in args.datasets:
        for scores in by_dataset.values():
            scores.append([])
        items = datalist(path, "training") + datalist(path, "validation")
        for item in items:
            truth = read_volume(item[args.label]).data > 0
            masks = masks_by_setting(segmenter, read_volume(item["image"]), settings)
            for setting, mask in masks.items():
                score = segmentation_metrics(mask, truth)["dice"]
                dice[setting].append(score)
                by_dataset[setting][-1].append(score)
    real: dict[str, dict] = {}
    for path in args.real:
        volume = read_volume(path)
        original = masks_by_setting(segmenter, volume, settings)
        rows = {setting: {"marked": float(mask.mean())} for setting, mask in original.items()}
        for spec in args.codec:
            decoded = decode_volume(encode_volume(volume, get_codec(parse_codec_spec(spec))))
            for setting, mask in masks_by_setting(segmenter, decoded, settings).items():
                rows[setting][spec] = segmentation_metrics(mask, original[setting])["dice"]
        real[path.name] = rows

    table = []
    for setting in settings:
        row = {"sigma": setting[0], "threshold": setting[1]}
        if dice[setting]:
            row |= {"dice": float(np.mean(dice[setting])), "min_dice": float(np.min(dice[setting]))}
            if len(args.datasets) > 1:
                for index, scores in enumerate(by_dataset[setting], start=1):
                    row[f"data{index} dice"] = float(np.mean(scores)) if scores else float("nan")
        for index, rows in enumerate(real.values(), start=1):
            row |= {f"real{index} {key}": value for key, value in rows[setting].items()}
        table.append(row)
    if args.json:
        print(json.dumps({"model": args.model, "rows": table}, indent=2))
        return 0
    volumes = len(next(iter(dice.values())))
    print(
        f"{args.model}: {volumes} labelled volumes, {len(real)} real, "
        f"{time.perf_counter() - started:.0f} s"
    )
    for index, path in enumerate(args.datasets, start=1):
        print(f"data{index}: {path}")
    for index, name in enumerate(real, start=1):
        print(f"real{index}: {name}")
    for row in table:
        print(
            "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
