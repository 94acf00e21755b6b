"""Whole-volume inference: the mask must come back on the input's own grid, voxel for
voxel, whatever the orientation and spacing of the input.

Alignment is checked with an "oracle" network that thresholds the windowed intensity,
so the expected mask is known exactly and no trained weights are needed."""

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from vesselzip.errors import ModelNotAvailableError
from vesselzip.model.foreground import TISSUE_FRACTION, block_means, tissue_levels
from vesselzip.model.inference import (
    InferenceConfig,
    count_windows,
    intensity_window,
    mask_from_logits,
    network_logits,
    predict_mask,
    preprocess,
    ras_grid,
    resolve_device,
)
from vesselzip.model.network import MambaVesselNet
from vesselzip.model.segmenters import NetworkSegmenter
from vesselzip.volumes import Volume

CPU = torch.device("cpu")


class ThresholdNet(torch.nn.Module):
    """Logits that say "vessel" where the windowed intensity exceeds `level`."""

    def __init__(self, level: float = 0.5):
        super().__init__()
        self.level = level

    def forward(self, x):
        return torch.cat([self.level - x, x - self.level], dim=1) * 20.0


class ProbabilityNet(torch.nn.Module):
    """Logits whose vessel probability is the windowed intensity itself."""

    def forward(self, x):
        p = x.clamp(1e-4, 1 - 1e-4)
        return torch.cat([torch.log1p(-p), torch.log(p)], dim=1)


def asymmetric_objects(shape=(40, 36, 24)) -> np.ndarray:
    """Two balls of different size and a thick rod, placed off-centre so that any
    flip or axis swap of the mask would miss them."""
    grid = np.indices(shape).astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    for centre, radius in (((10, 9, 7), 5.0), ((27, 22, 15), 7.0)):
        distance = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
        mask |= distance <= radius**2
    mask |= ((grid[0] - 30) ** 2 + (grid[2] - 6) ** 2 <= 9) & (grid[1] < 14)
    return mask


def reoriented(data: np.ndarray, affine: np.ndarray, codes: str):
    """The same image stored with another axis order and direction (e.g. "PSL")."""
    start = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(codes)))
    new_data = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(new_data), new_affine


def make_volume(data: np.ndarray, affine: np.ndarray) -> Volume:
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header.set_zooms(tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(0))))
    return Volume(data=data, affine=affine, header=header)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_mask_overlays_a_non_ras_anisotropic_input():
    truth_ras = asymmetric_objects()
    spacing = (0.4, 0.45, 0.9)
    affine_ras = np.diag([*spacing, 1.0])
    affine_ras[:3, 3] = (-8.0, 5.0, 12.0)
    image_ras = np.where(truth_ras, 900, 150).astype(np.int16)
    image, affine = reoriented(image_ras, affine_ras, "PSL")
    truth, _ = reoriented(truth_ras.astype(np.uint8), affine_ras, "PSL")
    assert image.shape != image_ras.shape  # really permuted

    config = InferenceConfig(target_spacing=(0.6, 0.6, 0.6), roi_size=32, overlap=0.25)
    segmenter = NetworkSegmenter("oracle", ThresholdNet(), config, "cpu")
    mask = segmenter.segment(make_volume(image, affine))

    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert dice(mask, truth) > 0.9
    # The test can tell a misaligned mask apart: the same mask flipped scores badly.
    assert dice(mask[::-1], truth) < 0.5


def test_without_resampling_the_oracle_is_exact():
    truth = asymmetric_objects((33, 20, 17))
    image = np.where(truth, 700, 100).astype(np.float32)
    # skip_air off: objects on a dark ground would count as tissue in air, and the
    # outer planes they barely reach would be trimmed from the box.
    config = InferenceConfig(
        target_spacing=None, roi_size=16, overlap=0.5, sw_batch_size=3, skip_air=False
    )
    mask = predict_mask(ThresholdNet(), image, np.eye(4), config, CPU)
    np.testing.assert_array_equal(mask, truth.astype(np.uint8))


