"""Training crops cut from a decathlon-style dataset: many patches of whole heads fit in
memory where the whole heads do not, and a network trained on them sees air, scalp,
skull and brain around the arteries in the proportions of the crops asked for.

Every label set an entry lists (``label`` and any other key whose file has the image's
shape, such as ``territories`` or ``vessels`` of whole-head phantoms) is cut at the same
place, so the crops keep the source's label sets side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from vesselzip.errors import VesselzipError

# Keys of a dataset entry that are not files to cut.
_NOT_FILES = {"image", "seed", "spacing", "field_of_view", "geometry", "source", "offset"}
# Facts about the source volume that hold for its crops too (`geometry`: the real
# mask a volume was rendered around, and which truths it has).
_KEPT = ("seed", "spacing", "field_of_view", "geometry")


def crop_offsets(
    rng: np.random.Generator,
    label: np.ndarray,
    size: tuple[int, int, int],
    count: int,
    on_label: float,
) -> list[tuple[int, int, int]]:
    """`count` crop origins: with probability `on_label` centred (±a quarter of the
    crop) on a random labelled voxel, otherwise anywhere in the volume."""
    shape = np.asarray(label.shape)
    extent = np.asarray(size)
    if np.any(extent > shape):
        raise VesselzipError(f"crop size {tuple(size)} is larger than the volume {label.shape}")
    highest = shape - extent
    labelled = np.flatnonzero(label)
    offsets: list[tuple[int, int, int]] = []
    for _ in range(count):
        if labelled.size and rng.random() < on_label:
            centre = np.array(np.unravel_index(rng.choice(labelled), label.shape))
            centre += rng.integers(-(extent // 4), extent // 4 + 1)
            origin = centre - extent // 2
        else:
            origin = rng.integers(0, highest + 1)
        x, y, z = (int(v) for v in np.clip(origin, 0, highest))
        offsets.append((x, y, z))
    return offsets


def write_crop_dataset(
    dataset_json: Path,
    outdir: Path,
    *,
    size: tuple[int, int, int],
    per_volume: int,
    seed: int = 0,
    on_label: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Cut `per_volume` crops of `size` voxels from every training volume of
    `dataset_json` into `outdir` (imagesTr/, one folder per label set, dataset.json).
    Returns the new dataset.json. Same arguments, same crops."""
    dataset_json = Path(dataset_json)
    if not dataset_json.is_file():
        raise VesselzipError(f"dataset file not found: {dataset_json}")
    if per_volume < 1:
        raise VesselzipError(f"per_volume must be at least 1, got {per_volume}")
    if not 0.0 <= on_label <= 1.0:
        raise VesselzipError(f"on_label must be between 0 and 1, got {on_label}")
    source = json.loads(dataset_json.read_text())
    entries = source.get("training") or []
    if not entries:
        raise VesselzipError(f"{dataset_json} lists no training volumes")
    outdir = Path(outdir)
    rng = np.random.default_rng(seed)
    training = []
    for index, entry in enumerate(entries):
        training += _crop_entry(
            dataset_json.parent, entry, outdir, index, rng, size, per_volume, on_label
        )
        if progress is not None:
            progress(index)
    dataset = {
        key: value
        for key, value in source.items()
        if key not in ("training", "validation", "test", "numTraining", "generator")
    }
    dataset.update(
        name=f"{source.get('name', 'dataset')} crops",
        description=(
            f"{per_volume} crops of {'x'.join(map(str, size))} voxels from each training volume "
            f"of {dataset_json}, {on_label:.0%} centred on a labelled voxel, seed {seed}"
        ),
        numTraining=len(training),
        training=training,
        crops={
            "source": str(dataset_json.resolve()),
            "size": list(size),
            "per_volume": per_volume,
            "seed": seed,
            "on_label": on_label,
        },
    )
    target = outdir / "dataset.json"
    target.write_text(json.dumps(dataset, indent=2) + "\n")
    return target


def _crop_entry(base, entry, outdir, index, rng, size, per_volume, on_label) -> list[dict]:
    image = _load(base / entry["image"])
    files = {
        key: _load(base / value)
        for key, value in entry.items()
        if key not in _NOT_FILES and isinstance(value, str) and ".nii" in value
    }
    if "label" not in files:
        raise VesselzipError(f"training entry {index} has no label")
    for key, label_image in files.items():
        if label_image.shape != image.shape:
            raise VesselzipError(
                f"training entry {index}: {key} has shape {label_image.shape}, "
                f"the image {image.shape}"
            )
    arrays = {key: _raw_voxels(label_image) for key, label_image in files.items()}
    voxels = _raw_voxels(image)
    label = arrays["label"] > 0
    stem = Path(entry["image"]).name.split(".nii")[0]
    cropped = []
    for number, offset in enumerate(crop_offsets(rng, label, size, per_volume, on_label)):
        window = tuple(slice(o, o + s) for o, s in zip(offset, size, strict=True))
        name = f"{stem}_crop{number:02d}.nii.gz"
        crop_entry: dict = {"image": f"./imagesTr/{name}"}
        _save_crop(image, voxels[window], offset, outdir / "imagesTr" / name)
        for key, label_image in files.items():
            folder = "labelsTr" if key == "label" else f"{key}Tr"
            _save_crop(label_image, arrays[key][window], offset, outdir / folder / name)
            crop_entry[key] = f"./{folder}/{name}"
        crop_entry.update({key: entry[key] for key in _KEPT if key in entry})
        crop_entry.update(source=entry["image"], offset=list(offset))
        cropped.append(crop_entry)
    return cropped


def _load(path: Path) -> nib.Nifti1Image:
    image = nib.load(path)
    if not isinstance(image, nib.Nifti1Image):
        raise VesselzipError(f"{path} is not a NIfTI-1 image")
    return image


def _raw_voxels(image) -> np.ndarray:
    """The voxels, read once (a gzip file is read whole for any slice): the stored
    values when the header does not scale them, else the scaled values in float32."""
    slope, inter = image.header.get_slope_inter()
    if slope in (None, 1.0) and inter in (None, 0.0):
        return np.asanyarray(image.dataobj.get_unscaled())
    return image.get_fdata(dtype=np.float32)


def _save_crop(image, data: np.ndarray, offset, path: Path) -> None:
    """The crop with the source's header and an affine moved to its first voxel."""
    affine = image.affine.copy()
    affine[:3, 3] = (
        image.affine[:3, :3] @ np.asarray(offset, dtype=np.float64) + image.affine[:3, 3]
    )
    header = image.header.copy()
    header.set_data_dtype(data.dtype)
    crop = nib.Nifti1Image(np.ascontiguousarray(data), affine, header)
    crop.set_qform(affine, code=int(image.header["qform_code"]) or 1)
    crop.set_sform(affine, code=int(image.header["sform_code"]) or 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(crop, path)
