"""Segmentation metrics: hand-computed cases, empty masks, and agreement with MONAI."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from vesselzip.errors import InvalidVolumeError
from vesselzip.metrics.segmentation import segmentation_metrics, surface


def assert_json_safe(metrics: dict) -> None:
    json.dumps(metrics, allow_nan=False)


def monai_metrics(pred: np.ndarray, truth: np.ndarray, spacing) -> dict:
    y_pred = torch.from_numpy(pred)[None, None].float()
    y = torch.from_numpy(truth)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty masks
        return {
            "dice": compute_dice(y_pred, y).item(),
            "iou": compute_iou(y_pred, y).item(),
            "hd95_mm": compute_hausdorff_distance(
                y_pred, y, percentile=95, directed=False, spacing=list(spacing)
            ).item(),
            "assd_mm": compute_average_surface_distance(
                y_pred, y, symmetric=True, spacing=list(spacing)
            ).item(),
        }


def random_masks(seed: int, shape, smooth: bool):
    """Two overlapping masks: salt-and-pepper noise, or blobs with real interiors."""
    rng = np.random.default_rng(seed)

    def one(fraction: float) -> np.ndarray:
        noise = rng.random(shape)
        if smooth:
            noise = ndimage.gaussian_filter(noise, 1.5)
        return noise > np.quantile(noise, 1.0 - fraction)

    truth = one(rng.uniform(0.05, 0.4))
    pred = truth.copy()
    flip = rng.random(shape) < rng.uniform(0.0, 0.2)
    pred[flip] = one(rng.uniform(0.05, 0.4))[flip]
    return pred, truth


def test_hand_computed_line_with_anisotropic_spacing():
    # A row of 10 voxels; every voxel is on the surface (the other axes are 1 wide).
    truth = np.zeros((1, 1, 10), dtype=np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 0, 0:4] = 1
    pred[0, 0, 2:6] = 1

    metrics = segmentation_metrics(pred, truth, spacing=(5.0, 7.0, 2.0))

    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (2, 2, 2, 4)
    assert metrics["dice"] == pytest.approx(4 / 8)
    assert metrics["iou"] == pytest.approx(2 / 6)
    assert metrics["sensitivity"] == pytest.approx(2 / 4)
    assert metrics["specificity"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 4)
    assert metrics["volume_similarity"] == pytest.approx(1.0)
    # pred -> truth distances: 0, 0, 2, 4 mm; truth -> pred: 4, 2, 0, 0 mm.
    # 95th percentile with linear interpolation: 2 + 0.85 * (4 - 2) = 3.7.
    assert metrics["hd95_mm"] == pytest.approx(3.7)
    assert metrics["assd_mm"] == pytest.approx(12 / 8)
    assert metrics["voxel_volume_mm3"] == pytest.approx(70.0)
    assert_json_safe(metrics)


def test_distance_between_single_voxels_uses_spacing_per_axis():
    truth = np.zeros((2, 3, 4), dtype=bool)
    pred = np.zeros_like(truth)
    truth[0, 0, 0] = True
    pred[1, 2, 3] = True

    metrics = segmentation_metrics(pred, truth, spacing=(0.5, 2.0, 1.5))

    expected = math.sqrt(0.5**2 + 4.0**2 + 4.5**2)
    assert metrics["hd95_mm"] == pytest.approx(expected)
    assert metrics["assd_mm"] == pytest.approx(expected)
    assert metrics["dice"] == 0.0
    assert metrics["iou"] == 0.0
    assert metrics["sensitivity"] == 0.0
    assert metrics["precision"] == 0.0
    assert metrics["specificity"] == pytest.approx(22 / 23)
    assert metrics["volume_similarity"] == 1.0


def test_parallel_planes_distance_is_along_the_right_axis():
    truth = np.zeros((6, 4, 4), dtype=bool)
    pred = np.zeros_like(truth)
    truth[2] = True
    pred[4] = True

    metrics = segmentation_metrics(pred, truth, spacing=(3.0, 1.0, 1.0))

    assert metrics["hd95_mm"] == pytest.approx(6.0)
    assert metrics["assd_mm"] == pytest.approx(6.0)


def test_volume_similarity_and_counts_for_nested_cubes():
    truth = np.zeros((9, 9, 9), dtype=bool)
    truth[1:8, 1:8, 1:8] = True  # 343 voxels
    pred = np.zeros_like(truth)
    pred[2:7, 2:7, 2:7] = True  # 125 voxels, all inside truth

    metrics = segmentation_metrics(pred, truth)

    assert metrics["pred_voxels"] == 125
    assert metrics["truth_voxels"] == 343
    assert metrics["precision"] == 1.0
    assert metrics["sensitivity"] == pytest.approx(125 / 343)
    assert metrics["volume_similarity"] == pytest.approx(1 - 218 / 468)
    assert metrics["dice"] == pytest.approx(250 / 468)
    # Inner surface (98 voxels): all 1 from the outer surface. Outer surface (218):
    # 150 face voxels at 1, 60 edge voxels at sqrt 2, 8 corners at sqrt 3; its 95th
    # percentile (position 0.95 * 217 = 206.15) falls among the edge voxels.
    assert metrics["hd95_mm"] == pytest.approx(math.sqrt(2))
    expected_assd = (98 + 150 + 60 * math.sqrt(2) + 8 * math.sqrt(3)) / (98 + 218)
    assert metrics["assd_mm"] == pytest.approx(expected_assd)


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 13, 14)) < 0.3
    metrics = segmentation_metrics(mask, mask, spacing=(0.7, 0.7, 1.2))
    for key in ("dice", "iou", "sensitivity", "specificity", "precision", "volume_similarity"):
        assert metrics[key] == 1.0
    assert metrics["hd95_mm"] == 0.0
    assert metrics["assd_mm"] == 0.0


def test_both_empty():
    empty = np.zeros((5, 6, 7), dtype=np.uint8)
    metrics = segmentation_metrics(empty, empty)
    for key in ("dice", "iou", "sensitivity", "specificity", "precision", "volume_similarity"):
        assert metrics[key] == 1.0
    assert metrics["hd95_mm"] == 0.0
    assert metrics["assd_mm"] == 0.0
    assert metrics["tn"] == 5 * 6 * 7
    assert_json_safe(metrics)


def test_empty_prediction():
    truth = np.zeros((5, 6, 7), dtype=np.uint8)
    truth[2, 2:4, 3] = 1
    metrics = segmentation_metrics(np.zeros_like(truth), truth)
    assert metrics["dice"] == 0.0
    assert metrics["iou"] == 0.0
    assert metrics["sensitivity"] == 0.0
    assert metrics["specificity"] == 1.0
    assert metrics["precision"] is None  # no positive predictions: undefined
    assert metrics["volume_similarity"] == 0.0
    assert metrics["hd95_mm"] is None
    assert metrics["assd_mm"] is None
    assert_json_safe(metrics)


def test_empty_truth():
    pred = np.zeros((5, 6, 7), dtype=np.uint8)
    pred[1, 1, 1] = 1
    metrics = segmentation_metrics(pred, np.zeros_like(pred))
    assert metrics["dice"] == 0.0
    assert metrics["iou"] == 0.0
    assert metrics["sensitivity"] is None  # nothing to detect: undefined
    assert metrics["precision"] == 0.0
    assert metrics["specificity"] == pytest.approx(209 / 210)
    assert metrics["volume_similarity"] == 0.0
    assert metrics["hd95_mm"] is None
    assert metrics["assd_mm"] is None
    assert_json_safe(metrics)


def test_all_foreground_masks():
    full = np.ones((4, 5, 6), dtype=bool)
    metrics = segmentation_metrics(full, full)
    assert metrics["specificity"] == 1.0  # no negatives, and none predicted
    assert metrics["tn"] == 0
    assert metrics["hd95_mm"] == 0.0


def test_positive_values_are_foreground():
    labels = np.array([[[0, 1, 2, 255, -3, 0]]], dtype=np.int16)
    binary = labels > 0
    assert segmentation_metrics(labels, binary) == segmentation_metrics(binary, binary)
    assert segmentation_metrics(labels, binary)["pred_voxels"] == 3


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(InvalidVolumeError, match="shape"):
        segmentation_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0)])
def test_bad_spacing_is_rejected(spacing):
    with pytest.raises(InvalidVolumeError, match="spacing"):
        segmentation_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), spacing=spacing)


def test_surface_matches_monai_mask_edges():
    pred, truth = random_masks(7, (17, 20, 23), smooth=True)
    monai_pred_edges, monai_truth_edges = get_mask_edges(pred, truth, crop=False)
    np.testing.assert_array_equal(surface(pred), monai_pred_edges)
    np.testing.assert_array_equal(surface(truth), monai_truth_edges)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(2, 29), st.integers(2, 29), st.integers(2, 29)),
    spacing=st.tuples(*[st.floats(0.1, 4.0)] * 3),
    smooth=st.booleans(),
)
def test_agrees_with_monai(seed, shape, spacing, smooth):
    pred, truth = random_masks(seed, shape, smooth)
    ours = segmentation_metrics(pred, truth, spacing=spacing)
    theirs = monai_metrics(pred, truth, spacing)
    assert ours["dice"] == pytest.approx(theirs["dice"], abs=1e-6)
    assert ours["iou"] == pytest.approx(theirs["iou"], abs=1e-6)
    # MONAI interpolates the percentile in float32: the position (n - 1) * 0.95 is rounded
    # to float32 (an ulp of ~2e-4 for a few thousand distances), so HD95 can differ by
    # that fraction of the gap between neighbouring distances.
    for key, rel in (("hd95_mm", 2e-4), ("assd_mm", 1e-5)):
        if not math.isfinite(theirs[key]):  # a mask without voxels: undefined, None in JSON
            assert ours[key] is None
        else:
            assert ours[key] == pytest.approx(theirs[key], rel=rel, abs=1e-6)
    assert_json_safe(ours)


def test_agrees_with_monai_on_a_48_cube_with_a_distant_blob():
    pred, truth = random_masks(3, (48, 48, 48), smooth=True)
    pred[40:44, 2:5, 2:4] = True  # a false positive far from the truth
    spacing = (0.45, 0.45, 0.8)
    ours = segmentation_metrics(pred, truth, spacing=spacing)
    theirs = monai_metrics(pred, truth, spacing)
    for key in ("dice", "iou", "hd95_mm", "assd_mm"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5)
