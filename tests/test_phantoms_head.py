"""Whole-head phantoms: an anatomical head in air with named arteries, labels the
paper's way (union of named territories), beside every vessel and the territory
map; deterministic, varied, written as a dataset and from the command line."""

import json

import nibabel as nib
import numpy as np
import pytest

from vesselzip.cli import main
from vesselzip.phantoms import (
    FIELDS_OF_VIEW,
    GENERATOR_VERSION,
    TERRITORY_LABELS,
    Phantom,
    make_phantom,
    vessel_mask,
    write_phantom_dataset,
)
from vesselzip.phantoms.arteries import draw_circle_variant

# A small "whole head": 192 x 192 x 96 mm in coarse voxels, fast to draw.
SHAPE = (128, 128, 48)
SPACING = (1.5, 1.5, 2.0)


@pytest.fixture(scope="module")
def heads() -> list[Phantom]:
    return [make_phantom(seed, SHAPE, SPACING) for seed in range(3)]


def test_whole_head_is_chosen_for_a_head_sized_field_of_view(heads):
    assert "whole-head" in FIELDS_OF_VIEW
    assert GENERATOR_VERSION == "4"
    for phantom in heads:
        assert phantom.style["field_of_view"] == "whole-head"
    # Too small in-plane for a head: crop or small head, as before.
    assert make_phantom(0, (64, 64, 48)).style["field_of_view"] in ("crop", "head")


def test_same_seed_same_bytes():
    first = make_phantom(11, SHAPE, SPACING)
    second = make_phantom(11, SHAPE, SPACING)
    for name in ("image", "mask", "vessels", "territories", "segments"):
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes(), name
    assert first.style == second.style
    other = make_phantom(12, SHAPE, SPACING)
    assert not np.array_equal(first.image, other.image)


def test_types_and_label_consistency(heads):
    for phantom in heads:
        assert phantom.image.dtype == np.int16 and phantom.image.shape == SHAPE
        for labels in (phantom.mask, phantom.vessels, phantom.territories):
            assert labels is not None
            assert labels.dtype == np.uint8 and labels.shape == SHAPE
        assert set(np.unique(phantom.mask)) == {0, 1}
        # The default truth is the union of the territories, inside every vessel.
        assert np.array_equal(phantom.mask, (phantom.territories > 0).astype(np.uint8))
        assert np.all(phantom.vessels[phantom.mask == 1] == 1)
        # Cortical branches are vessels but not labelled.
        assert phantom.vessels.sum() > phantom.mask.sum()
        assert set(np.unique(phantom.territories)) - {0} <= set(TERRITORY_LABELS)
        json.dumps(phantom.style)


def test_every_segment_and_the_vessel_mask(heads):
    for phantom in heads:
        assert phantom.segments.shape[1] == 10
        assert phantom.segment_territories.shape == (len(phantom.segments),)
        redrawn = vessel_mask(phantom.segments, SHAPE, phantom.spacing)
        assert np.array_equal(redrawn, phantom.vessels)
        # Labelled and unlabelled segments both exist: named arteries and cortex.
        labelled = phantom.segment_territories > 0
        assert 0 < labelled.sum() < len(labelled)
        # Named arteries are wide, cortical branches reach sub-voxel radii.
        assert phantom.segments[labelled, 6].max() > 2.0
        assert phantom.segments[~labelled, 6].min() < 0.3


def test_major_territories_are_present(heads):
    always = {"left infraclinoid ICA", "right infraclinoid ICA", "left MCA", "right MCA"}
    always |= {"basilar tip", "other posterior circulation"}
    for phantom in heads:
        present = {TERRITORY_LABELS[int(k)] for k in np.unique(phantom.territories) if k}
        assert always <= present, always - present


def test_head_in_air_and_clinical_intensities(heads):
    for phantom in heads:
        image = phantom.image
        corners = np.concatenate(
            [image[:12, :12].ravel(), image[-12:, :12].ravel(), image[:12, -12:].ravel()]
        )
        assert corners.mean() < 20 and corners.std() < 10  # air: Rician noise only
        tissue = image[image > 40]
        assert 0.25 < (image > 40).mean() < 0.85  # a head, with air around it
        assert 60 < np.median(tissue) < 160  # head tissue ~100
        vessels = phantom.mask == 1
        assert np.median(image[vessels]) > 2 * np.median(tissue)
        assert 400 < image.max() < 3000


def test_territories_sit_where_the_anatomy_says():
    phantom = make_phantom(5, (160, 160, 64), (1.2, 1.2, 1.5))
    x = np.arange(160) * 1.2
    centre = {}
    for number, name in TERRITORY_LABELS.items():
        voxels = np.argwhere(phantom.territories == number)
        if len(voxels):
            centre[name] = voxels.mean(axis=0) * np.array(phantom.spacing)
    midline = x.mean()
    # Left is -x in RAS: left classes lie on the low-x side of the head.
    assert centre["left MCA"][0] < midline < centre["right MCA"][0]
    assert centre["left infraclinoid ICA"][0] < midline < centre["right infraclinoid ICA"][0]
    # Carotids rise from below the Circle of Willis; the basilar tip sits behind it.
    assert centre["left infraclinoid ICA"][2] < centre["left MCA"][2]
    assert centre["basilar tip"][1] < centre["left MCA"][1] + 10
    # The Circle of Willis is in the lower part of the slab.
    assert centre["basilar tip"][2] < 0.5 * 64 * 1.5


