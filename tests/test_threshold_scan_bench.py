"""The threshold-scan bench: every setting's numbers from one network pass per volume
equal those of the segmenter run with that setting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.phantoms import write_phantom_dataset
from vesselzip.volumes import read_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import threshold_scan  # noqa: E402


def test_scan_rows_equal_the_segmenter_at_each_setting(tmp_path, capsys):
    dataset = write_phantom_dataset(tmp_path / "val", 2, seed=7, shape=(48, 48, 32))
    real = tmp_path / "real.nii.gz"
    first = json.loads(dataset.read_text())["training"][0]["image"]
    image = nib.load(dataset.parent / first)
    nib.save(image, real)
    args = [
        str(dataset),
        "--model",
        "mvn-vessels",
        "--sigma",
        "0",
        "1",
        "--thresholds",
        "0.3",
        "0.6",
    ]
    args += ["--real", str(real), "--codec", "zfp:tolerance=200", "--json"]
    assert threshold_scan.main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["sigma"], r["threshold"]) for r in rows] == [(0, 0.3), (0, 0.6), (1, 0.3), (1, 0.6)]

    segmenter = load_segmenter("mvn-vessels")
    items = json.loads(dataset.read_text())["training"]
    volume = read_volume(real)
    decoded = decode_volume(encode_volume(volume, get_codec(parse_codec_spec("zfp:tolerance=200"))))
    for row in rows:
        at = segmenter.with_config(
            probability_sigma=row["sigma"], vessel_threshold=row["threshold"]
        )
        dice = [
            segmentation_metrics(
                at.segment(read_volume(dataset.parent / item["image"])),
                read_volume(dataset.parent / item["label"]).data > 0,
            )["dice"]
            for item in items
        ]
        assert row["dice"] == np.mean(dice) and row["min_dice"] == min(dice)
        original = at.segment(volume)
        assert row["real1 marked"] == original.mean()
        agreement = segmentation_metrics(at.segment(decoded), original)["dice"]
        assert row["real1 zfp:tolerance=200"] == agreement
    # The settings really differ: smoothing and threshold change the masks.
    assert len({round(r["real1 marked"], 6) for r in rows}) > 1
