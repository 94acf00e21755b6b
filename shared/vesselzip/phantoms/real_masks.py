"""Real vessel masks to render phantoms around: reading and checking them, and
what their values mean.

Two kinds are understood:

* **binary** (IXI / VesselVerse / ds003949 style): 0 background, anything above 0
  a vessel, every visible vessel labelled. Only the every-vessel truth exists.
* **TopCoW** multi-class: the named arteries of the Circle of Willis, one class
  each (`TOPCOW_CLASSES`). Those classes are themselves named arteries, so the
  named-artery truth of such a mask is every labelled voxel, and its territory map
  follows `TOPCOW_TERRITORIES` into the generator's `TERRITORY_LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vesselzip.errors import InvalidVolumeError, VesselzipError
from vesselzip.volumes import Volume, read_volume

from .arteries import TERRITORY_LABELS

#: TopCoW multi-class labels (topcow24_eval constants; 13 and 14 are unused).
TOPCOW_CLASSES = {
    1: "BA",
    2: "R-PCA",
    3: "L-PCA",
    4: "R-ICA",
    5: "R-MCA",
    6: "L-ICA",
    7: "L-MCA",
    8: "R-Pcom",
    9: "L-Pcom",
    10: "Acom",
    11: "R-ACA",
    12: "L-ACA",
    15: "3rd-A2",
}
_TERRITORY = {name: number for number, name in TERRITORY_LABELS.items()}
#: TopCoW class -> generator territory (`TERRITORY_LABELS`). The basilar's top
#: BASILAR_TIP_MM become "basilar tip", the rest of it "other posterior circulation",
#: as in the whole-head phantoms. A TopCoW ICA is taken as supraclinoid: its ROI
#: starts around the clinoid and the masks carry no landmark to split it. The third
#: A2 (median artery of the corpus callosum) has no side and rises from the ACom:
#: it joins the ACom territory.
TOPCOW_TERRITORIES = {
    1: _TERRITORY["other posterior circulation"],  # BA below its tip
    2: _TERRITORY["other posterior circulation"],  # R-PCA (P1, P2)
    3: _TERRITORY["other posterior circulation"],  # L-PCA
    4: _TERRITORY["right supraclinoid ICA"],
    5: _TERRITORY["right MCA"],
    6: _TERRITORY["left supraclinoid ICA"],
    7: _TERRITORY["left MCA"],
    8: _TERRITORY["right PCom"],
    9: _TERRITORY["left PCom"],
    10: _TERRITORY["ACom"],
    11: _TERRITORY["right ACA"],
    12: _TERRITORY["left ACA"],
    15: _TERRITORY["ACom"],
}
BASILAR_TIP_MM = 6.0
#: How a mask's values are read: "auto" takes a mask as TopCoW when it holds more
#: than one class and every class is a TopCoW one, otherwise as binary.
MASK_CLASSES = ("auto", "topcow", "binary")
#: A vessel mask covers a few percent of a TOF volume; more than this is not one
#: (a brain or head mask, say), and would make the render slow.
MAX_VESSEL_FRACTION = 0.25
#: Voxels of the largest mask accepted, 512x512x512: rendering takes about 30 bytes
#: a voxel at its peak, so this is about 4 GiB.
MAX_MASK_VOXELS = 512**3
MIN_SIDE = 8


@dataclass
class RealMask:
    """A real vessel mask: its file, header and grid (`volume`), where the vessels are
    (bool, the file's voxel order) and, for a TopCoW mask, the classes (uint8)."""

    path: Path
    volume: Volume
    vessels: np.ndarray
    kind: str  # "topcow" or "binary"
    classes: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.name_of(self.path)

    @staticmethod
    def name_of(path: Path) -> str:
        """A mask's file name without .nii or .nii.gz: what its renders are named after."""
        return Path(path).name.split(".nii")[0]

    @property
    def spacing(self) -> tuple[float, float, float]:
        sizes = np.sqrt((self.volume.affine[:3, :3] ** 2).sum(axis=0))
        return (round(float(sizes[0]), 6), round(float(sizes[1]), 6), round(float(sizes[2]), 6))


def read_real_mask(path, classes: str = "auto") -> RealMask:
    """Read and check a vessel mask (.nii/.nii.gz, any supported dtype). Raises
    InvalidVolumeError, with a one-line message, for anything that is not a 3D
    mask with vessels in it."""
    if classes not in MASK_CLASSES:
        raise VesselzipError(f"classes must be one of {MASK_CLASSES}, got {classes!r}")
    path = Path(path)
    if path.is_dir():
        raise InvalidVolumeError(f"{path} is a directory, not a mask file")
    volume = read_volume(path, max_voxels=MAX_MASK_VOXELS)
    shape = volume.shape
    if min(shape) < MIN_SIDE:
        raise InvalidVolumeError(
            f"{path}: the mask's grid {shape} is too small to render; each side needs at "
            f"least {MIN_SIDE} voxels"
        )
    values = _values(volume)
    vessels = values > 0
    count = int(np.count_nonzero(vessels))
    if count == 0:
        raise InvalidVolumeError(f"{path}: the mask has no vessel voxels (no value above 0)")
    present = np.unique(values[vessels])
    fractional = present[present != np.round(present)]
    if fractional.size:
        raise InvalidVolumeError(
            f"{path}: the mask holds non-integer values (e.g. {float(fractional[0]):g}); "
            "a vessel mask is 0 for background and whole numbers above 0 for vessels"
        )
    if count > MAX_VESSEL_FRACTION * vessels.size:
        raise InvalidVolumeError(
            f"{path}: {count / vessels.size:.0%} of the voxels are above 0; a vessel mask "
            f"fills a few percent of a TOF-MRA (at most {MAX_VESSEL_FRACTION:.0%} accepted)"
        )
    unknown = sorted(int(v) for v in present if int(v) not in TOPCOW_CLASSES)
    if classes == "topcow" and unknown:
        raise InvalidVolumeError(
            f"{path}: values {unknown[:5]} are not TopCoW classes "
            f"({', '.join(f'{k} {v}' for k, v in TOPCOW_CLASSES.items())})"
        )
    kind = "binary"
    if classes == "topcow" or (classes == "auto" and len(present) > 1 and not unknown):
        kind = "topcow"
    return RealMask(
        path=path,
        volume=volume,
        vessels=vessels,
        kind=kind,
        classes=values.astype(np.uint8) if kind == "topcow" else None,
    )


def named_territories(mask: RealMask) -> np.ndarray | None:
    """The territory map (uint8, `TERRITORY_LABELS`) of a TopCoW mask, None for a
    binary one. Every labelled voxel gets a territory, so `territories > 0` is the
    mask's vessels."""
    if mask.classes is None:
        return None
    lookup = np.zeros(256, dtype=np.uint8)
    for topcow, territory in TOPCOW_TERRITORIES.items():
        lookup[topcow] = territory
    territories = lookup[mask.classes]
    basilar = np.argwhere(mask.classes == 1)
    if len(basilar):
        affine = mask.volume.affine
        height = basilar @ affine[2, :3] + affine[2, 3]  # superior, in mm
        tip = basilar[height >= height.max() - BASILAR_TIP_MM]
        territories[tuple(tip.T)] = _TERRITORY["basilar tip"]
    return territories


def _values(volume: Volume) -> np.ndarray:
    """The mask's values as stored, or scaled when the header scales them."""
    slope, intercept = volume.header.get_slope_inter()
    if slope in (None, 1.0) and intercept in (None, 0.0):
        return volume.data
    return volume.data * (1.0 if slope is None else slope) + (intercept or 0.0)
