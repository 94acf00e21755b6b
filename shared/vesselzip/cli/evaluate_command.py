"""`vesselzip evaluate`: segmentation metrics of a predicted mask against a ground truth."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from vesselzip.errors import InvalidVolumeError

# Voxel-to-world matrices further apart than this (mm) describe different grids.
AFFINE_TOLERANCE = 1e-3

# Display order and labels; any other keys follow in their own order.
_LABELS = {
    "dice": "Dice",
    "iou": "IoU",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "volume_similarity": "Volume similarity",
    "hd95_mm": "HD95 (mm)",
    "assd_mm": "ASSD (mm)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a predicted vessel mask with the ground truth",
        description=(
            "Dice, IoU, sensitivity, specificity, precision, volume similarity, HD95 and "
            "ASSD of a predicted mask against a ground-truth mask (voxels > 0 are vessel). "
            "Distances are in mm, from the ground truth's voxel spacing."
        ),
    )
    parser.add_argument("--pred", required=True, help="predicted mask (.nii or .nii.gz)")
    parser.add_argument("--truth", required=True, help="ground-truth mask (.nii or .nii.gz)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(handler=run_evaluate)


def evaluate_files(pred_path: str, truth_path: str) -> dict:
    """Segmentation metrics of the mask in `pred_path` against the one in `truth_path`.
    Both must lie on the same voxel grid (shape and affine)."""
    # Imported here so `vesselzip --help` does not load the volume reader.
    from vesselzip.metrics.segmentation import segmentation_metrics
    from vesselzip.volumes import read_volume

    pred = read_volume(pred_path)
    truth = read_volume(truth_path)
    if pred.data.shape != truth.data.shape:
        raise InvalidVolumeError(
            f"{pred_path} has shape {pred.data.shape} but {truth_path} has "
            f"{truth.data.shape}; the masks must cover the same voxel grid"
        )
    affine_gap = float(np.max(np.abs(np.asarray(pred.affine) - np.asarray(truth.affine))))
    if affine_gap > AFFINE_TOLERANCE:
        raise InvalidVolumeError(
            f"{pred_path} and {truth_path} have different affines (largest difference "
            f"{affine_gap:.4g}); the masks are not on the same grid, so the metrics "
            "would be meaningless"
        )
    return segmentation_metrics(pred.data, truth.data, spacing=tuple(truth.spacing))


def format_metrics(metrics: dict[str, Any]) -> str:
    """Plain aligned `label  value` lines; undefined values print as 'undefined'."""
    keys = list(_LABELS) + [key for key in metrics if key not in _LABELS]
    rows = [(_LABELS.get(key, key), metrics[key]) for key in keys if key in metrics]
    width = max(len(label) for label, _ in rows)
    lines = []
    for label, value in rows:
        if value is None:
            text = "undefined"
        elif isinstance(value, float):
            text = f"{value:.6f}"
        else:
            text = str(value)
        lines.append(f"{label:<{width}}  {text}")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    metrics = evaluate_files(args.pred, args.truth)
    if args.json:
        print(json.dumps(metrics, indent=2, allow_nan=False))
    else:
        print(format_metrics(metrics))
    return 0
