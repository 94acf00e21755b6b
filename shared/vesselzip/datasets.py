"""Datasets: volumes (each with an optional truth mask) uploaded once and referenced
by id, so that many jobs (a sweep) can use them without uploading them again.

Everything lives in the blob store, under ``datasets/<dataset id>/``::

    dataset.json                the dataset: name, owner, creation time
    volumes/<volume id>.json    one file per volume, so concurrent uploads never
                                overwrite each other's entry
    images/<volume id>.nii[.gz] the image exactly as uploaded (validated)
    truths/<volume id>.nii.gz   the truth as a compact uint8 0/1 mask

Ownership checks are the caller's business: these functions only store and read."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from vesselzip.errors import NotFoundError, VesselzipError
from vesselzip.store import BlobStore

_VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


class DatasetConflictError(VesselzipError):
    """A volume name already taken in the dataset."""

    http_status = 409


class VolumeEntry(BaseModel):
    id: str
    filename: str | None = None
    image_key: str
    truth_key: str | None = None
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    raw_nbytes: int = Field(description="Voxel bytes of the image in its stored dtype.")
    image_nbytes: int = Field(description="Bytes of the uploaded file.")
    image_sha256: str
    truth_sha256: str | None = None
    created_at: float = Field(default_factory=time.time)

    @property
    def fingerprint(self) -> str:
        """The volume's id and the digests of its files."""
        return f"{self.id}:{self.image_sha256}:{self.truth_sha256 or ''}"


class DatasetEntry(BaseModel):
    id: str
    name: str | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    created_at: float = Field(default_factory=time.time)


class Dataset(DatasetEntry):
    volumes: list[VolumeEntry] = Field(default_factory=list)


def _prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def _entry_key(dataset_id: str) -> str:
    return f"{_prefix(dataset_id)}/dataset.json"


def _volume_key(dataset_id: str, volume_id: str) -> str:
    return f"{_prefix(dataset_id)}/volumes/{volume_id}.json"


def dataset_id_for(owner: str | None, idempotency_key: str) -> str:
    """The id a dataset created with this idempotency key gets (per owner)."""
    return hashlib.sha256(f"dataset\0{owner or ''}\0{idempotency_key}".encode()).hexdigest()[:32]


def create_dataset(
    store: BlobStore,
    *,
    name: str | None,
    owner: str | None,
    idempotency_key: str | None = None,
) -> tuple[Dataset, bool]:
    """A new, empty dataset; or, for an idempotency key seen before, the dataset it
    created. Returns (dataset, created)."""
    if idempotency_key:
        dataset_id = dataset_id_for(owner, idempotency_key)
        if store.exists(_entry_key(dataset_id)):
            return load_dataset(store, dataset_id), False
    else:
        dataset_id = uuid.uuid4().hex
    entry = DatasetEntry(id=dataset_id, name=name, owner=owner, idempotency_key=idempotency_key)
    store.put_json(_entry_key(dataset_id), entry.model_dump(mode="json"))
    return Dataset(**entry.model_dump()), True


def load_dataset(store: BlobStore, dataset_id: str) -> Dataset:
    try:
        entry = DatasetEntry.model_validate(store.get_json(_entry_key(dataset_id)))
    except NotFoundError:
        raise NotFoundError(f"no dataset {dataset_id}") from None
    volumes = [
        VolumeEntry.model_validate(store.get_json(key))
        for key in store.keys(f"{_prefix(dataset_id)}/volumes")
        if key.endswith(".json")
    ]
    volumes.sort(key=lambda v: (v.created_at, v.id))
    return Dataset(**entry.model_dump(), volumes=volumes)


def list_datasets(store: BlobStore) -> list[DatasetEntry]:
    """Every stored dataset, oldest first (scans the store)."""
    entries = []
    for key in store.keys("datasets"):
        if key.count("/") == 2 and key.endswith("/dataset.json"):
            entries.append(DatasetEntry.model_validate(store.get_json(key)))
    return sorted(entries, key=lambda e: (e.created_at, e.id))


def volume_id_for(name: str | None, filename: str | None) -> str:
    """The volume id: the given name, else the file name without .nii/.nii.gz, with
    characters outside [A-Za-z0-9._-] replaced; a random one when neither is given."""
    text = name or (_NIFTI_SUFFIX.sub("", Path(filename).name) if filename else "")
    text = re.sub(r"[^A-Za-z0-9._-]", "_", text.strip())[:100].lstrip("._-")
    if not text:
        return f"volume-{uuid.uuid4().hex[:12]}"
    if not _VOLUME_ID.match(text):
        raise VesselzipError(f"invalid volume name {name or filename!r}")
    return text


def add_volume(
    store: BlobStore,
    dataset_id: str,
    image_path: Path,
    truth_path: Path | None,
    *,
    name: str | None = None,
    filename: str | None = None,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
) -> VolumeEntry:
    """Validate an image (and its truth, on the same grid) and store both.

    Raises InvalidVolumeError / VolumeTooLargeError for bad files, DatasetConflictError
    when the volume id is taken, NotFoundError when the dataset does not exist."""
    from vesselzip.jobs import prepare_truth
    from vesselzip.volumes import read_volume

    if not store.exists(_entry_key(dataset_id)):
        raise NotFoundError(f"no dataset {dataset_id}")
    volume_id = volume_id_for(name, filename)
    entry_key = _volume_key(dataset_id, volume_id)
    if store.exists(entry_key):
        raise DatasetConflictError(f"dataset {dataset_id} already has a volume {volume_id!r}")

    image = read_volume(
        image_path,
        max_voxels=max_voxels,
        max_volume_bytes=max_volume_bytes,
        label=f"image ({Path(filename).name})" if filename else "image",
    )
    truth_bytes = None
    if truth_path is not None:
        truth_bytes = prepare_truth(
            truth_path,
            image.shape,
            image.affine,
            max_voxels=max_voxels,
            max_volume_bytes=max_volume_bytes,
        )
    image_bytes = image_path.read_bytes()
    suffix = ".nii.gz" if image_bytes[:2] == b"\x1f\x8b" else ".nii"
    image_key = f"{_prefix(dataset_id)}/images/{volume_id}{suffix}"
    truth_key = f"{_prefix(dataset_id)}/truths/{volume_id}.nii.gz" if truth_bytes else None
    entry = VolumeEntry(
        id=volume_id,
        filename=Path(filename).name[:200] if filename else None,
        image_key=image_key,
        truth_key=truth_key,
        shape=image.shape,
        dtype=str(image.dtype),
        spacing=image.spacing,
        raw_nbytes=int(image.data.nbytes),
        image_nbytes=len(image_bytes),
        image_sha256=hashlib.sha256(image_bytes).hexdigest(),
        truth_sha256=hashlib.sha256(truth_path.read_bytes()).hexdigest() if truth_path else None,
    )
    store.put_bytes(image_key, image_bytes)
    if truth_key is not None and truth_bytes:  # truth_key is set exactly when truth_bytes is
        store.put_bytes(truth_key, truth_bytes)
    # The entry goes last: a volume is listed only once its files are in place.
    store.put_json(entry_key, entry.model_dump(mode="json"))
    return entry


def delete_dataset(store: BlobStore, dataset_id: str) -> int:
    """Remove the dataset and its files; returns how many volumes it had."""
    dataset = load_dataset(store, dataset_id)
    # The entry goes first, so a half-deleted dataset is no longer found.
    store.delete(_entry_key(dataset_id))
    for key in list(store.keys(_prefix(dataset_id))):
        store.delete(key)
    store.prune(_prefix(dataset_id))
    return len(dataset.volumes)
