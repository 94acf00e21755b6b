"""Phantoms rendered around a given vessel mask: on the mask's own grid (oblique and
flipped affines kept), labelled with the mask, TOF-like around it (bright vessels
fading away from the inflow, soft borders, noise), deterministic, TopCoW classes
mapped to the named territories, written as a dataset, bad masks refused in one
line. The masks are drawn here: small tubes on small grids."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from vesselzip.cli import main
from vesselzip.errors import InvalidVolumeError
from vesselzip.phantoms import (
    TERRITORY_LABELS,
    TOPCOW_TERRITORIES,
    read_real_mask,
    render_around_mask,
    write_geometry_dataset,
)
from vesselzip.phantoms.mask_edges import occupancy
from vesselzip.phantoms.mask_paths import inflow_paths, vessel_graph, vessel_voxels

TERRITORY = {name: number for number, name in TERRITORY_LABELS.items()}
SHAPE = (64, 64, 32)


def rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    ax, az = np.radians(degrees_x), np.radians(degrees_z)
    about_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    about_z = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return about_z @ about_x


def oblique_affine() -> np.ndarray:
    """Voxel axes towards left, anterior and *inferior* (index 0 is the top slice),
    tilted 12 and 20 degrees: the slab axis must be found, not assumed."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(12.0, 20.0) @ np.diag([-0.5, 0.5, -1.0])
    affine[:3, 3] = [40.0, -20.0, 30.0]
    return affine


