"""How connected a binary mask is. A vessel tree is a few large pieces; a segmentation
that breaks vessels apart or sprinkles specks over the tissue is many small ones, which
overlap scores such as Dice hardly notice."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Pieces smaller than this many voxels count as specks.
SPECK_VOXELS = 50


def piece_sizes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label the pieces of `mask` (voxels > 0) with 26-connectivity (faces, edges and
    corners touch) and count their voxels: (labels int32, sizes), sizes[0] being the
    background."""
    structure = np.ones((3,) * np.ndim(mask), dtype=bool)
    labels, _count = ndimage.label(np.asarray(mask) > 0, structure=structure)
    return labels, np.bincount(labels.ravel())


def connectivity_metrics(mask: np.ndarray, speck_voxels: int = SPECK_VOXELS) -> dict:
    """Number of pieces (26-connectivity), the share of the mask's voxels in pieces
    under `speck_voxels`, and the share in the largest piece, as a JSON-safe dict.
    An empty mask has no pieces and both shares 0."""
    _labels, sizes = piece_sizes(mask)
    pieces = sizes[1:]
    voxels = int(pieces.sum())
    return {
        "pieces": int(pieces.size),
        "speck_share": float(pieces[pieces < speck_voxels].sum() / voxels) if voxels else 0.0,
        "largest_share": float(pieces.max() / voxels) if voxels else 0.0,
        "voxels": voxels,
        "speck_voxels": int(speck_voxels),
    }