def test_circle_of_willis_variants_at_plausible_frequencies():
    rng = np.random.default_rng(0)
    variants = [draw_circle_variant(rng) for _ in range(2000)]
    complete = np.mean([v["complete"] for v in variants])
    assert 0.2 <= complete <= 0.5
    pcoms = [v["pcom"] for v in variants]
    fetal = np.mean([("fetal" in p.values()) for p in pcoms])
    weak = np.mean([any(s in ("absent", "hypoplastic") for s in p.values()) for p in pcoms])
    assert 0.1 <= fetal <= 0.3
    assert 0.3 <= weak <= 0.6
    assert (
        0.03
        <= np.mean([v["a1"] != {"left": "normal", "right": "normal"} for v in variants])
        <= 0.12
    )


def test_variants_change_the_image():
    summaries = {}
    for seed in range(10):
        phantom = make_phantom(seed, (64, 64, 24), (3.0, 3.0, 4.0))
        variant = phantom.style["circle_of_willis"]
        summaries[seed] = variant["summary"]
        names = {line for line in phantom.style["circle_of_willis"]["pcom"].values()}
        assert names <= {"normal", "hypoplastic", "absent", "fetal"}
    assert "complete" in summaries.values()
    assert len(set(summaries.values())) >= 3


def test_missing_pcom_has_no_pcom_label():
    rng_seeds = [
        seed
        for seed in range(40)
        if draw_circle_variant(_variant_rng(seed))["pcom"]["left"] == "absent"
    ]
    assert rng_seeds, "no seed with an absent left PCom in 40"
    phantom = make_phantom(rng_seeds[0], SHAPE, SPACING)
    assert phantom.style["circle_of_willis"]["pcom"]["left"] == "absent"
    left_pcom = [k for k, v in TERRITORY_LABELS.items() if v == "left PCom"][0]
    assert not np.any(phantom.segment_territories == left_pcom)
    assert not np.any(phantom.territories == left_pcom)


def _variant_rng(seed):
    """The generator's random stream up to the Circle of Willis draw (style and
    anatomy come first)."""
    from vesselzip.phantoms.head import draw_anatomy
    from vesselzip.phantoms.whole_head import draw_style

    rng = np.random.default_rng(seed)
    draw_style(rng)
    draw_anatomy(rng)
    return rng


def test_any_spacing_and_drawn_clinical_spacing():
    drawn = make_phantom(3, (48, 48, 24), None, field_of_view="whole-head")
    sx, sy, sz = drawn.spacing
    assert 0.35 <= sx == sy <= 0.5 and 0.5 <= sz <= 0.8
    # A 20 mm field of view of a whole head still works (a piece of the head).
    assert drawn.image.shape == (48, 48, 24)


def test_dataset_writes_territories_and_vessels(tmp_path):
    path = write_phantom_dataset(tmp_path / "ds", 2, seed=4, shape=SHAPE, spacing=SPACING)
    dataset = json.loads(path.read_text())
    sets = dataset["label_sets"]
    assert sets["label"]["default"] is True
    assert sets["territories"]["classes"]["13"] == "other posterior circulation"
    assert set(sets) == {"label", "territories", "vessels"}
    for entry, seed in zip(dataset["training"], (4, 5), strict=True):
        assert entry["field_of_view"] == "whole-head"
        expected = make_phantom(seed, SHAPE, SPACING)
        for key, array in (
            ("image", expected.image),
            ("label", expected.mask),
            ("territories", expected.territories),
            ("vessels", expected.vessels),
        ):
            loaded = nib.load(path.parent / entry[key])
            assert np.array_equal(np.asanyarray(loaded.dataobj), array), key
            assert np.allclose(loaded.affine, expected.affine)
        assert entry["circle_of_willis"] == expected.style["circle_of_willis"]["summary"]


def test_crop_datasets_have_no_territories(tmp_path):
    path = write_phantom_dataset(tmp_path / "crops", 1, shape=(32, 32, 24))
    entry = json.loads(path.read_text())["training"][0]
    assert "territories" not in entry and "vessels" not in entry
    assert not (tmp_path / "crops" / "territoriesTr").exists()


def test_cli_field_of_view_option(tmp_path, capsys):
    outdir = tmp_path / "heads"
    argv = ["phantom", str(outdir), "--n", "1", "--seed", "2", "--shape", "96", "96", "32"]
    argv += ["--spacing", "2.0", "2.0", "3.0", "--field-of-view", "whole-head"]
    assert main(argv) == 0
    assert "wrote 1 phantoms" in capsys.readouterr().out
    dataset = json.loads((outdir / "dataset.json").read_text())
    assert dataset["training"][0]["field_of_view"] == "whole-head"
    assert dataset["generator"]["field_of_view"] == "whole-head"
    for folder in ("imagesTr", "labelsTr", "territoriesTr", "vesselsTr"):
        assert (outdir / folder / "phantom_000.nii.gz").is_file()

    crops = tmp_path / "crops"
    argv = ["phantom", str(crops), "--n", "1", "--shape", "32", "32", "24"]
    assert main([*argv, "--field-of-view", "crop"]) == 0
    assert (
        json.loads((crops / "dataset.json").read_text())["training"][0]["field_of_view"] == "crop"
    )
    with pytest.raises(SystemExit):
        main([*argv, "--field-of-view", "torso"])