def tube(shape, start, end, radius) -> np.ndarray:
    """Voxels within `radius` (voxels) of the segment start-end (voxel indices)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    start, end = np.asarray(start, float), np.asarray(end, float)
    direction = end - start
    t = np.clip(((grid - start) @ direction) / (direction @ direction), 0.0, 1.0)
    return np.linalg.norm(grid - start - t[..., None] * direction, axis=-1) <= radius


#: An arch: up from the inferior face (index 31: this affine's axis 2 points
#: down), across, and down again to 7 slices above the face.
ARCH = [((12, 30, 31), (12, 30, 6)), ((12, 30, 6), (30, 30, 6)), ((30, 30, 6), (30, 30, 24))]


def tube_mask() -> np.ndarray:
    """A wide arch, an oblique tube, a thin one."""
    arch = np.any([tube(SHAPE, start, end, 2.6) for start, end in ARCH], axis=0)
    return (
        arch
        | tube(SHAPE, (44, 8, 3), (50, 56, 28), 1.6)
        | tube(SHAPE, (4, 50, 12), (60, 50, 12), 0.9)
    )


def topcow_mask() -> np.ndarray:
    """A cartoon Circle of Willis in TopCoW classes: basilar, both ICAs, ACom, a
    third A2 and the left MCA."""
    shape = (64, 64, 24)
    classes = np.zeros(shape, dtype=np.uint8)
    for number, start, end, radius in (
        (1, (32, 20, 0), (32, 20, 18), 2.0),  # BA, rising
        (4, (46, 40, 0), (46, 40, 14), 2.0),  # R-ICA
        (6, (18, 40, 0), (18, 40, 14), 2.0),  # L-ICA
        (10, (24, 48, 16), (40, 48, 16), 1.2),  # Acom
        (15, (32, 52, 16), (32, 58, 22), 1.2),  # 3rd A2
        (7, (6, 30, 16), (16, 36, 16), 1.5),  # L-MCA
    ):
        classes[tube(shape, start, end, radius) & (classes == 0)] = number
    return classes


def save(path, data, affine, *, qform_code=0, sform_code=2):
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    nib.save(image, path)
    return path


@pytest.fixture(scope="module")
def tube_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("masks") / "tubes.nii.gz"
    # float64 {0, 1}, as VesselVerse's IXI masks are stored
    return save(path, tube_mask().astype(np.float64), oblique_affine())


@pytest.fixture(scope="module")
def rendered(tube_file):
    mask = read_real_mask(tube_file)
    return mask, render_around_mask(mask, 3)


def world_height(affine, indices) -> np.ndarray:
    return indices @ affine[2, :3] + affine[2, 3]


def test_rendered_on_the_masks_grid_and_labelled_with_it(rendered, tube_file):
    mask, phantom = rendered
    assert mask.kind == "binary"
    assert phantom.image.shape == SHAPE and phantom.image.dtype == np.int16
    assert np.array_equal(phantom.affine, nib.load(tube_file).affine)
    assert np.array_equal(phantom.mask, tube_mask().astype(np.uint8))
    assert phantom.territories is None
    assert phantom.style["field_of_view"] == "crop"
    assert phantom.style["orientation"] == "".join(nib.aff2axcodes(oblique_affine()))


def test_vessels_are_brighter_than_the_tissue_around_them(rendered):
    _, phantom = rendered
    image, vessels = phantom.image.astype(float), phantom.mask > 0
    near = np.zeros_like(vessels)
    for axis in range(3):
        for shift in (-3, 3):
            near |= np.roll(vessels, shift, axis=axis)
    around = near & ~vessels
    assert image[vessels].mean() > 2.0 * image[around].mean()


def test_signal_fades_with_the_path_from_the_inflow(tube_file):
    """Blood enters the arch through the inferior face and leaves it down the other
    limb: at the same heights (the same place in the slab, the same coil) the
    descending limb has come further, and is darker, on every seed tried."""
    mask = read_real_mask(tube_file)
    rising = tube(SHAPE, (12, 30, 12), (12, 30, 22), 1.0)
    falling = tube(SHAPE, (30, 30, 12), (30, 30, 22), 1.0)
    for seed in range(4):
        image = render_around_mask(mask, seed).image.astype(float)
        assert image[falling].mean() < image[rising].mean(), seed


def test_path_runs_along_the_vessels_from_the_inferior_face():
    vessels = np.zeros((16, 16, 40), dtype=bool)
    vessels[8, 8, :30] = True  # enters through the inferior face
    vessels[3, 3, 20:35] = True  # a piece cut off from it, starting 20 mm up
    spacing = np.array([1.0, 1.0, 1.0])
    flat, coords = vessel_voxels(vessels)
    path = inflow_paths(coords, vessel_graph(flat, coords, vessels.shape, spacing), spacing)
    entering = coords[:, 0] == 8
    assert np.allclose(path[entering], coords[entering, 2], atol=0.01)
    # The cut-off piece starts at its height, then adds its own length.
    assert np.allclose(path[~entering], coords[~entering, 2], atol=0.01)
    bend = np.zeros((16, 16, 20), dtype=bool)
    bend[2, 2, :10] = bend[2, 2:12, 9] = bend[2, 11, 9:12] = True  # up, across, up
    flat, coords = vessel_voxels(bend)
    path = inflow_paths(coords, vessel_graph(flat, coords, bend.shape, spacing), spacing)
    top = np.flatnonzero((coords[:, 1] == 11) & (coords[:, 2] == 11))
    # 11 up and 9 across along the voxels, two corners cut diagonally: not the 14.2
    # of a straight line, nor the height of 11.
    assert path[top] == pytest.approx(9 + 7 + 2 * np.sqrt(2), abs=0.01)


def test_borders_are_partial_volumes():
    vessels = tube(SHAPE, (32, 10, 16), (32, 54, 16), 3.2)
    spacing = np.array([0.5, 0.5, 1.0])
    flat, coords = vessel_voxels(vessels)
    fraction, signal = occupancy(vessels, flat, coords, spacing, np.full(len(flat), 1000.0))
    assert np.array_equal(fraction >= 0.5, vessels)  # the generator's mask rule
    border = vessels & ~np.all([np.roll(vessels, s, a) for a in range(3) for s in (-1, 1)], 0)
    outer = ~vessels & np.any([np.roll(vessels, s, a) for a in range(3) for s in (-1, 1)], 0)
    assert 0.5 < fraction[border].min() and fraction[border].max() < 0.99
    assert 0.01 < fraction[outer].max() and fraction[outer].min() > 0.0
    deep = ndimage.binary_erosion(vessels, np.ones((3, 3, 3)), iterations=2)
    assert fraction[deep].min() > 0.99
    assert np.allclose(signal, 1000.0 * fraction)


def test_border_voxels_are_intermediate_in_the_image(rendered):
    _, phantom = rendered
    image, vessels = phantom.image.astype(float), phantom.mask > 0
    neighbours = [np.roll(vessels, s, a) for a in range(3) for s in (-1, 1)]
    inner = vessels & np.all(neighbours, axis=0)
    outer = ~vessels & np.any(neighbours, axis=0)
    far = ~vessels
    for axis in range(3):
        for shift in range(-4, 5):
            far &= ~np.roll(vessels, shift, axis=axis)
    assert image[far].mean() < image[outer].mean() < image[inner].mean()


def test_noise_in_tissue(rendered):
    _, phantom = rendered
    image, vessels = phantom.image.astype(float), phantom.mask > 0
    far = ~vessels
    for axis in range(3):
        for shift in range(-4, 5):
            far &= ~np.roll(vessels, shift, axis=axis)
    steps = np.diff(image, axis=2)[far[:, :, 1:] & far[:, :, :-1]]
    assert steps.std() > 1.0  # Rician noise and texture, not a smooth background


def test_same_seed_same_volume(tube_file, rendered):
    mask, first = rendered
    again = render_around_mask(read_real_mask(tube_file), 3)
    assert again.image.tobytes() == first.image.tobytes()
    assert again.style == first.style
    assert not np.array_equal(render_around_mask(mask, 4).image, first.image)


def test_whole_head_grid_gets_a_head_in_air(tmp_path):
    """A 128 x 128 mm field of view is a whole head: scalp and air around the brain."""
    affine = np.diag([-2.0, -2.0, 2.5, 1.0])  # LPS
    path = save(tmp_path / "head.nii.gz", tube_mask().astype(np.uint16), affine, qform_code=1)
    phantom = render_around_mask(read_real_mask(path), 0)
    assert phantom.style["field_of_view"] == "whole-head"
    corners = phantom.image[[0, 0, -1, -1], [0, -1, 0, -1], :].astype(float)
    assert 0 < corners.mean() < 40 and corners.std() > 0.5  # air: Rician noise only


def test_topcow_classes_become_named_territories(tmp_path):
    classes = topcow_mask()
    affine = np.diag([-0.4, -0.4, 0.8, 1.0])  # LPS, like TopCoW
    path = save(tmp_path / "cow.nii.gz", classes, affine)
    mask = read_real_mask(path)
    assert mask.kind == "topcow"
    phantom = render_around_mask(mask, 1)
    territories = phantom.territories
    assert territories is not None
    # The named-artery truth of a TopCoW mask is all of its labelled voxels.
    assert np.array_equal(territories > 0, classes > 0)
    assert np.array_equal(phantom.mask, (classes > 0).astype(np.uint8))
    for topcow in (4, 6, 7, 10, 15):
        assert set(np.unique(territories[classes == topcow])) == {TOPCOW_TERRITORIES[topcow]}
    assert TOPCOW_TERRITORIES[4] == TERRITORY["right supraclinoid ICA"]
    assert TOPCOW_TERRITORIES[15] == TERRITORY["ACom"]
    # The basilar: its top 6 mm are the tip, the rest "other posterior circulation".
    basilar = np.argwhere(classes == 1)
    height = world_height(affine, basilar)
    named = territories[tuple(basilar.T)]
    assert set(named[height >= height.max() - 6.0]) == {TERRITORY["basilar tip"]}
    assert set(named[height < height.max() - 6.5]) == {TERRITORY["other posterior circulation"]}
    # Read as binary, the same file has no named-artery truth.
    assert read_real_mask(path, "binary").kind == "binary"


def test_dataset_layout(tmp_path, tube_file):
    cow = save(tmp_path / "cow.nii.gz", topcow_mask(), np.diag([-0.4, -0.4, 0.8, 1.0]))
    outdir = tmp_path / "ds"
    path = write_geometry_dataset([tube_file, cow], outdir, 2, seed=10)
    dataset = json.loads(path.read_text())
    assert dataset["numTraining"] == 4 and dataset["generator"]["seeds"] == [10, 11, 12, 13]
    entries = {entry["image"]: entry for entry in dataset["training"]}
    assert sorted(entries) == [
        "./imagesTr/cow_000.nii.gz",
        "./imagesTr/cow_001.nii.gz",
        "./imagesTr/tubes_000.nii.gz",
        "./imagesTr/tubes_001.nii.gz",
    ]
    tubes, cows = entries["./imagesTr/tubes_001.nii.gz"], entries["./imagesTr/cow_000.nii.gz"]
    assert tubes["geometry"]["named_arteries"] is False and "territories" not in tubes
    assert cows["geometry"]["named_arteries"] is True and cows["geometry"]["classes"] == "topcow"
    source = nib.load(tube_file)
    for key in ("image", "label"):
        written = nib.load(outdir / tubes[key])
        assert written.shape == source.shape
        assert np.array_equal(written.affine, source.affine)
        assert np.array_equal(written.header.get_sform(), source.header.get_sform())
        assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 0
    label = np.asanyarray(nib.load(outdir / tubes["label"]).dataobj)
    assert label.dtype == np.uint8 and np.array_equal(label, tube_mask())
    image = np.asanyarray(nib.load(outdir / tubes["image"]).dataobj)
    assert np.array_equal(image, render_around_mask(read_real_mask(tube_file), 11).image)
    territories = np.asanyarray(nib.load(outdir / cows["territories"]).dataobj)
    assert np.array_equal(territories > 0, topcow_mask() > 0)


def test_cli_renders_around_a_mask(tmp_path, tube_file, capsys):
    outdir = tmp_path / "out"
    assert main(["phantom", "--geometry", str(tube_file), "--n", "2", str(outdir)]) == 0
    assert "wrote 2 volumes around 1 mask" in capsys.readouterr().out
    assert sorted(p.name for p in (outdir / "imagesTr").iterdir()) == [
        "tubes_000.nii.gz",
        "tubes_001.nii.gz",
    ]
    argv = ["phantom", "--geometry", str(tube_file), str(outdir), "--shape", "8", "8", "8"]
    assert main(argv) == 2
    assert "--shape cannot be used with --geometry" in capsys.readouterr().err


def bad_masks(folder):
    """(file, what the one-line error says) for masks that cannot be rendered around."""
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    text = folder / "notes.nii.gz"
    text.write_text("not a volume\n")
    return [
        (save(folder / "4d.nii.gz", np.zeros((16, 16, 16, 2), np.uint8), affine), "3D volume"),
        (save(folder / "empty.nii.gz", np.zeros((16, 0, 16), np.uint8), affine), "empty"),
        (save(folder / "zeros.nii.gz", np.zeros((16, 16, 16), np.uint8), affine), "no vessel"),
        (save(folder / "soft.nii.gz", np.full((16, 16, 16), 0.4), affine), "non-integer"),
        (save(folder / "flat.nii.gz", np.ones((16, 16, 2), np.uint8), affine), "too small"),
        (save(folder / "brain.nii.gz", np.ones((16, 16, 16), np.uint8), affine), "few percent"),
        (text, "not a NIfTI"),
        (folder / "missing.nii.gz", "no such file"),
    ]


def test_bad_masks_give_one_line_errors(tmp_path, capsys):
    for path, message in bad_masks(tmp_path):
        status = main(["phantom", "--geometry", str(path), str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert status == 2, path.name
        assert message in err and "Traceback" not in err, (path.name, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "dataset.json").exists()
    with pytest.raises(InvalidVolumeError, match="not TopCoW classes"):
        classes = np.zeros((16, 16, 16), np.uint8)
        classes[4:8, 4:8, 4:8] = 13
        read_real_mask(save(tmp_path / "other.nii.gz", classes, np.eye(4)), "topcow")
