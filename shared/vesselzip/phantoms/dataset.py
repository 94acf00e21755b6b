"""Phantoms written as a MONAI decathlon-style dataset (NIfTI files and
dataset.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vesselzip.errors import VesselzipError

from .arteries import TERRITORY_LABELS
from .generate import make_phantom
from .phantom import DEFAULT_SHAPE, GENERATOR_VERSION, check_shape

#: What each label file holds, recorded in dataset.json.
LABEL_SETS: dict[str, dict[str, Any]] = {
    "label": {
        "folder": "labelsTr",
        "default": True,
        "description": (
            "uint8 0/1, the default truth. Whole heads: the binary union of the "
            "labelled named arterial territories (the paper's label > 0); crops and "
            "small heads: every vessel."
        ),
    },
    "territories": {
        "folder": "territoriesTr",
        "description": "uint8 multi-class map of the named arterial territories (whole heads)",
        "classes": {"0": "background", **{str(k): v for k, v in TERRITORY_LABELS.items()}},
    },
    "vessels": {
        "folder": "vesselsTr",
        "description": (
            "uint8 0/1, every artery including unlabelled cortical branches (whole "
            "heads; for crops and small heads the label already is every vessel)"
        ),
    },
}


def write_phantom_dataset(
    outdir,
    n: int,
    *,
    seed: int = 0,
    shape=DEFAULT_SHAPE,
    spacing=None,
    field_of_view: str | None = None,
    progress=None,
) -> Path:
    """Write `n` phantoms as a MONAI decathlon-style dataset and return dataset.json.

    Volume i is `make_phantom(seed + i, shape, spacing, field_of_view=...)`, saved
    as imagesTr/phantom_{i:03d}.nii.gz (int16) and labelsTr/phantom_{i:03d}.nii.gz
    (uint8, the default truth); whole heads also get territoriesTr/ (multi-class)
    and vesselsTr/ (every vessel). `spacing=None` (the default) lets each volume
    draw its own spacing so the set is varied. `progress`, if given, is called
    with (i, phantom) after each volume is written.
    """
    if n < 1:
        raise VesselzipError(f"n must be at least 1, got {n}")
    shape = check_shape(shape)
    outdir = Path(outdir)
    make_dataset_dirs(outdir)
    images_dir = outdir / "imagesTr"
    labels_dir = outdir / "labelsTr"

    training = []
    for i in range(n):
        phantom = make_phantom(seed + i, shape, spacing, field_of_view=field_of_view)
        name = f"phantom_{i:03d}.nii.gz"
        _save_nifti(phantom.image, phantom.affine, images_dir / name)
        _save_nifti(phantom.mask, phantom.affine, labels_dir / name)
        entry = {
            "image": f"./imagesTr/{name}",
            "label": f"./labelsTr/{name}",
            "seed": phantom.seed,
            "spacing": list(phantom.spacing),
            "field_of_view": phantom.style["field_of_view"],
        }
        if phantom.territories is not None and phantom.vessels is not None:
            for key, array in (("territories", phantom.territories), ("vessels", phantom.vessels)):
                folder = outdir / LABEL_SETS[key]["folder"]
                folder.mkdir(exist_ok=True)
                _save_nifti(array, phantom.affine, folder / name)
                entry[key] = f"./{folder.name}/{name}"
            entry["circle_of_willis"] = phantom.style["circle_of_willis"]["summary"]
        training.append(entry)
        if progress is not None:
            progress(i, phantom)

    return write_dataset_json(
        outdir,
        name="vesselzip-phantoms",
        description="Synthetic TOF-MRA-like cerebrovascular volumes with exact vessel masks",
        label_sets=LABEL_SETS,
        training=training,
        generator={
            "name": "vesselzip.phantoms",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "seeds": [seed + i for i in range(n)],
            "shape": list(shape),
            "spacing": None if spacing is None else [float(s) for s in spacing],
            "field_of_view": field_of_view,
        },
    )


def make_dataset_dirs(outdir: Path) -> None:
    """Create OUTDIR/imagesTr and OUTDIR/labelsTr (and OUTDIR), or say why not."""
    if outdir.exists() and not outdir.is_dir():
        raise VesselzipError(f"{outdir} exists and is not a directory")
    try:
        for folder in ("imagesTr", "labelsTr"):
            (outdir / folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VesselzipError(f"cannot create {outdir}: {exc.strerror}") from exc


def write_dataset_json(
    outdir: Path, *, name: str, description: str, label_sets: dict, training: list, generator: dict
) -> Path:
    """OUTDIR/dataset.json in the Medical Segmentation Decathlon layout, with the
    `label_sets` and `generator` blocks of this package."""
    dataset = {
        "name": name,
        "description": description,
        "reference": "vesselzip.phantoms",
        "tensorImageSize": "3D",
        "modality": {"0": "MRA"},
        "labels": {"0": "background", "1": "vessel"},
        "label_sets": label_sets,
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
        "generator": generator,
    }
    path = outdir / "dataset.json"
    path.write_text(json.dumps(dataset, indent=2) + "\n")
    return path


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)  # scanner
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    img.header.set_data_dtype(array.dtype)
    nib.save(img, path)
