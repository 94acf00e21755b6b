"""Tissue versus air, decided the same way whatever the field of view and the
scanner's gain, and the mask cleanup that uses it.

The image is averaged over blocks of BLOCK³ voxels (the Rician noise of air averages
out far below any tissue), and a block is tissue when its mean reaches
TISSUE_FRACTION of the tissue level, the tissue level being the median of the blocks
that are tissue: the fixed point t = TISSUE_FRACTION × median{blocks ≥ t}, found by
starting at the brightest block and stepping down. Once t lies between air and
tissue, adding air around a volume changes neither t nor the median (no air block
reaches t), and multiplying the intensities by a gain multiplies both. The median of
the tissue hardly depends on how much vessel is in view either (a few % of the
voxels), unlike a high percentile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from vesselzip.metrics.connectivity import piece_sizes

#: Side, in voxels of the network's grid, of the blocks that are tissue or air as a
#: whole; averaging 64 voxels leaves air's noise far below any tissue's level.
BLOCK = 4
#: A block is tissue when its mean reaches this share of the tissue level: under
#: grey and white matter, above air (Rician noise of 1/5 of the tissue level averages
#: to about 1/4 of it over 1 voxel and varies little over 64). Skull and CSF fall
#: below it, but the holes they leave inside the head are filled.
TISSUE_FRACTION = 0.4
#: An outer plane of the tissue box is kept when this share of its voxels reach the
#: tissue threshold: far above air's (Rician noise passes 0.4 of the tissue level in
#: about 1 voxel in 3000 at a tissue SNR of 10), far below a plane of brain.
PLANE_TISSUE_SHARE = 0.05
#: Fixed-point steps allowed; it settles in a handful.
MAX_STEPS = 100


@dataclass(frozen=True)
class TissueLevels:
    """Intensities (in the image's units) that tell tissue from air."""

    threshold: float  # block means at or above it are tissue
    level: float  # median block mean of the tissue


def block_means(image: torch.Tensor) -> torch.Tensor:
    """(1, 1, D, H, W) image -> (d, h, w) means over BLOCK³ blocks (the blocks at the
    far edges average only the voxels they hold)."""
    return F.avg_pool3d(image, BLOCK, stride=BLOCK, ceil_mode=True)[0, 0]


def tissue_levels(blocks: torch.Tensor) -> TissueLevels:
    """The fixed point t = TISSUE_FRACTION × median{blocks ≥ t}, from the brightest
    block down, and that median. Scales with the intensities; a volume without any
    signal gives 0 for both."""
    values = blocks.flatten().float()
    threshold = float(values.max())
    level = threshold
    for _ in range(MAX_STEPS):
        level = float(values[values >= threshold].median())
        following = TISSUE_FRACTION * level
        if following == threshold:
            break
        threshold = following
    return TissueLevels(threshold=threshold, level=level)


def tissue_blocks(image: torch.Tensor) -> np.ndarray:
    """(d, h, w) bool: the blocks of a (1, 1, D, H, W) image that are tissue, holes
    inside the head (skull, ventricles) filled."""
    blocks = block_means(image)
    return tissue_of_blocks(blocks, tissue_levels(blocks).threshold)


def tissue_of_blocks(blocks: torch.Tensor, threshold: float) -> np.ndarray:
    """`tissue_blocks` from block means and their tissue threshold, for a caller that
    needs the threshold too."""
    return ndimage.binary_fill_holes((blocks >= threshold).cpu().numpy())


def grown(tissue: np.ndarray, margin_blocks: int = 1) -> np.ndarray:
    """Tissue blocks grown by `margin_blocks` blocks in every direction (26-neighbours)."""
    if margin_blocks < 1:
        return tissue
    cube = np.ones((3, 3, 3), dtype=bool)
    return ndimage.binary_dilation(tissue, structure=cube, iterations=margin_blocks)


def tissue_box(tissue: np.ndarray, shape: Sequence[int]) -> tuple[slice, ...]:
    """The voxel slices of an image of `shape` that hold all its tissue blocks,
    starting on a block boundary (so that the box's blocks are the image's); the
    whole image when it has no tissue."""
    found = ndimage.find_objects(tissue.astype(np.uint8))
    if not found:
        return tuple(slice(0, n) for n in shape)
    return tuple(
        slice(part.start * BLOCK, min(part.stop * BLOCK, n))
        for part, n in zip(found[0], shape, strict=True)
    )


def trimmed_to_tissue(
    image: torch.Tensor, box: Sequence[slice], threshold: float
) -> tuple[slice, ...]:
    """`box` (block-aligned slices of a (1, 1, D, H, W) image) without the outer
    planes, at most BLOCK - 1 per side, in which under PLANE_TISSUE_SHARE of the voxels
    reach `threshold`: a crop inside air then gets the box it gets alone, voxel for
    voxel, whatever its offset from the block grid."""
    trimmed = list(box)
    for axis in range(3):
        inside = image[0, 0][tuple(trimmed)].movedim(axis, 0)
        share = (inside >= threshold).flatten(1).float().mean(dim=1)
        holds = (share >= PLANE_TISSUE_SHARE).nonzero().flatten().tolist()
        if not holds:
            continue
        start, stop = trimmed[axis].start, trimmed[axis].stop
        first = min(holds[0], BLOCK - 1)
        last = max(holds[-1] + 1, (stop - start) - (BLOCK - 1))
        trimmed[axis] = slice(start + first, start + last)
    return tuple(trimmed)


def window_holds_tissue(
    tissue: np.ndarray, window: Sequence[slice], shape: Sequence[int], flipped: Sequence[int]
) -> bool:
    """Whether a window (voxel slices of an image of `shape`, flipped along the
    spatial axes `flipped`, 0-based) covers any tissue block."""
    blocks = []
    for axis, (part, size) in enumerate(zip(window, shape, strict=True)):
        start, stop = part.start or 0, size if part.stop is None else part.stop
        if axis in flipped:
            start, stop = size - stop, size - start
        blocks.append(slice(start // BLOCK, -(-stop // BLOCK)))
    return bool(tissue[tuple(blocks)].any())


def blocks_on_grid(tissue: np.ndarray, network_shape: Sequence[int], shape: Sequence[int]):
    """The tissue blocks of an image of `network_shape` as a (D, H, W) bool mask on a
    grid of `shape` covering the same field of view (nearest voxel centre)."""
    indices = []
    for n_network, n in zip(network_shape, shape, strict=True):
        centres = (np.arange(n) + 0.5) * (n_network / n)
        indices.append(np.minimum(centres.astype(np.int64), n_network - 1) // BLOCK)
    return tissue[np.ix_(*indices)]


def remove_small_pieces(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """`mask` (uint8 0/1) without its pieces (26-connectivity) under `min_voxels`
    voxels, in place. The same labelling as `connectivity_metrics`, so that the
    cleanup and the metric count pieces alike (MONAI's RemoveSmallObjects would sort
    the whole volume first to find its values, seconds on a whole head)."""
    if min_voxels <= 1 or not mask.any():
        return mask
    labels, sizes = piece_sizes(mask)
    small = sizes < min_voxels
    small[0] = False
    mask[small[labels]] = 0
    return mask
