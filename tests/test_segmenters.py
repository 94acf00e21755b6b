"""Segmenters by name: registry, caching, errors, the Frangi baseline, checkpoints,
the bundled model and the `vesselzip segment` command."""

import numpy as np
import pytest
import torch

from vesselzip.cli import main
from vesselzip.errors import ModelNotAvailableError
from vesselzip.metrics import connectivity_metrics
from vesselzip.model import MambaVesselNet, available_segmenters, load_segmenter, segment
from vesselzip.model.segmenters import FrangiSegmenter, NetworkSegmenter
from vesselzip.phantoms import make_phantom
from vesselzip.settings import get_settings
from vesselzip.volumes import Volume, read_volume
from vesselzip.weights import BUNDLED_MODELS, bundled_files

TINY_DIMS = (4, 8, 8, 16, 16)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    """A small phantom written as NIfTI (image and truth), read back as Volumes."""
    folder = tmp_path_factory.mktemp("phantom")
    phantom = make_phantom(7, shape=(64, 64, 48))
    import nibabel as nib

    nib.save(nib.Nifti1Image(phantom.image, phantom.affine), folder / "image.nii.gz")
    nib.save(nib.Nifti1Image(phantom.mask, phantom.affine), folder / "mask.nii.gz")
    return folder / "image.nii.gz", folder / "mask.nii.gz"


@pytest.fixture
def no_checkpoint_setting(monkeypatch):
    monkeypatch.delenv("VESSELZIP_CHECKPOINT", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    network = MambaVesselNet(feature_dims=TINY_DIMS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    inference = {"target_spacing": [0.7, 0.7, 0.7], "window": [0, 1000], "roi_size": 32}
    torch.save(
        {
            "model": network.state_dict(),
            "optimizer": {},
            "dice_metric": 0.0,
            "epoch": 0,
            "config": {"inference": inference},
        },
        path,
    )
    return path


def test_the_segmenters_are_listed_with_what_each_is_for(capsys):
    assert available_segmenters() == ["mvn-arteries", "mvn-vessels", "mvn-checkpoint", "frangi"]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == [*available_segmenters(), "mvn-small-heads", "mvn-small"]
    assert "answers: named arteries" in lines[0] and "answers: every vessel" in lines[1]
    assert lines[-1].split()[-1] == "mvn-vessels"  # an earlier name, and of what


def test_earlier_names_load_the_same_models():
    assert load_segmenter("mvn-small", device="cpu") is load_segmenter("mvn-vessels", device="cpu")
    arteries = load_segmenter("mvn-small-heads", device="cpu")
    assert arteries is load_segmenter("mvn-arteries", device="cpu")
    info = arteries.info()
    assert (info.name, info.aliases, info.answers) == (
        "mvn-arteries",
        ["mvn-small-heads"],
        "named arteries",
    )


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ModelNotAvailableError, match="unknown model 'unet'.*frangi"):
        load_segmenter("unet")


def test_checkpoint_model_needs_a_checkpoint(no_checkpoint_setting):
    with pytest.raises(ModelNotAvailableError, match="VESSELZIP_CHECKPOINT"):
        load_segmenter("mvn-checkpoint")


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="not found"):
        load_segmenter("mvn-checkpoint", checkpoint=tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotAvailableError):
        load_segmenter("mvn-checkpoint", checkpoint=junk)
    torch.save({"model": {"weight": torch.zeros(3)}}, tmp_path / "other.pt")
    with pytest.raises(ModelNotAvailableError, match="not a MambaVesselNet"):
        load_segmenter("mvn-checkpoint", checkpoint=tmp_path / "other.pt")


def test_unusable_stored_settings_are_a_clear_error(tmp_path):
    state = MambaVesselNet(feature_dims=TINY_DIMS).state_dict()
    for inference, reason in (
        ({"roi_size": 40}, "multiples of 16, not roi_size 40"),
        ({"vessel_threshold": 2.0}, "vessel threshold must be between 0 and 1"),
    ):
        path = tmp_path / f"bad{len(reason)}.pt"
        torch.save({"model": state, "config": {"inference": inference}}, path)
        with pytest.raises(ModelNotAvailableError, match=reason) as info:
            load_segmenter("mvn-checkpoint", checkpoint=path, device="cpu")
        assert str(path) in str(info.value)


