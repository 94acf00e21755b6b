"""Training crops cut from a dataset: the right voxels, at the right place in the
world, every label set cut alike, reproducible, and clear errors."""

import json

import nibabel as nib
import numpy as np
import pytest

from vesselzip.cli import main
from vesselzip.dataset_crops import COW_TERRITORIES, cow_window, crop_offsets, write_crop_dataset
from vesselzip.errors import VesselzipError
from vesselzip.phantoms import write_phantom_dataset
from vesselzip.phantoms.arteries import TERRITORY_LABELS


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("source")
    dataset = write_phantom_dataset(folder, 2, seed=3, shape=(48, 40, 32))
    # A second label set, as whole-head datasets list them beside `label`.
    entries = json.loads(dataset.read_text())
    for entry in entries["training"]:
        label = nib.load(folder / entry["label"])
        extra = (np.asarray(label.dataobj) * 7).astype(np.uint8)
        path = f"./otherTr/{entry['label'].rsplit('/', 1)[1]}"
        (folder / "otherTr").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(extra, label.affine, label.header), folder / path)
        entry["other"] = path
    dataset.write_text(json.dumps(entries))
    return dataset


def test_crops_hold_the_source_voxels_at_the_same_world_position(source, tmp_path):
    target = write_crop_dataset(source, tmp_path, size=(20, 16, 12), per_volume=3, seed=1)
    dataset = json.loads(target.read_text())
    assert dataset["numTraining"] == 6 == len(dataset["training"])
    for entry in dataset["training"]:
        offset = np.array(entry["offset"])
        original = nib.load(source.parent / entry["source"])
        crop = nib.load(tmp_path / entry["image"])
        assert crop.shape == (20, 16, 12)
        assert crop.get_data_dtype() == original.get_data_dtype()
        window = tuple(slice(o, o + s) for o, s in zip(offset, crop.shape, strict=True))
        assert np.array_equal(np.asarray(crop.dataobj), np.asarray(original.dataobj)[window])
        # Voxel (0, 0, 0) of the crop is voxel `offset` of the source, in mm.
        assert np.allclose(crop.affine[:3, 3], (original.affine @ np.append(offset, 1))[:3])
        assert np.allclose(crop.affine[:3, :3], original.affine[:3, :3])
        for key, folder in (("label", "labelsTr"), ("other", "otherTr")):
            assert entry[key].startswith(f"./{folder}/")
            cut = np.asarray(nib.load(tmp_path / entry[key]).dataobj)
            whole = np.asarray(nib.load(source.parent / original_entry(source, entry)[key]).dataobj)
            assert np.array_equal(cut, whole[window])
        assert entry["seed"] in (3, 4)


def original_entry(source, crop_entry):
    for entry in json.loads(source.read_text())["training"]:
        if entry["image"] == crop_entry["source"]:
            return entry
    raise AssertionError(crop_entry["source"])


def test_same_arguments_same_crops_other_seed_other_crops(source, tmp_path):
    first = write_crop_dataset(source, tmp_path / "a", size=(20, 16, 12), per_volume=4, seed=5)
    again = write_crop_dataset(source, tmp_path / "b", size=(20, 16, 12), per_volume=4, seed=5)
    other = write_crop_dataset(source, tmp_path / "c", size=(20, 16, 12), per_volume=4, seed=6)

    def offsets(path):
        return [entry["offset"] for entry in json.loads(path.read_text())["training"]]

    assert offsets(first) == offsets(again)
    assert offsets(first) != offsets(other)


def test_crops_on_label_all_hold_label():
    rng = np.random.default_rng(0)
    label = np.zeros((60, 60, 40), dtype=bool)
    label[50:53, 5:8, 30:33] = True
    for origin in crop_offsets(rng, label, (16, 16, 16), 20, on_label=1.0):
        window = tuple(slice(o, o + 16) for o in origin)
        assert label[window].any()
    # With no labelled voxel at all, crops fall anywhere instead of failing.
    assert len(crop_offsets(rng, np.zeros_like(label), (16, 16, 16), 5, on_label=1.0)) == 5


def test_a_crop_larger_than_the_volume_is_refused(source, tmp_path):
    with pytest.raises(VesselzipError, match="larger than the volume"):
        write_crop_dataset(source, tmp_path, size=(64, 16, 12), per_volume=1)


def test_cli_writes_crops_and_reports_errors(source, tmp_path, capsys):
    assert (
        main(
            [
                "crop-dataset",
                str(source),
                str(tmp_path / "out"),
                "--size",
                "20",
                "16",
                "12",
                "--per-volume",
                "2",
            ]
        )
        == 0
    )
    assert "wrote 4 crops (20x16x12) from 2 volumes" in capsys.readouterr().out
    assert main(["crop-dataset", str(tmp_path / "missing.json"), str(tmp_path / "x")]) == 2
    assert "error" in capsys.readouterr().err


def test_a_circle_of_willis_crop_holds_the_whole_circle(tmp_path):
    heads = write_phantom_dataset(
        tmp_path / "heads", 1, seed=3001, shape=(256, 256, 64), spacing=(0.5, 0.5, 0.8)
    )
    entry = json.loads(heads.read_text())["training"][0]
    territories = np.asarray(nib.load(heads.parent / entry["territories"]).dataobj)
    assert main(["crop-dataset", str(heads), str(tmp_path / "cow"), "--cow", "5"]) == 0
    crops = json.loads((tmp_path / "cow" / "dataset.json").read_text())["training"]
    assert len(crops) == 1
    crop = nib.load(tmp_path / "cow" / crops[0]["territories"])
    cut = np.asarray(crop.dataobj)
    circle = [n for n, name in TERRITORY_LABELS.items() if name in COW_TERRITORIES]
    # Every voxel of the circle's own arteries is inside, with its margin of 5 mm ...
    assert np.isin(cut, circle).sum() == np.isin(territories, circle).sum() > 0
    window = cow_window(territories, crop.header.get_zooms(), 5.0)
    assert cut.shape == tuple(w.stop - w.start for w in window)
    # ... and the crop is the circle's region, as TopCoW's are (about 40-50 mm across),
    # not the head (128 mm across here).
    extent = np.array(cut.shape) * np.array(crop.header.get_zooms()[:3])
    assert np.all(extent[:2] < 80) and np.all(extent > 15), extent
    assert np.array_equal(
        np.asarray(nib.load(tmp_path / "cow" / crops[0]["label"]).dataobj) > 0, cut > 0
    )


def test_a_circle_of_willis_crop_needs_territories(source, tmp_path):
    with pytest.raises(VesselzipError, match="no territories"):
        write_crop_dataset(source, tmp_path, cow_margin_mm=5.0)
    with pytest.raises(VesselzipError, match="no Circle of Willis artery"):
        cow_window(np.zeros((8, 8, 8), np.uint8), (1.0, 1.0, 1.0), 5.0)
