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
import os
import re
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydantic import BaseModel, Field

from vesselzip.errors import NotFoundError, VesselzipError
from vesselzip.store import BlobStore

if TYPE_CHECKING:
    from vesselzip.volumes import VolumeSource

_VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_CHUNK = 1024 * 1024


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
    image: VolumeSource,
    truth: VolumeSource | None,
    *,
    name: str | None = None,
    filename: str | None = None,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
) -> VolumeEntry:
    """Validate an image (and its truth, on the same grid) and store both: the image
    byte for byte as given, the truth as a compact uint8 mask. Each is a path, the
    bytes of a file, or an open, seekable binary file read from its current position
    (an upload the web server spooled): it is validated from there, then the image is
    streamed into the store once, hashed on the way; nothing is read whole into
    memory, and nothing is stored unless every check passed.

    Raises InvalidVolumeError / VolumeTooLargeError for bad files, DatasetConflictError
    when the volume id is taken, NotFoundError when the dataset does not exist."""
    from vesselzip.jobs import prepare_truth
    from vesselzip.volumes import open_volume_source, read_volume_file

    if not store.exists(_entry_key(dataset_id)):
        raise NotFoundError(f"no dataset {dataset_id}")
    volume_id = volume_id_for(name, filename)
    entry_key = _volume_key(dataset_id, volume_id)
    if store.exists(entry_key):
        raise DatasetConflictError(f"dataset {dataset_id} already has a volume {volume_id!r}")

    with ExitStack() as files:
        image_stream = files.enter_context(open_volume_source(image))
        image_start = image_stream.tell()
        volume, image_file = read_volume_file(
            image_stream,
            max_voxels=max_voxels,
            max_volume_bytes=max_volume_bytes,
            label=f"image ({Path(filename).name})" if filename else "image",
        )
        truth_bytes: bytes | None = None
        truth_sha256: str | None = None
        if truth is not None:
            truth_stream = files.enter_context(open_volume_source(truth))
            truth_start = truth_stream.tell()
            truth_bytes = prepare_truth(
                truth_stream,
                volume.shape,
                volume.affine,
                max_voxels=max_voxels,
                max_volume_bytes=max_volume_bytes,
            )
            truth_stream.seek(truth_start)
            truth_sha256, _ = _copy_hashed(truth_stream, None)

        suffix = ".nii.gz" if image_file.gzip else ".nii"
        image_key = f"{_prefix(dataset_id)}/images/{volume_id}{suffix}"
        truth_key = f"{_prefix(dataset_id)}/truths/{volume_id}.nii.gz" if truth_bytes else None
        stored: list[str] = []
        try:
            image_stream.seek(image_start)
            image_sha256, image_nbytes = _put_stream(store, image_key, image_stream)
            stored.append(image_key)
            if truth_key is not None and truth_bytes:  # set exactly when truth_bytes is
                store.put_bytes(truth_key, truth_bytes)
                stored.append(truth_key)
            entry = VolumeEntry(
                id=volume_id,
                filename=Path(filename).name[:200] if filename else None,
                image_key=image_key,
                truth_key=truth_key,
                shape=volume.shape,
                dtype=str(volume.dtype),
                spacing=volume.spacing,
                raw_nbytes=int(volume.data.nbytes),
                image_nbytes=image_nbytes,
                image_sha256=image_sha256,
                truth_sha256=truth_sha256,
            )
            # The entry goes last: a volume is listed only once its files are in place.
            store.put_json(entry_key, entry.model_dump(mode="json"))
        except BaseException:
            for key in stored:
                store.delete(key)
            raise
    return entry


def _put_stream(store: BlobStore, key: str, stream: BinaryIO) -> tuple[str, int]:
    """Store what is left of `stream` under `key`: one chunked copy into a temp file on
    the store's volume, hashed on the way, then moved into place. Returns (sha256, bytes)."""
    out, path = store.temp_file()
    try:
        with out:
            hashed = _copy_hashed(stream, out)
            out.flush()
            os.fsync(out.fileno())  # on disk before it is renamed into place
        store.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)
    return hashed


def _copy_hashed(stream: BinaryIO, out: BinaryIO | None) -> tuple[str, int]:
    """Read `stream` to its end in chunks, writing them to `out` when given; returns
    the sha256 and the number of bytes read."""
    digest = hashlib.sha256()
    nbytes = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        nbytes += len(chunk)
        if out is not None:
            out.write(chunk)
    return digest.hexdigest(), nbytes


def delete_dataset(store: BlobStore, dataset_id: str) -> int:
    """Remove the dataset and its files; returns how many volumes it had."""
    dataset = load_dataset(store, dataset_id)
    # The entry goes first, so a half-deleted dataset is no longer found.
    store.delete(_entry_key(dataset_id))
    for key in list(store.keys(_prefix(dataset_id))):
        store.delete(key)
    store.prune(_prefix(dataset_id))
    return len(dataset.volumes)