def test_stored_settings_are_read_next_to_numpy_scalars(tmp_path):
    # Training scripts store numpy scalars (e.g. the paper's dice_metric) next to the
    # weights: the file is read once, allowing those, and its settings still apply.
    path = tmp_path / "numpy.pt"
    torch.save(
        {
            "model": MambaVesselNet(feature_dims=TINY_DIMS).state_dict(),
            "dice_metric": np.float64(0.8),
            "config": {"inference": {"roi_size": 32, "target_spacing": None}},
        },
        path,
    )
    segmenter = load_segmenter("mvn-checkpoint", checkpoint=path, device="cpu")
    assert segmenter.config.roi_size == 32 and segmenter.config.target_spacing is None


def test_segmenters_are_loaded_once_per_name_checkpoint_and_device(tiny_checkpoint):
    assert load_segmenter("frangi") is load_segmenter("frangi", device="cpu")
    first = load_segmenter("mvn-checkpoint", checkpoint=tiny_checkpoint, device="cpu")
    assert load_segmenter("mvn-checkpoint", checkpoint=str(tiny_checkpoint), device="cpu") is first


def test_checkpoint_from_the_environment_and_its_stored_config(
    tiny_checkpoint, monkeypatch, phantom_files
):
    monkeypatch.setenv("VESSELZIP_CHECKPOINT", str(tiny_checkpoint))
    get_settings.cache_clear()
    try:
        segmenter = load_segmenter("mvn-checkpoint", device="cpu")
    finally:
        get_settings.cache_clear()
    assert isinstance(segmenter, NetworkSegmenter)
    assert segmenter.network.feature_dims == TINY_DIMS
    assert segmenter.config.roi_size == 32
    assert segmenter.config.target_spacing == (0.7, 0.7, 0.7)
    volume = read_volume(phantom_files[0])
    mask = segmenter.segment(volume)
    assert mask.shape == volume.shape and mask.dtype == np.uint8


def test_frangi_finds_the_vessels_of_a_phantom(phantom_files):
    volume, truth = read_volume(phantom_files[0]), read_volume(phantom_files[1]).data
    fractions = []
    mask = segment(volume, "frangi", progress=fractions.append)
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    assert dice(mask, truth) > 0.5
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_frangi_uses_the_spacing_in_millimetres():
    # The same 1 mm tube sampled at two resolutions across it gives the same answer.
    coarse = np.zeros((40, 40, 40), dtype=np.float32)
    grid = np.indices(coarse.shape)
    coarse[((grid[1] - 20) ** 2 + (grid[2] - 20) ** 2) <= 4] = 800.0
    fine = np.repeat(coarse, 2, axis=2)  # axis 2 sampled twice as finely
    segmenter = FrangiSegmenter()
    masks = []
    for data, z_mm in ((coarse, 0.5), (fine, 0.25)):
        affine = np.diag([0.5, 0.5, z_mm, 1.0])
        masks.append(segmenter.segment(Volume(data, affine, header=None)))
    assert masks[0].sum() > 0
    assert dice(masks[0], masks[1][:, :, ::2]) > 0.9


def test_bundled_model_segments_a_phantom(phantom_files):
    for name in BUNDLED_MODELS:
        assert all(f.is_file() for f in bundled_files(name)), f"{name} ships with the package"
    volume, truth = read_volume(phantom_files[0]), read_volume(phantom_files[1]).data
    # A crop phantom's truth is every vessel: the model that answers that.
    mask = segment(volume, "mvn-vessels", device="cpu")
    assert mask.shape == volume.shape
    assert dice(mask, truth) > 0.7
    # The default answers the named arteries (whole heads and their Circle of Willis:
    # test_heads_model_marks_the_named_arteries_of_a_whole_head).
    default = load_segmenter(None, device="cpu")
    assert default.name == get_settings().default_model == "mvn-arteries"
    assert default.info().answers == "named arteries"


