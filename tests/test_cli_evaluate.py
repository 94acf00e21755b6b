"""`vesselzip evaluate` on real NIfTI files."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from vesselzip.cli import main
from vesselzip.metrics.segmentation import segmentation_metrics

SPACING = (0.5, 0.5, 2.0)


def write_mask(path, data, spacing=SPACING, offset=(0.0, 0.0, 0.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = offset
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return str(path)


@pytest.fixture
def masks(tmp_path):
    truth = np.zeros((16, 17, 9), dtype=np.uint8)
    truth[4:12, 5:11, 2:7] = 1
    pred = np.zeros_like(truth)
    pred[5:12, 5:13, 3:7] = 1
    pred[0, 0, 0] = 1  # a stray false positive far away
    return (
        pred,
        truth,
        write_mask(tmp_path / "pred.nii.gz", pred),
        write_mask(tmp_path / "truth.nii.gz", truth),
    )


def test_json_output_matches_the_library(masks, capsys):
    pred, truth, pred_path, truth_path = masks
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = segmentation_metrics(pred, truth, spacing=SPACING)
    assert printed == pytest.approx(expected)
    # Distances are in mm from the header spacing, not in voxels.
    assert printed["voxel_volume_mm3"] == pytest.approx(0.5)
    assert printed["assd_mm"] != pytest.approx(segmentation_metrics(pred, truth)["assd_mm"])


def test_plain_output_lists_every_metric(masks, capsys):
    _, _, pred_path, truth_path = masks
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path]) == 0
    out = capsys.readouterr().out
    for label in ("Dice", "IoU", "Sensitivity", "Specificity", "Precision"):
        assert label in out
    assert "Volume similarity" in out
    assert "HD95 (mm)" in out
    assert "ASSD (mm)" in out


def test_empty_prediction_prints_undefined(tmp_path, capsys):
    truth = np.zeros((6, 6, 6), dtype=np.uint8)
    truth[2:4, 2:4, 2:4] = 1
    pred_path = write_mask(tmp_path / "pred.nii", np.zeros_like(truth))
    truth_path = write_mask(tmp_path / "truth.nii", truth)
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path]) == 0
    out = capsys.readouterr().out
    assert "undefined" in out
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dice"] == 0.0
    assert printed["hd95_mm"] is None


def test_shape_mismatch_is_an_error(tmp_path, capsys):
    pred_path = write_mask(tmp_path / "pred.nii.gz", np.zeros((6, 6, 6)))
    truth_path = write_mask(tmp_path / "truth.nii.gz", np.zeros((6, 6, 7)))
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path]) == 2
    err = capsys.readouterr().err
    assert "shape" in err
    assert len(err.strip().splitlines()) == 1


def test_affine_mismatch_is_an_error(tmp_path, capsys):
    mask = np.ones((6, 6, 6))
    pred_path = write_mask(tmp_path / "pred.nii.gz", mask, offset=(0.0, 0.0, 1.0))
    truth_path = write_mask(tmp_path / "truth.nii.gz", mask)
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path]) == 2
    assert "affine" in capsys.readouterr().err


def test_tiny_affine_difference_is_accepted(tmp_path):
    mask = np.ones((6, 6, 6))
    pred_path = write_mask(tmp_path / "pred.nii.gz", mask, offset=(0.0, 0.0, 1e-5))
    truth_path = write_mask(tmp_path / "truth.nii.gz", mask)
    assert main(["evaluate", "--pred", pred_path, "--truth", truth_path]) == 0


def test_missing_file_is_an_error(tmp_path, capsys):
    truth_path = write_mask(tmp_path / "truth.nii.gz", np.ones((4, 4, 4)))
    missing = str(tmp_path / "nope.nii.gz")
    assert main(["evaluate", "--pred", missing, "--truth", truth_path]) == 2
    assert "nope.nii.gz" in capsys.readouterr().err


def test_runs_as_a_command(masks):
    pred, truth, pred_path, truth_path = masks
    result = subprocess.run(
        [sys.executable, "-m", "vesselzip", "evaluate", "--pred", pred_path]
        + ["--truth", truth_path, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(result.stdout)
    assert printed["dice"] == pytest.approx(segmentation_metrics(pred, truth)["dice"])
