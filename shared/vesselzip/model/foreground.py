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

A volume's window (its tissue level, or its percentiles) is measured within its
tissue box (the box that holds its tissue, trimmed to the planes that hold tissue,
voxel for voxel): a crop set inside air, off the block grid or on it, has the crop
itself as its box, so it is windowed as it is alone (measured on the whole image, a
rim of blocks half tissue, half air, pulls the median down by several %, and the air
lowers every percentile).
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
    far edges average only the voxels they hold, and an axis shorter than a block is
    one block)."""
    kernel = tuple(min(BLOCK, n) for n in image.shape[2:])
    return F.avg_pool3d(image, kernel, stride=BLOCK, ceil_mode=True)[0, 0]


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
    """The part of `box` (slices of a (1, 1, D, H, W) image) between the first and the
    last plane, along each axis, in which PLANE_TISSUE_SHARE of the part's voxels
    reach `threshold`, trimmed again until it holds: found voxel by voxel, so that a
    crop inside air gets the box it gets alone whatever its offset from the block grid.
    `box` itself when no plane holds that much."""
    above = image[0, 0] >= threshold
    trimmed = tuple(box)
    for _ in range(MAX_STEPS):
        inside = above[trimmed]
        # Voxels reaching the threshold per plane along each axis, from one pass.
        rows = inside.sum(dim=2, dtype=torch.int32)
        counts = (rows.sum(dim=1), rows.sum(dim=0), inside.sum(dim=(0, 1), dtype=torch.int32))
        following = []
        for axis, (part, count) in enumerate(zip(trimmed, counts, strict=True)):
            share = count / (inside.numel() / inside.shape[axis])
            holds = (share >= PLANE_TISSUE_SHARE).nonzero().flatten().tolist()
            following.append(
                slice(part.start + holds[0], part.start + holds[-1] + 1) if holds else part
            )
        if tuple(following) == trimmed:
            break
        trimmed = tuple(following)
    return trimmed


@dataclass(frozen=True)
class TissueRegion:
    """Where an image's tissue is: its tissue box, and the box's own blocks."""

    box: tuple[slice, ...]  # voxel slices holding the tissue, trimmed to its planes
    levels: TissueLevels  # of the box's blocks
    tissue: np.ndarray  # (d, h, w) bool: the box's tissue blocks, holes filled


def tissue_region(image: torch.Tensor) -> TissueRegion:
    """The tissue box of a (1, 1, D, H, W) image (in intensities, air near 0), and the
    levels and tissue blocks of the box on its own block grid: a crop inside air has
    the crop as its box, and so the blocks it has alone."""
    blocks = block_means(image)
    threshold = tissue_levels(blocks).threshold
    # The block box and one block more on each side, for planes that hold tissue in
    # blocks too dark on average to count.
    outer = tuple(
        slice(max(part.start - BLOCK, 0), min(part.stop + BLOCK, n))
        for part, n in zip(
            tissue_box(tissue_of_blocks(blocks, threshold), image.shape[2:]),
            image.shape[2:],
            strict=True,
        )
    )
    box = trimmed_to_tissue(image, outer, threshold)
    box_blocks = block_means(image[(slice(None), slice(None)) + box])
    levels = tissue_levels(box_blocks)
    # Blocks half air at a crop's edge lower the image's threshold, and a plane at the
    # edge of the tissue may pass it only then: the planes are trimmed again with the
    # threshold of the box's own blocks, the one the crop has alone.
    retrimmed = trimmed_to_tissue(image, outer, levels.threshold)
    if retrimmed != box:
        box = retrimmed
        box_blocks = block_means(image[(slice(None), slice(None)) + box])
        levels = tissue_levels(box_blocks)
    return TissueRegion(
        box=box, levels=levels, tissue=tissue_of_blocks(box_blocks, levels.threshold)
    )


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


def near_tissue(
    tissue: np.ndarray, box: Sequence[slice], network_shape: Sequence[int], shape: Sequence[int]
) -> np.ndarray:
    """(D, H, W) bool on a grid of `shape` covering the same field of view as the
    network's grid of `network_shape` (nearest voxel centre): the voxels within one
    block of the tissue blocks of `box` (on the box's own block grid)."""
    reach = grown(np.pad(tissue, 1))  # the margin reaches a block beyond the box too
    indices: list[np.ndarray] = []
    for axis, (part, n_network, n) in enumerate(zip(box, network_shape, shape, strict=True)):
        centres = (np.arange(n) + 0.5) * (n_network / n)
        offset = np.minimum(centres.astype(np.int64), n_network - 1) - (part.start - BLOCK)
        block = np.where(offset >= 0, offset // BLOCK, reach.shape[axis])
        # Past either end of the reach: the padding below, which reads False.
        indices.append(np.minimum(block, reach.shape[axis]))
    return np.pad(reach, ((0, 1), (0, 1), (0, 1)))[np.ix_(*indices)]


def remove_small_pieces(
    mask: np.ndarray,
    min_voxels: int,
    edge_min_voxels: int | None = None,
    view: Sequence[slice] | None = None,
) -> np.ndarray:
    """`mask` (uint8 0/1) without its pieces (26-connectivity) under `min_voxels`
    voxels, in place. With `edge_min_voxels`, a piece touching a face of the array (or
    of `view`, the part of it that holds the tissue) is kept from that size on: it may
    go on outside the field of view, where the rest of it would make it large (a crop's
    cut vessel is a piece of a whole head's artery); a crop set in air has the faces
    of its tissue box where it had those of its array.
    The same labelling as `connectivity_metrics`, so that the cleanup and the metric
    count pieces alike (MONAI's RemoveSmallObjects would sort the whole volume first to
    find its values, seconds on a whole head)."""
    if min_voxels <= 1 or not mask.any():
        return mask
    labels, sizes = piece_sizes(mask)
    small = sizes < min_voxels
    if edge_min_voxels is not None:
        at_edge = np.zeros(len(sizes), dtype=bool)
        for part in [labels] if view is None else [labels, labels[tuple(view)]]:
            for axis in range(part.ndim):
                for index in (0, -1):
                    at_edge[np.unique(np.take(part, index, axis=axis))] = True
        small &= ~(at_edge & (sizes >= edge_min_voxels))
    small[0] = False
    mask[small[labels]] = 0
    return mask
