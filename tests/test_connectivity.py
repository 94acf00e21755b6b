"""Connectivity of a mask: pieces with 26-connectivity, the share in specks, the share
in the largest piece."""

import json

import numpy as np
import pytest

from vesselzip.metrics import connectivity_metrics


def test_pieces_touching_by_a_corner_are_one():
    mask = np.zeros((6, 6, 6), dtype=np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # corner to corner: one piece in 26-connectivity
    mask[4, 4, 4] = 1
    metrics = connectivity_metrics(mask)
    assert metrics["pieces"] == 2 and metrics["voxels"] == 3
    assert metrics["largest_share"] == pytest.approx(2 / 3)
    assert metrics["speck_share"] == 1.0  # both under 50 voxels


def test_speck_share_counts_voxels_in_small_pieces():
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[2:7, 2:7, 2:8] = True  # 150 voxels
    mask[12:14, 12:14, 12:14] = True  # 8 voxels
    mask[18, 2, 2] = True  # 1 voxel
    metrics = connectivity_metrics(mask)
    assert metrics["pieces"] == 3
    assert metrics["speck_share"] == pytest.approx(9 / 159)
    assert metrics["largest_share"] == pytest.approx(150 / 159)
    assert connectivity_metrics(mask, speck_voxels=5)["speck_share"] == pytest.approx(1 / 159)
    json.dumps(metrics, allow_nan=False)


def test_an_empty_mask_has_no_pieces():
    metrics = connectivity_metrics(np.zeros((4, 4, 4), dtype=np.uint8))
    assert metrics["pieces"] == 0 and metrics["voxels"] == 0
    assert metrics["speck_share"] == 0.0 and metrics["largest_share"] == 0.0
