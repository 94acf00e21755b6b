"""Overlap and surface-distance metrics between a predicted and a true binary mask.
Definitions and empty-mask conventions are written out in docs/metrics.md; keep the
two in step. Surface distances follow MONAI's compute_hausdorff_distance and
compute_average_surface_distance so the numbers agree with it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from vesselzip.errors import InvalidVolumeError


def _as_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise InvalidVolumeError(
            f"predicted mask has shape {pred.shape}, ground truth has {truth.shape}; "
            "they must cover the same voxel grid"
        )
    if pred.size == 0:
        raise InvalidVolumeError("cannot compare empty masks")
    # Any positive voxel is foreground, so label maps and 0/255 masks work too.
    return pred > 0, truth > 0


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise InvalidVolumeError(f"spacing {spacing} has {len(spacing)} values; masks are {ndim}D")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InvalidVolumeError(f"voxel spacing must be positive, got {spacing}")
    return spacing


def surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with at least one face neighbour (6-connectivity in 3D) in the
    background; outside the array counts as background. Same as MONAI's get_mask_edges."""
    return mask ^ ndimage.binary_erosion(mask)


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from every surface voxel of `pred` to the nearest surface voxel
    of `truth`, and the other way round. Both masks must be non-empty booleans."""
    # Only the bounding box of the union matters: no surface voxel lies outside it.
    union_box = ndimage.find_objects((pred | truth).astype(np.uint8))[0]
    pred_surface = surface(pred[union_box])
    truth_surface = surface(truth[union_box])
    scale = np.asarray(spacing, dtype=np.float64)
    return (
        _distances_to(pred_surface, truth_surface, scale),
        _distances_to(truth_surface, pred_surface, scale),
    )


def _distances_to(source: np.ndarray, target: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Distance from each `source` voxel to the nearest `target` voxel, in mm, in the
    order of np.argwhere(source). A k-d tree over the surface voxels needs memory in
    proportion to the surface, unlike a distance transform of the whole box."""
    distances = np.zeros(np.count_nonzero(source), dtype=np.float64)
    # Voxels on both surfaces are at distance 0; only the rest need a search.
    off_target = ~target[source]
    if off_target.any():
        tree = cKDTree(np.argwhere(target) * scale)
        query = np.argwhere(source & ~target) * scale
        distances[off_target] = tree.query(query)[0]
    return distances


def _ratio(numerator: float, denominator: float, identical: bool) -> float | None:
    """A zero denominator means nothing to measure: 1.0 when the masks agree exactly,
    otherwise undefined (None)."""
    if denominator == 0:
        return 1.0 if identical else None
    return numerator / denominator


def _volume_similarity(pred_voxels: int, truth_voxels: int) -> float:
    """1 - |Vp - Vt| / (Vp + Vt); 1.0 when both masks are empty."""
    if pred_voxels + truth_voxels == 0:
        return 1.0
    return 1.0 - abs(pred_voxels - truth_voxels) / (pred_voxels + truth_voxels)


def segmentation_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict:
    """Dice, IoU, sensitivity, specificity, precision, volume similarity, HD95 and ASSD
    (mm, from `spacing`) plus the confusion counts, as a JSON-safe dict.

    Voxels > 0 are foreground. Both masks empty: overlap scores 1.0, distances 0.0.
    One mask empty: Dice/IoU/volume similarity 0.0, distances None."""
    pred, truth = _as_masks(pred, truth)
    spacing = _check_spacing(spacing, pred.ndim)

    pred_voxels = int(np.count_nonzero(pred))
    truth_voxels = int(np.count_nonzero(truth))
    tp = int(np.count_nonzero(pred & truth))
    fp = pred_voxels - tp
    fn = truth_voxels - tp
    tn = pred.size - tp - fp - fn
    identical = fp == 0 and fn == 0

    hd95_mm: float | None
    assd_mm: float | None
    if pred_voxels and truth_voxels:
        pred_to_truth, truth_to_pred = surface_distances(pred, truth, spacing)
        hd95_mm = max(
            float(np.percentile(pred_to_truth, 95)), float(np.percentile(truth_to_pred, 95))
        )
        assd_mm = float(np.concatenate([pred_to_truth, truth_to_pred]).mean())
    elif identical:  # both empty
        hd95_mm = assd_mm = 0.0
    else:
        hd95_mm = assd_mm = None

    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, identical),
        "iou": _ratio(tp, tp + fp + fn, identical),
        "sensitivity": _ratio(tp, tp + fn, identical),
        "specificity": _ratio(tn, tn + fp, identical),
        "precision": _ratio(tp, tp + fp, identical),
        "volume_similarity": _volume_similarity(pred_voxels, truth_voxels),
        "hd95_mm": hd95_mm,
        "assd_mm": assd_mm,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "pred_voxels": pred_voxels,
        "truth_voxels": truth_voxels,
        "voxel_volume_mm3": math.prod(spacing),
    }


#: What `agreement_metrics` reports.
AGREEMENT_METRICS = ("dice", "iou", "hd95_mm")


def agreement_metrics(
    mask: np.ndarray, reference: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict:
    """Dice, IoU and HD95 of `mask` against `reference`, a mask of the same volume by the
    same model (no truth involved): how much the segmentation moved, not how right it is.
    Same definitions and empty-mask conventions as `segmentation_metrics`."""
    scores = segmentation_metrics(mask, reference, spacing)
    return {name: scores[name] for name in AGREEMENT_METRICS}