def test_window_and_nifti_scaling_are_applied():
    truth = asymmetric_objects((24, 24, 16))
    stored = np.where(truth, 350, 50).astype(np.int16)  # times 2 -> 700 vs 100
    config = InferenceConfig(target_spacing=None, window=(0.0, 1000.0), roi_size=16, skip_air=False)
    net = ThresholdNet(level=0.5)
    without = predict_mask(net, stored, np.eye(4), config, CPU)
    with_scaling = predict_mask(net, stored, np.eye(4), config, CPU, scaling=(2.0, 0.0))
    assert without.sum() == 0  # 350 < 500
    np.testing.assert_array_equal(with_scaling, truth.astype(np.uint8))


def test_percentile_window_is_the_same_whatever_the_scanner_gain():
    truth = asymmetric_objects((24, 24, 16))
    rng = np.random.default_rng(3)
    image = (np.where(truth, 600, 150) + rng.normal(0, 20, truth.shape)).astype(np.float32)
    config = InferenceConfig(target_spacing=None, window_percentiles=(0.0, 99.0), roi_size=16)
    net = ThresholdNet(level=0.6)
    reference = predict_mask(net, image, np.eye(4), config, CPU)
    assert dice(reference, truth) > 0.95
    for gain in (0.05, 3.0, 40.0):
        np.testing.assert_array_equal(
            predict_mask(net, image * gain, np.eye(4), config, CPU), reference
        )
    # A fixed window does depend on the gain: the same net sees nothing at 1/20.
    fixed = InferenceConfig(target_spacing=None, window=(0.0, 1000.0), roi_size=16)
    assert predict_mask(net, image * 0.05, np.eye(4), fixed, CPU).sum() == 0


def test_percentile_window_reads_stored_values_through_the_nifti_scaling():
    data = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    config = InferenceConfig(window_percentiles=(0.0, 100.0))
    assert intensity_window(data, config) == pytest.approx((0.0, 996.0))  # every 4th voxel
    assert intensity_window(data, config, (2.0, 5.0)) == pytest.approx((5.0, 1997.0))
    # A negative slope turns the order round; the window stays low < high.
    assert intensity_window(data, config, (-1.0, 0.0)) == pytest.approx((-996.0, 0.0))
    flat = np.full((8, 8, 8), 7, dtype=np.int16)
    assert intensity_window(flat, config) == (7.0, 8.0)
    with pytest.raises(ValueError, match="percentiles"):
        InferenceConfig(window_percentiles=(50.0, 10.0))


def test_progress_counts_every_window_up_to_one():
    image = np.zeros((40, 30, 20), dtype=np.float32)
    config = InferenceConfig(target_spacing=None, roi_size=16, overlap=0.25, sw_batch_size=2)
    calls = []

    class CountingNet(ThresholdNet):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    seen = []
    predict_mask(CountingNet(), image, np.eye(4), config, CPU, progress=seen.append)
    assert len(calls) == count_windows(image.shape, config)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert len(seen) == len(calls) + 1


def test_tiny_mambavesselnet_returns_a_mask_on_the_input_grid():
    torch.manual_seed(0)
    network = MambaVesselNet(feature_dims=(4, 8, 8, 16, 16))
    data = np.random.default_rng(0).integers(0, 1000, (37, 29, 21)).astype(np.int16)
    affine = np.diag([-0.5, 0.5, 0.8, 1.0])  # L-P... axis 0 points left
    config = InferenceConfig(target_spacing=(0.7, 0.7, 0.7), roi_size=32)
    segmenter = NetworkSegmenter("tiny", network, config, "cpu")
    mask = segmenter.segment(make_volume(data, affine))
    assert mask.shape == data.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}


def test_ras_grid_tracks_axis_order_and_spacing():
    affine = np.array([[0, 0, -0.9, 0], [-0.4, 0, 0, 0], [0, 0.45, 0, 0], [0, 0, 0, 1.0]])
    grid = ras_grid((10, 20, 30), affine)
    # array axis 2 runs along x (R-L), axis 0 along y, axis 1 along z
    assert grid.ras_shape == (30, 10, 20)
    assert grid.ras_spacing == pytest.approx((0.9, 0.4, 0.45))


