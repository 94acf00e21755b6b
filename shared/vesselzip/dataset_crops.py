"""Training crops cut from a decathlon-style dataset: many patches of whole heads fit in
memory where the whole heads do not, and a network trained on them sees air, scalp,
skull and brain around the arteries in the proportions of the crops asked for.

Every label set an entry lists (``label`` and any other key whose file has the image's
shape, such as ``territories`` or ``vessels`` of whole-head phantoms) is cut at the same
place, so the crops keep the source's label sets side by side.

A Circle-of-Willis crop (`cow_margin_mm`) is cut the way TopCoW cuts its region of
interest from a whole-head scan: one box per volume around the circle's own arteries
(the supraclinoid ICAs, ACom, the PComs and the basilar tip, from the entry's
`territories`) and a margin, so its size follows the head."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from vesselzip.errors import VesselzipError
from vesselzip.phantoms.arteries import TERRITORY_LABELS

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


#: The arteries of the circle itself, whose box a Circle-of-Willis crop is.
COW_TERRITORIES = (
    "left supraclinoid ICA",
    "right supraclinoid ICA",
    "ACom",
    "left PCom",
    "right PCom",
    "basilar tip",
)


def cow_window(
    territories: np.ndarray, zooms: tuple[float, ...], margin_mm: float
) -> tuple[slice, slice, slice]:
    """The box of the circle's own arteries in a territory map, grown by `margin_mm`
    on every side (clipped to the volume)."""
    numbers = [n for n, name in TERRITORY_LABELS.items() if name in COW_TERRITORIES]
    found = np.argwhere(np.isin(territories, numbers))
    if not found.size:
        raise VesselzipError("no Circle of Willis artery is labelled in its territories")
    margin = np.ceil(margin_mm / np.asarray(zooms[:3], dtype=np.float64)).astype(int)
    low = np.maximum(found.min(axis=0) - margin, 0)
    high = np.minimum(found.max(axis=0) + 1 + margin, territories.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))  # type: ignore[return-value]


def write_crop_dataset(
    dataset_json: Path,
    outdir: Path,
    *,
    size: tuple[int, int, int] | None = None,
    per_volume: int = 1,
    seed: int = 0,
    on_label: float = 0.5,
    cow_margin_mm: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Cut `per_volume` crops of `size` voxels from every training volume of
    `dataset_json` into `outdir` (imagesTr/, one folder per label set, dataset.json);
    with `cow_margin_mm`, one Circle-of-Willis crop per volume instead (`cow_window`;
    `size`, `per_volume` and `on_label` do not apply). Returns the new dataset.json.
    Same arguments, same crops."""
    dataset_json = Path(dataset_json)
    if not dataset_json.is_file():
        raise VesselzipError(f"dataset file not found: {dataset_json}")
    if per_volume < 1:
        raise VesselzipError(f"per_volume must be at least 1, got {per_volume}")
    if size is None and cow_margin_mm is None:
        raise VesselzipError("give a crop size, or a margin for Circle-of-Willis crops")
    if not 0.0 <= on_label <= 1.0:
        raise VesselzipError(f"on_label must be between 0 and 1, got {on_label}")
    source = json.loads(dataset_json.read_text())
    entries = source.get("training") or []
    if not entries:
        raise VesselzipError(f"{dataset_json} lists no training volumes")
    outdir = Path(outdir)
    rng = np.random.default_rng(seed)

    def windows(index: int, label: np.ndarray, files: dict, zooms) -> list[tuple[slice, ...]]:
        if cow_margin_mm is None:
            assert size is not None  # checked above
            return [
                tuple(slice(o, o + s) for o, s in zip(offset, size, strict=True))
                for offset in crop_offsets(rng, label, size, per_volume, on_label)
            ]
        if "territories" not in files:
            raise VesselzipError(
                f"training entry {index} has no territories to find its Circle of Willis "
                "in (whole-head phantoms and TopCoW renders have them)"
            )
        return [cow_window(files["territories"], zooms, cow_margin_mm)]

    training = []
    for index, entry in enumerate(entries):
        training += _crop_entry(dataset_json.parent, entry, outdir, index, windows)
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
            f"{per_volume} crops of {'x'.join(map(str, size or ()))} voxels from each training volume "
            f"of {dataset_json}, {on_label:.0%} centred on a labelled voxel, seed {seed}"
            if cow_margin_mm is None
            else f"the Circle of Willis of each training volume of {dataset_json}, with a "
            f"margin of {cow_margin_mm:g} mm"
        ),
        numTraining=len(training),
        training=training,
        crops={
            "source": str(dataset_json.resolve()),
            "size": list(size) if size else None,
            "per_volume": per_volume,
            "seed": seed,
            "on_label": on_label,
            "cow_margin_mm": cow_margin_mm,
        },
    )
    target = outdir / "dataset.json"
    target.write_text(json.dumps(dataset, indent=2) + "\n")
    return target


def _crop_entry(base, entry, outdir, index, windows) -> list[dict]:
    """Cut `windows(index, label, label arrays by key, voxel sizes)` out of one entry."""
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
    for number, window in enumerate(windows(index, label, arrays, image.header.get_zooms())):
        offset = tuple(w.start for w in window)
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
