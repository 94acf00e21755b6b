"""The phantom record, the generator's constants and the voxel grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vesselzip.errors import VesselzipError

#: Bump when the same seed would give different volumes.
GENERATOR_VERSION = "4"
DEFAULT_SHAPE = (128, 128, 96)
#: Typical TOF-MRA voxel: fine in-plane, thicker slices (the paper's model
#: resamples to 0.3542 mm isotropic).
DEFAULT_SPACING = (0.35, 0.35, 0.5)
#: "crop": tissue fills the volume; "head": a small head in air; "whole-head": an
#: anatomical head in a clinical axial slab.
FIELDS_OF_VIEW = ("crop", "head", "whole-head")
INT16_MAX = 32767


@dataclass
class Phantom:
    image: np.ndarray  # int16, (x, y, z)
    #: uint8 0/1, the default truth: every vessel (crop, head) or the union of the
    #: labelled named arteries (whole head, the paper's way).
    mask: np.ndarray
    affine: np.ndarray  # 4x4 float64, voxel -> RAS mm
    spacing: tuple[float, float, float]  # mm
    seed: int = 0
    #: The appearance drawn for this seed (JSON-friendly), for the record.
    style: dict = field(default_factory=dict)
    #: The tubes, one row each: start xyz, end xyz (mm from the first voxel's
    #: centre), start/end radius (mm), start/end brightness. `vessel_mask` turns
    #: them (or an altered copy) back into `vessels`.
    segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 10)))
    #: uint8 0/1, the exact mask of every vessel (equal to `mask` for crop/head).
    vessels: np.ndarray | None = None
    #: uint8 map of the named arterial territories (`TERRITORY_LABELS`), whole
    #: heads only.
    territories: np.ndarray | None = None
    #: Territory class of each row of `segments` (0 = unlabelled), whole heads only.
    segment_territories: np.ndarray | None = None


def phantom_affine(shape, spacing) -> np.ndarray:
    """Diagonal voxel-to-RAS affine (i -> R, j -> A, k -> S) centred on the volume."""
    spacing = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing
    return affine


def check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise VesselzipError(f"shape must be three sizes of at least 8 voxels, got {shape}")
    return shape


def plain_json(value):
    """A style record as plain JSON types (no numpy scalars or arrays)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value)
    return value