def test_config_round_trips_through_a_dict():
    config = InferenceConfig(target_spacing=(0.5, 0.5, 0.7), window=(10.0, 900.0), overlap=0.5)
    assert InferenceConfig.from_dict(config.to_dict()) == config
    robust = InferenceConfig(target_spacing=None, window_percentiles=(0.5, 99.9))
    assert InferenceConfig.from_dict(robust.to_dict()) == robust
    assert InferenceConfig.from_dict({"target_spacing": 0.4}).target_spacing == (0.4, 0.4, 0.4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_asking_for_cuda_without_one_is_a_clear_error():
    with pytest.raises(ModelNotAvailableError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU


def slabs(shape=(40, 24, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Four slabs along the first axis at 200, 450, 700 and 900, and the index of each
    slab's middle plane (far from the edges that resampling blurs)."""
    levels = np.repeat(np.array([200, 450, 700, 900], dtype=np.float32), shape[0] // 4)
    image = np.broadcast_to(levels[:, None, None], shape).copy()
    middles = np.arange(4) * (shape[0] // 4) + shape[0] // 8
    return image, middles


@pytest.mark.parametrize("target_spacing", [None, (1.6, 1.6, 1.6)])
def test_vessel_threshold_decides_on_the_vessel_probability(target_spacing):
    image, middles = slabs()
    affine = np.diag([0.8, 0.8, 0.8, 1.0])
    masks = {}
    for threshold in (None, 0.3, 0.6, 0.8):
        config = InferenceConfig(
            target_spacing=target_spacing, roi_size=16, vessel_threshold=threshold
        )
        masks[threshold] = predict_mask(ProbabilityNet(), image, affine, config, CPU)
    # Probabilities 0.2, 0.45, 0.7, 0.9 in the slabs' middles.
    expected = {None: [0, 0, 1, 1], 0.3: [0, 1, 1, 1], 0.6: [0, 0, 1, 1], 0.8: [0, 0, 0, 1]}
    for threshold, labels in expected.items():
        middle_planes = masks[threshold][middles]
        for plane, label in zip(middle_planes, labels, strict=True):
            assert np.all(plane == label), (threshold, labels)


def test_probability_smoothing_steadies_a_ragged_rim():
    """A slab whose vessel probability flips voxel by voxel around the threshold along
    its rim: smoothed, the rim is the plane where the mean crosses it, whatever the
    flips (two noise draws give the same mask), and the interior and the far ground
    stay as they were."""
    shape = (32, 24, 24)
    depth = np.arange(shape[0], dtype=np.float32)[:, None, None]
    # 0.95 inside, falling past depth 12; it crosses 0.5 between two planes.
    ramp = np.clip(1.0 - (depth - 12.5) / 8.0, 0.05, 0.95)
    masks = {}
    for seed in (1, 2):
        noise = np.random.default_rng(seed).normal(0.0, 0.12, shape).astype(np.float32)
        image = np.broadcast_to(ramp, shape) + noise * (np.abs(ramp - 0.5) < 0.3)
        for sigma in (0.0, 1.5):
            config = InferenceConfig(
                target_spacing=None,
                window=(0.0, 1.0),
                roi_size=16,
                skip_air=False,
                vessel_threshold=0.5,
                probability_sigma=sigma,
            )
            masks[seed, sigma] = predict_mask(ProbabilityNet(), image, np.eye(4), config, CPU)
    raw_change = (masks[1, 0.0] != masks[2, 0.0]).mean()
    smoothed_change = (masks[1, 1.5] != masks[2, 1.5]).mean()
    assert raw_change > 0.02 and smoothed_change < raw_change / 4
    for sigma in (0.0, 1.5):
        assert masks[1, sigma][:8].all() and not masks[1, sigma][24:].any()


def test_masks_from_one_network_pass_equal_the_whole_pipeline():
    truth = asymmetric_objects((40, 36, 24))
    rng = np.random.default_rng(5)
    image = (np.where(truth, 0.8, 0.3) + rng.normal(0, 0.1, truth.shape)).astype(np.float32)
    affine = np.diag([0.5, 0.5, 0.7, 1.0])
    base = InferenceConfig(target_spacing=(0.6, 0.6, 0.6), window=(0.0, 1.0), roi_size=16)
    output = network_logits(ProbabilityNet(), image, affine, base, CPU)
    for changes in (
        {},
        {"vessel_threshold": 0.7},
        {"probability_sigma": 1.0, "vessel_threshold": 0.4},
        {"clear_air": True, "min_piece_voxels": 30},
    ):
        config = replace(base, **changes)
        expected = predict_mask(ProbabilityNet(), image, affine, config, CPU)
        np.testing.assert_array_equal(mask_from_logits(output, config), expected)


def test_probability_sigma_is_checked_and_kept():
    for bad in (-0.5, 9.0):
        with pytest.raises(ValueError, match="probability sigma"):
            InferenceConfig(probability_sigma=bad)
    config = InferenceConfig.from_dict({"probability_sigma": 0.75, "vessel_threshold": 0.5})
    assert InferenceConfig.from_dict(config.to_dict()) == config
    # Weights stored before the setting existed keep their masks: no smoothing.
    assert InferenceConfig.from_dict({}).probability_sigma == 0.0


def test_vessel_threshold_must_lie_between_zero_and_one():
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="vessel threshold"):
            InferenceConfig(vessel_threshold=bad)
    config = InferenceConfig.from_dict({"vessel_threshold": 0.65})
    assert config.vessel_threshold == 0.65
    assert InferenceConfig.from_dict(config.to_dict()) == config


def test_segmenting_leaves_the_callers_array_untouched():
    # float32 already in RAS order is the case where a careless window would work
    # in place on the caller's own array.
    image, _ = slabs()
    before = image.copy()
    config = InferenceConfig(target_spacing=None, roi_size=16)
    segmenter = NetworkSegmenter("probability", ProbabilityNet(), config, "cpu")
    segmenter.segment(make_volume(image, np.eye(4)))
    np.testing.assert_array_equal(image, before)


class WindowBiasNet(torch.nn.Module):
    """Threshold at 0.5 plus a bias that grows along the window's last axis: on its
    own it marks too much at one end of each window and too little at the other."""

    def forward(self, x):
        ramp = torch.linspace(-0.3, 0.3, x.shape[-1], dtype=x.dtype, device=x.device)
        vessel = x - 0.5 + ramp
        return torch.cat([-vessel, vessel], dim=1) * 20.0


def test_flip_averaging_cancels_a_bias_that_flips_would_undo():
    # One window the size of the image: flipping the image reverses the ramp exactly.
    image = np.random.default_rng(0).uniform(0, 1000, (16, 16, 16)).astype(np.float32)
    image[np.abs(image - 500) < 20] = 700  # no value within the rounding of the threshold
    truth = (image > 500).astype(np.uint8)
    calls = []
    plain, averaged = (
        InferenceConfig(target_spacing=None, roi_size=16, flip_averaging=flip)
        for flip in (False, True)
    )
    biased = predict_mask(WindowBiasNet(), image, np.eye(4), plain, CPU)
    mask = predict_mask(WindowBiasNet(), image, np.eye(4), averaged, CPU, calls.append)
    assert (biased != truth).mean() > 0.1
    np.testing.assert_array_equal(mask, truth)
    # Eight passes of one window each, reported as they happen.
    assert len(calls) == 8 + 1 and calls[-1] == 1.0
    assert calls[:8] == sorted(calls[:8]) and calls[0] == pytest.approx(1 / 8)


def test_resampling_may_not_grow_a_volume_without_bound():
    from vesselzip.errors import InvalidVolumeError
    from vesselzip.model.inference import MAX_UPSAMPLING, ras_grid, resampled_shape

    coarse = ras_grid((16, 16, 16), np.diag([10.0, 10.0, 10.0, 1.0]))
    assert resampled_shape(coarse, (5.0, 5.0, 5.0)) == (32, 32, 32)  # exactly 8x: allowed
    assert MAX_UPSAMPLING == 8
    with pytest.raises(InvalidVolumeError, match="over 8x its voxels"):
        resampled_shape(coarse, (0.3542,) * 3)


# --- Tissue window, air windows, cleanup ---------------------------------------------


def tissue_crop(shape=(32, 32, 24), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A crop full of textured tissue (~150) with bright objects (~700): (image, truth)."""
    rng = np.random.default_rng(seed)
    truth = asymmetric_objects(shape)
    tissue = 150.0 * (1.0 + 0.15 * rng.standard_normal(shape))
    return np.where(truth, 700.0, tissue).astype(np.float32), truth


def in_air(crop: np.ndarray, offset, seed: int = 1, sigma: float = 5.0) -> np.ndarray:
    """`crop` inside a field of view twice as large per axis, the rest Rician air
    (magnitude of complex Gaussian noise of `sigma`)."""
    rng = np.random.default_rng(seed)
    shape = tuple(2 * n for n in crop.shape)
    air = np.hypot(rng.normal(0, sigma, shape), rng.normal(0, sigma, shape)).astype(np.float32)
    air[tuple(slice(o, o + n) for o, n in zip(offset, crop.shape, strict=True))] = crop
    return air


def normalised(image: np.ndarray, config: InferenceConfig) -> np.ndarray:
    grid = ras_grid(image.shape, np.eye(4))
    return preprocess(image, grid, config, CPU, clip=False)[0, 0].numpy()


TISSUE = InferenceConfig(target_spacing=None, tissue_window=4.0, roi_size=16)


def test_tissue_window_is_the_same_whatever_the_gain():
    image, truth = tissue_crop()
    reference = normalised(image, TISSUE)
    # The tissue sits at 1/4 of the window.
    assert np.median(reference[~truth]) == pytest.approx(0.25, rel=0.05)
    net = ThresholdNet(level=0.6)
    mask = predict_mask(net, image, np.eye(4), TISSUE, CPU)
    assert dice(mask, truth) > 0.95
    for gain in (0.1, 8.0):
        np.testing.assert_allclose(normalised(image * gain, TISSUE), reference, rtol=1e-5)
        np.testing.assert_array_equal(predict_mask(net, image * gain, np.eye(4), TISSUE, CPU), mask)


@pytest.mark.parametrize("window", ["tissue", "percentiles"])
def test_the_window_does_not_depend_on_the_air_around(window):
    config = TISSUE
    if window == "percentiles":
        config = InferenceConfig(target_spacing=None, window_percentiles=(0.0, 99.9))
    image, _ = tissue_crop()
    alone = normalised(image, config)
    for offset in ((16, 8, 12), (13, 9, 10)):
        crop = tuple(slice(o, o + n) for o, n in zip(offset, image.shape, strict=True))
        embedded = in_air(image, offset)
        # On the block grid or off it: the crop is windowed as it is alone, to the
        # last bit (measured within the tissue box, which is the crop).
        np.testing.assert_array_equal(normalised(embedded, config)[crop], alone)
    # Over the whole field of view the air would move the percentiles (seven eighths
    # of it is air): the test can tell.
    median = InferenceConfig(window_percentiles=(0.0, 50.0))
    assert intensity_window(embedded, median)[1] < 0.5 * intensity_window(image, median)[1]


def test_tissue_levels_scale_with_the_gain_and_survive_a_blank_volume():
    image, _ = tissue_crop()
    blocks = block_means(torch.from_numpy(image)[None, None])
    levels = tissue_levels(blocks)
    assert levels.level == pytest.approx(150.0, rel=0.05)
    assert levels.threshold == pytest.approx(TISSUE_FRACTION * levels.level)
    scaled = tissue_levels(blocks * 8.0)
    assert scaled.level == pytest.approx(8.0 * levels.level, rel=1e-6)
    blank = np.zeros((16, 16, 16), dtype=np.float32)
    assert np.all(normalised(blank, TISSUE) == 0.0)
    assert predict_mask(ThresholdNet(), blank, np.eye(4), TISSUE, CPU).sum() == 0


class CountingThresholdNet(ThresholdNet):
    def __init__(self, level: float = 0.5):
        super().__init__(level)
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        return super().forward(x)


@pytest.mark.parametrize("flip_averaging", [False, True])
def test_air_windows_are_skipped_without_changing_the_mask(flip_averaging):
    image, truth = tissue_crop((24, 24, 16))
    embedded = in_air(image, (4, 0, 8))  # 48 x 48 x 32, the crop in one corner
    expected = np.zeros(embedded.shape, dtype=np.uint8)
    expected[4:28, 0:24, 8:24] = truth
    masks, windows = [], []
    for skip in (False, True):
        config = InferenceConfig(
            target_spacing=None,
            tissue_window=4.0,
            roi_size=16,
            overlap=0.25,
            sw_batch_size=3,
            skip_air=skip,
            flip_averaging=flip_averaging,
        )
        net = CountingThresholdNet(level=0.6)
        seen: list[float] = []
        masks.append(predict_mask(net, embedded, np.eye(4), config, CPU, seen.append))
        windows.append(net.windows)
        assert seen == sorted(seen) and seen[-1] == 1.0
    np.testing.assert_array_equal(masks[0], masks[1])
    assert dice(masks[1], expected) > 0.95
    assert windows[1] < 0.75 * windows[0]


class EverythingVesselNet(torch.nn.Module):
    out_chans = 2

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), torch.ones_like(x)], dim=1)


def test_only_the_tissue_is_run_and_clear_air_marks_nothing_in_air():
    image, _ = tissue_crop((24, 24, 16))
    embedded = in_air(image, (0, 0, 0))  # tissue in the first 24 x 24 x 16 corner
    net = EverythingVesselNet()
    config = InferenceConfig(target_spacing=None, tissue_window=4.0, roi_size=16, overlap=0.0)
    # The network sees the box that holds the tissue; all else is background.
    skipped = predict_mask(net, embedded, np.eye(4), config, CPU)
    assert skipped[:24, :24, :16].all() and skipped.sum() == 24 * 24 * 16
    # Run everywhere, then cleared: one block (4 voxels) of margin around the tissue.
    everywhere = replace(config, skip_air=False)
    assert predict_mask(net, embedded, np.eye(4), everywhere, CPU).all()
    cleared = predict_mask(net, embedded, np.eye(4), replace(everywhere, clear_air=True), CPU)
    assert cleared[:28, :28, :20].all() and cleared.sum() == 28 * 28 * 20


def test_tissue_thinner_than_a_block_is_still_segmented():
    # A bright sliver 4 x 3 x 1 voxels in air (a crop that barely grazes a vessel):
    # its tissue box is thinner than a block along two axes.
    rng = np.random.default_rng(0)
    image = np.hypot(rng.normal(0, 2.0, (40, 40, 30)), rng.normal(0, 2.0, (40, 40, 30)))
    image[10:14, 20:23, 5] = 500.0
    config = InferenceConfig(
        target_spacing=None, tissue_window=4.0, roi_size=16, overlap=0.0, clear_air=True
    )
    mask = predict_mask(EverythingVesselNet(), image.astype(np.float32), np.eye(4), config, CPU)
    assert mask[10:14, 20:23, 5].all()
    assert not mask[:, :, 12:].any(), "nothing marked far from the sliver"


def test_air_windows_between_tissue_are_background():
    # Tissue in two opposite corners: the box is the whole image, and the windows
    # in between (farther than a block from tissue) are not run.
    image, _ = tissue_crop((16, 16, 16))
    embedded = in_air(image, (0, 0, 0))
    embedded = in_air(embedded, (0, 0, 0))  # 64^3
    embedded[48:, 48:, 48:] = image
    config = InferenceConfig(target_spacing=None, tissue_window=4.0, roi_size=16, overlap=0.0)
    mask = predict_mask(EverythingVesselNet(), embedded, np.eye(4), config, CPU)
    assert mask[:32, :32, :32].all() and mask[32:, 32:, 32:].all()
    assert mask.sum() == 2 * 32**3


def test_cleanup_removes_specks_but_keeps_vessels():
    image, truth = tissue_crop()
    specks = [(2, 30, 2), (30, 2, 20), (16, 30, 22)]
    for speck in specks:
        image[speck] = 700.0
    net = ThresholdNet(level=0.6)
    raw = predict_mask(net, image, np.eye(4), TISSUE, CPU)
    assert all(raw[speck] for speck in specks)
    cleaned = predict_mask(net, image, np.eye(4), replace(TISSUE, min_piece_voxels=10), CPU)
    assert not any(cleaned[speck] for speck in specks)
    np.testing.assert_array_equal(cleaned, truth.astype(np.uint8))


def test_new_settings_round_trip_and_are_checked():
    config = InferenceConfig(tissue_window=4.0, clear_air=True, min_piece_voxels=50)
    assert InferenceConfig.from_dict(config.to_dict()) == config
    old = InferenceConfig.from_dict({"window_percentiles": [0, 99.9], "roi_size": 48})
    assert old.tissue_window is None and not old.clear_air and old.min_piece_voxels == 0
    with pytest.raises(ValueError, match="not both"):
        InferenceConfig(window_percentiles=(0.0, 99.9), tissue_window=4.0)
    with pytest.raises(ValueError, match="tissue window must be positive"):
        InferenceConfig(tissue_window=0.0)
    with pytest.raises(ValueError, match="min piece voxels"):
        InferenceConfig(min_piece_voxels=-1)


def test_pieces_at_the_edge_of_the_view_are_kept_from_their_own_size():
    from vesselzip.model.foreground import remove_small_pieces

    mask = np.zeros((40, 40, 40), np.uint8)
    mask[0:6, 10:15, 10:15] = 1  # 150 voxels touching the first face
    mask[20:26, 20:25, 20:25] = 1  # 150 voxels inside
    mask[30:32, 39, 0:2] = 1  # 4 voxels in a corner
    mask[5:35, 30:34, 30:34] = 1  # 480 voxels inside
    kept = remove_small_pieces(mask.copy(), 400, edge_min_voxels=100)
    assert kept[0:6, 10:15, 10:15].all()
    assert not kept[20:26, 20:25, 20:25].any() and not kept[30:32, 39, 0:2].any()
    assert kept[5:35, 30:34, 30:34].all()
    plain = remove_small_pieces(mask.copy(), 400)
    assert not plain[0:6, 10:15, 10:15].any() and plain.sum() == 480


def test_a_crop_set_in_air_keeps_the_same_edge_pieces_as_alone():
    """The faces of the tissue box count as the edge of the view: the same pieces
    survive the cleanup whether a crop is segmented alone or inside air."""
    from vesselzip.model.foreground import remove_small_pieces

    crop = np.zeros((40, 40, 40), np.uint8)
    crop[0:6, 10:15, 10:15] = 1  # 150 voxels on the crop's first face
    crop[20:26, 20:25, 20:25] = 1  # 150 voxels inside
    alone = remove_small_pieces(crop.copy(), 400, edge_min_voxels=100)
    around = np.zeros((90, 80, 70), np.uint8)
    view = (slice(30, 70), slice(17, 57), slice(5, 45))
    around[view] = crop
    in_air = remove_small_pieces(around.copy(), 400, edge_min_voxels=100, view=view)
    np.testing.assert_array_equal(in_air[view], alone)
    assert in_air.sum() == alone.sum() == 150
    # Without the view the piece is inside the array: it goes.
    assert remove_small_pieces(around.copy(), 400, edge_min_voxels=100).sum() == 0


@pytest.mark.parametrize("codes", ["RAS", "PSL", "LIA"])
def test_the_tissue_box_maps_onto_the_input_array(codes):
    from vesselzip.model.inference import box_on_input

    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    data = np.zeros((40, 30, 20), np.float32)
    data[5:25, 8:20, 3:15] = 1.0
    stored, stored_affine = reoriented(data, affine, codes)
    grid = ras_grid(stored.shape, stored_affine)
    assert grid.ras_shape == data.shape
    for network_shape in (data.shape, (80, 60, 40)):  # the network's grid, or twice as fine
        scale = [n // d for n, d in zip(network_shape, data.shape, strict=True)]
        spans = [(5, 25), (8, 20), (3, 15)]
        box = tuple(slice(a * s, b * s) for (a, b), s in zip(spans, scale, strict=True))
        view = box_on_input(box, network_shape, grid)
        inside = np.zeros(stored.shape, bool)
        inside[view] = True
        np.testing.assert_array_equal(inside, stored > 0)
