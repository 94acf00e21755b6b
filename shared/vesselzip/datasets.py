"""Datasets: volumes (each with an optional truth mask) uploaded once and referenced
by id, so that many jobs (a sweep) can use them without uploading them again.

Everything lives in the blob store, under ``datasets/<dataset id>/``::

    dataset.json                the dataset: name, owner, creation time
    volumes/<volume id>.json    one file per volume, so concurrent uploads never
                                overwrite each other's entry
    images/<volume id>.<upload>.nii[.gz]  the image exactly as uploaded (validated)
    truths/<volume id>.<upload>.nii.gz    the truth as a compact uint8 0/1 mask

Files go under keys unique to their upload (<upload> is random), so two uploads under
one volume id never write the same file; the volume's entry, written last, says which
files are its. Each dataset is also marked in its owner's index (vesselzip.index).

Writing a dataset's entry, a volume's entry, or deleting the dataset happens under the
`lock` the caller gives (for the gateway a Redis lock per dataset; a no-op by default).
That makes a volume id taken once, the volume cap exact and a deletion racing an
upload leave nothing behind. Ownership checks are the caller's business."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydantic import BaseModel, Field

from vesselzip import index
from vesselzip.errors import LimitExceededError, NotFoundError, VesselzipError
from vesselzip.store import BlobStore

if TYPE_CHECKING:
    from vesselzip.volumes import VolumeSource

_VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_CHUNK = 1024 * 1024

#: A lock per dataset id, held while the dataset's entry or a volume's entry is written
#: or the dataset deleted.
DatasetLock = Callable[[str], AbstractContextManager[Any]]


def unlocked(dataset_id: str) -> AbstractContextManager[None]:
    """No lock: for a single writer (tests, scripts)."""
    return contextlib.nullcontext()


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
    lock: DatasetLock = unlocked,
) -> tuple[Dataset, bool]:
    """A new, empty dataset; or, for an idempotency key whose dataset exists, that
    dataset. A key whose dataset was deleted makes a new, empty one (under the same
    id). Returns (dataset, created)."""
    dataset_id = dataset_id_for(owner, idempotency_key) if idempotency_key else uuid.uuid4().hex
    with lock(dataset_id):
        if idempotency_key and store.exists(_entry_key(dataset_id)):
            return load_dataset(store, dataset_id), False
        # What a deletion cut short (a crash) may have left under this id goes first:
        # a key used again never brings back deleted volumes.
        for key in list(store.keys(_prefix(dataset_id))):
            store.delete(key)
        entry = DatasetEntry(id=dataset_id, name=name, owner=owner, idempotency_key=idempotency_key)
        marker = index.owned_key("datasets", owner, dataset_id)
        index.mark(store, marker)
        try:
            store.put_json(_entry_key(dataset_id), entry.model_dump(mode="json"))
        except BaseException:
            store.delete(marker)
            raise
    return Dataset(**entry.model_dump()), True


def load_dataset_entry(store: BlobStore, dataset_id: str) -> DatasetEntry:
    """The dataset without its volumes (one read)."""
    try:
        return DatasetEntry.model_validate(store.get_json(_entry_key(dataset_id)))
    except NotFoundError:
        raise NotFoundError(f"no dataset {dataset_id}") from None


def load_dataset(store: BlobStore, dataset_id: str) -> Dataset:
    entry = load_dataset_entry(store, dataset_id)
    volumes = [
        VolumeEntry.model_validate(store.get_json(key))
        for key in store.keys(f"{_prefix(dataset_id)}/volumes")
        if key.endswith(".json")
    ]
    volumes.sort(key=lambda v: (v.created_at, v.id))
    return Dataset(**entry.model_dump(), volumes=volumes)


def count_volumes(store: BlobStore, dataset_id: str) -> int:
    return sum(1 for key in store.keys(f"{_prefix(dataset_id)}/volumes") if key.endswith(".json"))


def list_datasets(
    store: BlobStore, owner: str | None, *, everyone: bool = False
) -> list[DatasetEntry]:
    """The datasets `owner` made (every owner's with `everyone`), oldest first: read
    through the owner index, not by scanning the store."""
    entries = []
    for dataset_id in index.owned_ids(store, "datasets", owner, everyone=everyone):
        # A marker whose dataset is not written yet, or whose deletion was cut short.
        with contextlib.suppress(NotFoundError):
            entries.append(load_dataset_entry(store, dataset_id))
    return sorted(entries, key=lambda e: (e.created_at, e.id))


def index_existing_datasets(store: BlobStore) -> None:
    """Mark every stored dataset in its owner's index (one scan of the store, for a
    store written before the index existed)."""
    for key in store.keys("datasets"):
        if key.count("/") == 2 and key.endswith("/dataset.json"):
            entry = DatasetEntry.model_validate(store.get_json(key))
            index.mark(store, index.owned_key("datasets", entry.owner, entry.id))


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
    max_volumes: int | None = None,
    lock: DatasetLock = unlocked,
) -> VolumeEntry:
    """Validate an image (and its truth, on the same grid) and store both: the image
    byte for byte as given, the truth as a compact uint8 mask. Each is a path, the
    bytes of a file, or an open, seekable binary file read from its current position
    (an upload the web server spooled): it is validated from there, then the image is
    streamed into the store once, hashed on the way; nothing is read whole into
    memory, and nothing is stored unless every check passed.

    Raises InvalidVolumeError / VolumeTooLargeError for bad files, DatasetConflictError
    when the volume id is taken, LimitExceededError when the dataset has `max_volumes`
    already, NotFoundError when the dataset does not exist or was deleted meanwhile."""
    from vesselzip.jobs import prepare_truth
    from vesselzip.volumes import open_volume_source, read_volume_file

    dataset = load_dataset_entry(store, dataset_id)
    volume_id = volume_id_for(name, filename)
    _check_room(store, dataset_id, volume_id, max_volumes)  # before reading the upload

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
        upload = uuid.uuid4().hex[:16]
        image_key = f"{_prefix(dataset_id)}/images/{volume_id}.{upload}{suffix}"
        truth_key = (
            f"{_prefix(dataset_id)}/truths/{volume_id}.{upload}.nii.gz" if truth_bytes else None
        )
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
            with lock(dataset_id):
                _commit_volume(store, dataset, entry, max_volumes)
        except BaseException:
            for key in stored:
                store.delete(key)
            if not store.exists(_entry_key(dataset_id)):  # deleted meanwhile
                store.prune(_prefix(dataset_id))
            raise
    return entry


def _check_room(store: BlobStore, dataset_id: str, volume_id: str, max_volumes: int | None) -> None:
    if store.exists(_volume_key(dataset_id, volume_id)):
        raise DatasetConflictError(f"dataset {dataset_id} already has a volume {volume_id!r}")
    if max_volumes is not None:
        n_volumes = count_volumes(store, dataset_id)
        if n_volumes >= max_volumes:
            raise LimitExceededError(
                f"dataset {dataset_id} has {n_volumes} volumes, as many as "
                f"VESSELZIP_MAX_DATASET_VOLUMES ({max_volumes}) allows"
            )


def _commit_volume(
    store: BlobStore, dataset: DatasetEntry, entry: VolumeEntry, max_volumes: int | None
) -> None:
    """Write the volume's entry if its dataset is still the one the upload was for (not
    deleted, nor deleted and created again under the same id), the volume id is free
    and there is room. Under the dataset's lock, so these checks hold when it writes."""
    try:
        current = load_dataset_entry(store, dataset.id)
    except NotFoundError:
        current = None
    if current != dataset:
        raise NotFoundError(f"dataset {dataset.id} was deleted while the volume was uploaded")
    _check_room(store, dataset.id, entry.id, max_volumes)
    store.put_json(_volume_key(dataset.id, entry.id), entry.model_dump(mode="json"))


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


def delete_dataset(store: BlobStore, dataset_id: str, *, lock: DatasetLock = unlocked) -> int:
    """Remove the dataset, its files and its index markers; returns how many volumes
    it had."""
    with lock(dataset_id):
        entry = load_dataset_entry(store, dataset_id)
        n_volumes = count_volumes(store, dataset_id)
        # The entry goes first, so a half-deleted dataset is no longer found; the
        # owner's marker goes last (see vesselzip.index).
        store.delete(_entry_key(dataset_id))
        for prefix in (_prefix(dataset_id), index.dataset_prefix(dataset_id)):
            for key in list(store.keys(prefix)):
                store.delete(key)
            store.prune(prefix)
        store.delete(index.owned_key("datasets", entry.owner, dataset_id))
    return n_volumes
