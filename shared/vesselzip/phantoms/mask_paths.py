"""How far the blood has travelled at each voxel of a real vessel mask.

A TOF signal fades with the path the blood has run since it entered the slab (see
`inflow`). The generator's own tubes carry that path; a real mask is only voxels,
with no tree. So the path is measured along the mask itself: the shortest route
through vessel voxels (26-neighbours, steps as long as the distance between the
voxel centres) from where arteries enter, through the inferior face of the slab.

Entry points are the vessel voxels within ENTRY_BAND_MM of the inferior face and,
in every connected piece of the mask, the voxels within ENTRY_BAND_MM of its own
lowest point. Each starts with a path equal to its height above the inferior face:
a piece that reaches the face starts fresh there, and a piece cut off from it (a
branch the annotation did not join up, the far side of a gap) starts at least as
far along as the straight climb to its lowest point, a lower bound on the real
path. Axis 2 of the arrays here is the slab axis, index 0 its inferior face.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

ENTRY_BAND_MM = 3.0
#: One of each pair of opposite 26-neighbour offsets: enough for an undirected graph.
HALF_NEIGHBOURHOOD = np.array(
    [o for o in itertools.product((-1, 0, 1), repeat=3) if o > (0, 0, 0)], dtype=np.int64
)


def vessel_voxels(vessels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (sorted) and (n, 3) voxel indices of the vessel voxels."""
    flat = np.flatnonzero(vessels)
    return flat, np.column_stack(np.unravel_index(flat, vessels.shape))


def vessel_graph(flat, coords, shape, spacing) -> sparse.csr_matrix:
    """The 26-neighbour graph of the vessel voxels (one edge per neighbouring pair),
    weighted by the distance between their centres in mm."""
    rows, cols, weights = [], [], []
    for offset in HALF_NEIGHBOURHOOD:
        neighbour = coords + offset
        inside = np.all((neighbour >= 0) & (neighbour < np.asarray(shape)), axis=1)
        source = np.flatnonzero(inside)
        target_flat = np.ravel_multi_index(tuple(neighbour[inside].T), shape)
        target = np.minimum(np.searchsorted(flat, target_flat), len(flat) - 1)
        hit = flat[target] == target_flat
        rows.append(source[hit])
        cols.append(target[hit])
        weights.append(np.full(int(hit.sum()), float(np.linalg.norm(offset * spacing))))
    n = len(flat)
    return sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


def inflow_paths(coords, graph, spacing, entry_band_mm: float = ENTRY_BAND_MM) -> np.ndarray:
    """Path length (mm, float64) from the inflow to each vessel voxel, as the module
    describes; `coords` and `graph` come from `vessel_voxels` and `vessel_graph`."""
    n = len(coords)
    height = coords[:, 2] * float(spacing[2])
    pieces, piece = csgraph.connected_components(graph, directed=False)
    lowest = np.full(pieces, np.inf)
    np.minimum.at(lowest, piece, height)
    entry = np.flatnonzero((height <= entry_band_mm) | (height <= lowest[piece] + entry_band_mm))
    # One extra node feeds every entry voxel through an edge as long as its height,
    # so a single search from it gives each voxel its best entry. (An edge of
    # weight 0 would not count as an edge: 1 um is added.)
    feed = sparse.csr_matrix(
        (height[entry] + 1e-3, (np.full(len(entry), n), entry)), shape=(n + 1, n + 1)
    )
    whole = sparse.bmat([[graph, None], [None, sparse.csr_matrix((1, 1))]], format="csr") + feed
    return csgraph.dijkstra(whole, directed=False, indices=n)[:n]
