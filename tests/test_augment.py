"""Background suppression as viewing exports apply it, as a training augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from vesselzip.model.augment import RIM_VOXELS, RandSuppressBackgroundd
from vesselzip.model.train import TrainConfig, training_transforms


def patch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Tissue at 0.17 with noise, a labelled tube at 0.8 and an unlabelled one at 0.7."""
    rng = np.random.default_rng(seed)
    image = 0.17 + rng.normal(0.0, 0.02, (48, 48, 48)).astype(np.float32)
    label = np.zeros((48, 48, 48), dtype=np.uint8)
    image[20:24, 20:24, :] = 0.8
    label[20:24, 20:24, :] = 1
    image[:, 35:38, 10:13] = 0.7
    return {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label)[None]}


def test_suppression_keeps_vessels_and_labels_and_zeroes_the_rest():
    transform = RandSuppressBackgroundd(prob=1.0)
    for seed in range(6):
        transform.set_random_state(seed)
        given = patch(seed)
        out = transform(given)
        image = out["image"][0].numpy()
        assert torch.equal(out["label"], given["label"])
        # Both tubes, labelled or not, keep their intensities.
        assert np.array_equal(image[20:24, 20:24, :], given["image"][0, 20:24, 20:24, :].numpy())
        assert np.allclose(image[:, 35:38, 10:13], 0.7)
        # Far from both tubes, a voxel is either 0 or inside a kept tissue patch; the
        # rim reaches no farther than RIM_VOXELS around them.
        tubes = np.zeros(image.shape, dtype=bool)
        tubes[20:24, 20:24, :] = tubes[:, 35:38, 10:13] = True
        far = ~ndimage.binary_dilation(tubes, iterations=RIM_VOXELS[1])
        zero = image[far] == 0.0
        assert zero.mean() >= 0.6, "most of the background is suppressed"


def test_flattened_patches_are_one_level():
    transform = RandSuppressBackgroundd(prob=1.0)
    seen_flat = False
    for seed in range(20):
        transform.set_random_state(seed)
        image = transform(patch(seed))["image"][0].numpy()
        left = image[(image > 0) & (image < 0.5)]
        # A flattened patch: a spread of 0.01 around one level, not the tissue's 0.02.
        if left.size > 500 and left.std() < 0.015:
            seen_flat = True
    assert seen_flat


def test_probability_zero_leaves_the_patch_alone():
    given = patch()
    out = RandSuppressBackgroundd(prob=0.0)(given)
    assert torch.equal(out["image"], given["image"])


def test_suppression_share_is_a_training_option(tmp_path):
    def suppressions(config):
        return [
            t
            for t in training_transforms(config).transforms
            if isinstance(t, RandSuppressBackgroundd)
        ]

    (default,) = suppressions(TrainConfig(data=tmp_path / "d.json", out=tmp_path))
    assert default.prob == pytest.approx(0.1)
    (off,) = suppressions(TrainConfig(data=tmp_path / "d.json", out=tmp_path, suppress_prob=0.0))
    assert off.prob == 0.0
    assert not suppressions(TrainConfig(data=tmp_path / "d.json", out=tmp_path, augment=False))