def test_segment_command_writes_a_mask_on_the_input_grid(phantom_files, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(phantom_files[0]), str(out), "--model", "frangi"]) == 0
    written, image = read_volume(out), read_volume(phantom_files[0])
    assert written.shape == image.shape
    np.testing.assert_allclose(written.affine, image.affine)
    assert set(np.unique(written.data)) <= {0, 1}
    assert "frangi" in capsys.readouterr().out


def test_segment_command_reports_a_bad_model_in_one_line(phantom_files, tmp_path, capsys):
    assert main(["segment", str(phantom_files[0]), str(tmp_path / "m.nii.gz"), "--model", "x"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_segment_command_with_flip_averaging(phantom_files, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    command = ["segment", str(phantom_files[0]), str(out), "--flip-averaging"]
    assert main([*command, "--model", "mvn-checkpoint", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert read_volume(out).shape == read_volume(phantom_files[0]).shape
    assert "mvn-checkpoint" in capsys.readouterr().out
    # The cached segmenter itself keeps its own settings.
    cached = load_segmenter("mvn-checkpoint", checkpoint=tiny_checkpoint, device="cpu")
    assert cached.config.flip_averaging is False
    # A filter has nothing to average.
    assert main([*command, "--model", "frangi"]) == 2
    assert "needs a network model" in capsys.readouterr().err


def test_frangi_scales_are_capped_in_voxels_so_tiny_voxels_cannot_stall_a_worker():
    """At 1e-3 and 1e-2 mm every physical scale is hundreds of voxels wide; both are
    filtered at the cap (a quarter of this 32^3 volume), so they give the same
    vesselness, computed in the time of an ordinary volume."""
    from vesselzip.model.baselines import frangi_vesselness

    image = make_phantom(seed=3, shape=(32, 32, 32)).image.astype(np.float32)
    tiny = frangi_vesselness(image, (1e-3,) * 3)
    small = frangi_vesselness(image, (1e-2,) * 3)
    np.testing.assert_allclose(tiny, small, rtol=1e-5, atol=1e-6)
    assert np.any(tiny > 0)


@pytest.mark.parametrize("model", ["mvn-vessels", "mvn-arteries"])
@pytest.mark.parametrize("corner", [(32, 32, 24), (34, 31, 25)], ids=["on-blocks", "off-blocks"])
def test_bundled_models_see_a_crop_the_same_inside_a_larger_field_of_view(model, corner):
    phantom = make_phantom(11, shape=(64, 64, 48), field_of_view="crop")
    rng = np.random.default_rng(0)
    shape = (128, 128, 96)
    air = np.hypot(rng.normal(0, 5, shape), rng.normal(0, 5, shape))
    embedded = np.rint(air).astype(np.int16)
    crop = tuple(slice(c, c + n) for c, n in zip(corner, phantom.image.shape, strict=True))
    embedded[crop] = phantom.image
    segmenter = load_segmenter(model, device="cpu")  # each with its own settings
    alone = segmenter.segment(Volume(phantom.image, phantom.affine, header=None))
    around = segmenter.segment(Volume(embedded, phantom.affine, header=None))
    assert alone.any()
    assert around.sum() == around[crop].sum(), "nothing may be marked in air"
    assert dice(alone, around[crop]) >= 0.97
    if model == "mvn-vessels":  # its truth: every vessel, as the crop's mask
        assert dice(alone, phantom.mask) > 0.6


@pytest.fixture(scope="module")
def small_whole_head():
    """A whole head in a 128 mm field of view at 0.5 mm (a clinical grid, cut short)."""
    return make_phantom(3001, (256, 256, 64), (0.5, 0.5, 0.8))


def test_heads_model_marks_the_named_arteries_of_a_whole_head(small_whole_head):
    head = small_whole_head
    volume = Volume(head.image, head.affine, header=None)
    heads = load_segmenter("mvn-arteries", device="cpu").segment(volume)
    crops = load_segmenter("mvn-vessels", device="cpu").segment(volume)
    # The paper's truth is the named arteries; the crop model marks every vessel.
    assert dice(heads, head.mask) > 0.75
    assert dice(heads, head.mask) > dice(crops, head.mask) + 0.2
    assert dice(heads, head.mask) > dice(heads, head.vessels)
    assert connectivity_metrics(heads)["speck_share"] < 0.05
