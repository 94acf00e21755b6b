"""The pictures of a job: projections with the mask coloured by what each voxel is,
true to scale, and the difference picture."""

from __future__ import annotations

import imagecodecs
import numpy as np

from vesselzip.pictures import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    MASK_ONLY,
    MIN_SIDE,
    TRUE_POSITIVE,
    difference_picture,
    difference_projections,
    mask_picture,
    projections_from_bytes,
    projections_to_bytes,
)


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(imagecodecs.png_decode(png))


def hue(pixel: np.ndarray) -> int:
    """Which channel dominates (0 red, 1 green, 2 blue)."""
    return int(np.argmax(pixel.astype(int)))


def test_mask_voxels_are_coloured_by_what_they_are():
    volume = np.zeros((10, 10, 4), np.int16)
    mask = np.zeros(volume.shape, np.uint8)
    truth = np.zeros(volume.shape, np.uint8)
    mask[2, 2, 1] = truth[2, 2, 1] = 1  # true positive
    mask[7, 2, 1] = 1  # false positive
    truth[2, 7, 1] = 1  # false negative
    picture = decoded(mask_picture(volume, mask, truth, "axial"))
    # Axial: projected along k; pixels are square and the picture enlarged to MIN_SIDE.
    assert picture.shape == (MIN_SIDE, MIN_SIDE, 3)
    scale = MIN_SIDE // 10

    def at(i: int, j: int) -> np.ndarray:  # voxel (i, j) after the 90° turn: row 9 − j
        return picture[(9 - j) * scale + scale // 2, i * scale + scale // 2]

    assert hue(at(2, 2)) == hue(np.array(TRUE_POSITIVE))
    assert hue(at(7, 2)) == hue(np.array(FALSE_POSITIVE))
    assert hue(at(2, 7)) == hue(np.array(FALSE_NEGATIVE))
    assert at(5, 5).tolist() == [0, 0, 0]  # nothing there
    without_truth = decoded(mask_picture(volume, mask, None, "axial"))
    orange = without_truth[(9 - 2) * scale + scale // 2, 7 * scale + scale // 2]
    assert hue(orange) == hue(np.array(MASK_ONLY)) and orange[1] > 50


def test_pictures_are_true_to_scale():
    volume = np.random.default_rng(0).integers(0, 1000, (64, 32, 16)).astype(np.int16)
    mask = np.zeros(volume.shape, np.uint8)
    # Coronal: i across, k up; 0.5 mm across and 2 mm up: 32 mm by 32 mm, square.
    coronal = decoded(mask_picture(volume, mask, None, "coronal", (0.5, 1.0, 2.0)))
    assert coronal.shape[0] == coronal.shape[1]
    sagittal = decoded(mask_picture(volume, mask, None, "sagittal", (1.0, 1.0, 1.0)))
    assert sagittal.shape[:2] == (MIN_SIDE // 2, MIN_SIDE)  # 16 mm up, 32 mm across


def test_the_difference_picture_scales_to_the_largest_difference():
    original = np.zeros((40, 8, 8), np.int16)
    changed = original.copy()
    changed[1, 1, 1] = 40
    changed[33, 5, 5] = -10  # in another slab of planes
    projections = projections_from_bytes(
        projections_to_bytes(difference_projections(original, changed, planes=16))
    )
    assert projections["axial"].shape == (40, 8) and projections["sagittal"].shape == (8, 8)
    assert projections["axial"][1, 1] == 40 and projections["axial"][33, 5] == 10
    assert projections["sagittal"][5, 5] == 10 and projections["coronal"][33, 5] == 10
    png, largest = difference_picture(projections["axial"], "axial")
    assert largest == 40.0
    picture = decoded(png)
    assert picture.max() == 255 and picture.min() == 0
    same = difference_projections(original, original)
    assert decoded(difference_picture(same["axial"], "axial")[0]).max() == 0
