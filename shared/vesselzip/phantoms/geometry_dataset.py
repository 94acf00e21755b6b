"""Phantoms rendered around real vessel masks, written in the generator's dataset
layout (decathlon dataset.json, imagesTr/, labelsTr/, territoriesTr/), so that
`vesselzip train` and `vesselzip crop-dataset` take them as they take phantoms.

Every file is written on its mask's grid with the mask's own header: the same
shape, affine, qform and sform (codes included), so image, label and mask overlay
voxel for voxel. The label is the mask's vessels, unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vesselzip.errors import VesselzipError
from vesselzip.volumes import Volume, write_volume

from .around_mask import render_around_mask
from .dataset import LABEL_SETS, make_dataset_dirs, write_dataset_json
from .phantom import GENERATOR_VERSION, Phantom
from .real_masks import TOPCOW_CLASSES, TOPCOW_TERRITORIES, RealMask, read_real_mask

#: Bump when the same mask and seed would give a different volume.
RENDERER_VERSION = "1"

#: What each label file of such a dataset holds (recorded in dataset.json).
GEOMETRY_LABEL_SETS: dict[str, dict[str, Any]] = {
    "label": {
        "folder": "labelsTr",
        "default": True,
        "description": (
            "uint8 0/1: the given mask's voxels above 0, unchanged. They are every vessel "
            "in the image (nothing else is drawn). For a TopCoW mask they are also the "
            "named arteries (each entry's geometry.named_arteries says which)."
        ),
    },
    "territories": {
        "folder": "territoriesTr",
        "description": (
            "uint8 multi-class map of the named arterial territories, TopCoW masks only: "
            "the TopCoW classes mapped by from_topcow (the basilar's top 6 mm to the "
            "basilar tip). Binary masks have no named-artery truth and no such file."
        ),
        "classes": LABEL_SETS["territories"]["classes"],
        "from_topcow": {
            f"{number} {name}": LABEL_SETS["territories"]["classes"][
                str(TOPCOW_TERRITORIES[number])
            ]
            for number, name in TOPCOW_CLASSES.items()
        },
    },
}


def write_geometry_dataset(
    masks: Sequence[str | Path],
    outdir,
    n: int = 1,
    *,
    seed: int = 0,
    classes: str = "auto",
    progress: Callable[[int, Phantom], None] | None = None,
) -> Path:
    """Render `n` volumes around each mask and write them as a dataset; return
    dataset.json. Volume v (mask after mask, `n` each) uses seed `seed + v` and is
    named after its mask: imagesTr/<mask name>_<i:03d>.nii.gz. Every mask is read
    and checked before anything is written. `progress`, if given, is called with
    (v, phantom) after each volume is written."""
    if n < 1:
        raise VesselzipError(f"n must be at least 1, got {n}")
    paths = [Path(p) for p in masks]
    if not paths:
        raise VesselzipError("no mask given")
    names = [RealMask.name_of(p) for p in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VesselzipError(f"two masks share the name {repeated[0]}; rename one")
    # Every mask is read and checked before any file is written; a single mask is
    # kept rather than read twice (a whole head takes a second or two).
    kept = [read_real_mask(paths[0], classes)] if len(paths) == 1 else []
    for path in paths[len(kept) :]:
        read_real_mask(path, classes)
    outdir = Path(outdir)
    make_dataset_dirs(outdir)

    training = []
    for index, path in enumerate(paths):
        mask = kept.pop() if kept else read_real_mask(path, classes)
        like = _grid_of(mask)
        for i in range(n):
            volume = index * n + i
            phantom = render_around_mask(mask, seed + volume)
            name = f"{mask.name}_{i:03d}.nii.gz"
            write_volume(outdir / "imagesTr" / name, phantom.image, like)
            write_volume(outdir / "labelsTr" / name, phantom.mask, like)
            entry: dict[str, Any] = {
                "image": f"./imagesTr/{name}",
                "label": f"./labelsTr/{name}",
            }
            if phantom.territories is not None:
                (outdir / "territoriesTr").mkdir(exist_ok=True)
                write_volume(outdir / "territoriesTr" / name, phantom.territories, like)
                entry["territories"] = f"./territoriesTr/{name}"
            entry.update(
                seed=phantom.seed,
                spacing=list(phantom.spacing),
                field_of_view=phantom.style["field_of_view"],
                # Not a file path string, so crop-dataset does not take it for a label.
                geometry={
                    "mask": str(path.resolve()),
                    "classes": mask.kind,
                    "named_arteries": mask.kind == "topcow",
                },
            )
            training.append(entry)
            if progress is not None:
                progress(volume, phantom)
        del mask, like

    return write_dataset_json(
        outdir,
        name="vesselzip-geometry-phantoms",
        description=(
            "TOF-MRA-like volumes rendered around real vessel masks, on the masks' grids; "
            "the label is the mask"
        ),
        label_sets=GEOMETRY_LABEL_SETS,
        training=training,
        generator={
            "name": "vesselzip.phantoms",
            "version": GENERATOR_VERSION,
            "renderer": "around-mask",
            "renderer_version": RENDERER_VERSION,
            "seed": seed,
            "seeds": [seed + v for v in range(len(training))],
            "per_mask": n,
            "masks": [str(p.resolve()) for p in paths],
            "classes": classes,
        },
    )


def _grid_of(mask: RealMask) -> Volume:
    """What the written files copy from the mask: its header and affine, with the
    intensity scaling, display range and intent of a mask cleared."""
    header = mask.volume.header.copy()
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"] = header["cal_max"] = 0.0
    header.set_intent("none", (), name="")
    # write_volume reads only the shape and dtype of `data`: a view of one zero will do.
    empty = np.broadcast_to(np.zeros((), dtype=np.float64), mask.volume.shape)
    return Volume(data=empty, affine=mask.volume.affine, header=header)
