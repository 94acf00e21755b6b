"""Training data mixed from several datasets, each with the truth asked of it."""

import json

import pytest

from vesselzip.cli import main
from vesselzip.dataset_mix import parse_source, write_mixed_dataset
from vesselzip.errors import VesselzipError
from vesselzip.phantoms import write_phantom_dataset


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    crops = write_phantom_dataset(root / "crops", 2, seed=0, shape=(24, 24, 16))
    heads = write_phantom_dataset(root / "heads", 1, seed=5, shape=(24, 24, 16))
    # A label set beside `label`, as whole heads list `vessels`.
    listed = json.loads(heads.read_text())
    for entry in listed["training"]:
        entry["vessels"] = entry["image"]
    heads.write_text(json.dumps(listed))
    return crops, heads


def test_each_source_gives_its_chosen_truth_as_the_label(sources, tmp_path, capsys):
    crops, heads = sources
    out = tmp_path / "mix" / "dataset.json"
    assert main(["mix-datasets", str(out), str(crops), f"{heads}:vessels"]) == 0
    assert "wrote 3 volumes from 2 datasets" in capsys.readouterr().out
    mixed = json.loads(out.read_text())
    assert mixed["numTraining"] == 3
    crop_entries, head_entries = mixed["training"][:2], mixed["training"][2:]
    for entry in crop_entries:
        assert entry["label"].startswith(str(crops.parent)) and "labelsTr" in entry["label"]
    assert head_entries[0]["label"] == head_entries[0]["vessels"] == head_entries[0]["image"]
    assert head_entries[0]["mixed_from"]["truth"] == "vessels"
    for entry in mixed["training"]:  # absolute, and there
        assert all(
            (tmp_path / value).is_file()
            for key, value in entry.items()
            if key in ("image", "label", "vessels")
        )


def test_a_source_without_the_truth_asked_is_refused(sources, tmp_path, capsys):
    crops, _ = sources
    assert main(["mix-datasets", str(tmp_path / "m.json"), f"{crops}:vessels"]) == 2
    assert "has no 'vessels' truth" in capsys.readouterr().err
    assert parse_source("a/b.json:vessels")[1] == "vessels"
    assert parse_source("a/b.json")[1] == "label"
    with pytest.raises(VesselzipError, match="cannot read"):
        write_mixed_dataset([(tmp_path / "missing.json", "label")], tmp_path / "x.json")
