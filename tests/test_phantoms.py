"""The phantom generator: deterministic, typed like a clinical TOF-MRA scan, with a
mask that matches the image, varied across seeds, and written as a MONAI dataset."""

import json

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from vesselzip.cli import main
from vesselzip.errors import VesselzipError
from vesselzip.phantoms import (
    GENERATOR_VERSION,
    Phantom,
    _rasterise,
    make_phantom,
    vessel_mask,
    write_phantom_dataset,
)

SMALL = (64, 64, 48)
TINY = (32, 32, 24)


@pytest.fixture(scope="module")
def small_phantoms() -> list[Phantom]:
    return [make_phantom(seed, SMALL) for seed in range(4)]


def test_same_seed_gives_same_bytes():
    first, second = make_phantom(7, SMALL), make_phantom(7, SMALL)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.mask.tobytes() == second.mask.tobytes()
    assert np.array_equal(first.affine, second.affine)


def test_vessel_mask_redraws_the_mask_from_the_tubes(small_phantoms):
    for phantom in small_phantoms:
        assert phantom.segments.shape[1] == 10
        redrawn = vessel_mask(phantom.segments, phantom.mask.shape, phantom.spacing)
        assert np.array_equal(redrawn, phantom.mask)
        wider = phantom.segments.copy()
        wider[:, 6:8] *= 1.3
        widened = vessel_mask(wider, phantom.mask.shape, phantom.spacing)
        # Wider tubes cover every voxel the narrower ones did, and more.
        assert widened.sum() > phantom.mask.sum()
        assert np.all(widened[phantom.mask == 1] == 1)


def test_types_and_ranges(small_phantoms):
    for phantom in small_phantoms:
        assert phantom.image.shape == SMALL and phantom.mask.shape == SMALL
        assert phantom.image.dtype == np.int16
        assert phantom.mask.dtype == np.uint8
        assert phantom.image.min() >= 0
        assert 150 < phantom.image.max() < 4000  # clinical TOF-MRA magnitudes
        assert set(np.unique(phantom.mask)) == {0, 1}
        assert phantom.affine.dtype == np.float64 and phantom.affine.shape == (4, 4)
        assert np.allclose(np.diag(phantom.affine)[:3], phantom.spacing)
        json.dumps(phantom.style)  # the recorded look is plain JSON


def test_default_spacing_and_drawn_spacing():
    assert make_phantom(0, TINY).spacing == (0.35, 0.35, 0.5)
    drawn = {make_phantom(seed, TINY, spacing=None).spacing for seed in range(4)}
    assert len(drawn) > 1
    for spacing in drawn:
        assert all(0.25 <= s <= 0.8 for s in spacing)


def test_vessels_are_brighter_than_background(small_phantoms):
    for phantom in small_phantoms:
        vessel = phantom.mask.astype(bool)
        assert 0.002 < vessel.mean() < 0.15
        assert phantom.image[vessel].mean() > 1.2 * phantom.image[~vessel].mean()


def test_seeds_differ(small_phantoms):
    images = [p.image for p in small_phantoms]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])
    # Not just different noise: the look itself varies.
    medians = [float(np.median(image)) for image in images]
    assert max(medians) - min(medians) > 20


def test_both_fields_of_view():
    crop = make_phantom(3, SMALL, field_of_view="crop")
    head = make_phantom(3, SMALL, field_of_view="head")
    # Air around a whole head: many near-zero voxels; a crop is mostly tissue.
    assert (head.image < 30).mean() > 0.2
    assert np.median(crop.image) > 50


def test_rejects_bad_arguments():
    with pytest.raises(VesselzipError):
        make_phantom(0, (64, 64))
    with pytest.raises(VesselzipError):
        make_phantom(0, SMALL, field_of_view="torso")
    with pytest.raises(VesselzipError):
        make_phantom(0, SMALL, spacing=(0.3, 0.3, 0.0))


def test_default_shape_smoke():
    phantom = make_phantom(0)
    assert phantom.image.shape == (128, 128, 96)
    assert phantom.mask.any()


def test_mask_is_the_tube_geometry():
    # One straight tube of radius 1 mm along x: a voxel is vessel exactly when its
    # centre is inside the tube (away from a thin shell where rounding decides).
    spacing = np.array([0.35, 0.35, 0.5])
    centre_y, centre_z, radius = 5.1, 4.9, 1.0
    segment = np.array(
        [[-1.0, centre_y, centre_z, 12.0, centre_y, centre_z, radius, radius, 900, 900]]
    )
    fraction, signal = _rasterise(segment, (32, 32, 20), spacing, 0.4 / np.sqrt(12))
    y = np.arange(32)[None, :, None] * spacing[1]
    z = np.arange(20)[None, None, :] * spacing[2]
    distance = np.broadcast_to(np.hypot(y - centre_y, z - centre_z), fraction.shape)
    clear = np.abs(distance - radius) > 0.05
    assert np.array_equal((fraction >= 0.5)[clear], (distance <= radius)[clear])
    assert signal.max() == pytest.approx(900, rel=0.01)


def test_thin_vessels_are_faint_not_thin_and_bright():
    spacing = np.array([0.35, 0.35, 0.35])
    blur = 0.35 / np.sqrt(12)

    def peak(radius):
        segment = np.array([[0.0, 2.8, 2.8, 5.0, 2.8, 2.8, radius, radius, 1.0, 1.0]])
        return _rasterise(segment, (16, 16, 16), spacing, blur)[0].max()

    assert peak(0.05) < 0.2 < peak(0.1) < peak(0.2) < peak(0.5) == pytest.approx(1.0, abs=0.01)


def test_dataset_is_a_monai_datalist(tmp_path):
    path = write_phantom_dataset(tmp_path / "ds", 2, seed=5, shape=TINY)
    dataset = json.loads(path.read_text())
    assert dataset["numTraining"] == 2
    assert dataset["modality"] == {"0": "MRA"}
    assert dataset["labels"] == {"0": "background", "1": "vessel"}
    assert dataset["generator"]["version"] == GENERATOR_VERSION
    assert dataset["generator"]["seeds"] == [5, 6]

    items = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key="training")
    assert len(items) == 2
    for item, seed in zip(items, (5, 6), strict=True):
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.get_data_dtype() == np.int16
        assert label.get_data_dtype() == np.uint8
        assert image.header.get_xyzt_units()[0] == "mm"
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        expected = make_phantom(seed, TINY, spacing=None)
        assert np.array_equal(np.asanyarray(image.dataobj), expected.image)
        assert np.array_equal(np.asanyarray(label.dataobj), expected.mask)
        assert np.allclose(image.affine, expected.affine)


def test_dataset_refuses_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("")
    with pytest.raises(VesselzipError, match="not a directory"):
        write_phantom_dataset(target, 1, shape=TINY)


def test_cli_writes_dataset(tmp_path, capsys):
    outdir = tmp_path / "out"
    status = main(["phantom", str(outdir), "--n", "2", "--seed", "3", "--shape", "32", "32", "24"])
    assert status == 0
    assert sorted(p.name for p in (outdir / "imagesTr").iterdir()) == [
        "phantom_000.nii.gz",
        "phantom_001.nii.gz",
    ]
    assert len(list((outdir / "labelsTr").iterdir())) == 2
    assert "wrote 2 phantoms" in capsys.readouterr().out
    assert json.loads((outdir / "dataset.json").read_text())["generator"]["seeds"] == [3, 4]


def test_cli_reports_a_file_as_outdir(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    assert main(["phantom", str(target), "--n", "1"]) == 2
    assert "not a directory" in capsys.readouterr().err
