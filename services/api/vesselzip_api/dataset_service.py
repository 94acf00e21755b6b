"""What the dataset routes do: store uploaded volumes (with their truths) once, show
and list datasets, delete them. Routes only parse the request and call this."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone

from redis import Redis
from redis.lock import Lock

from vesselzip.datasets import (
    Dataset,
    DatasetEntry,
    VolumeEntry,
    add_volume,
    count_volumes,
    create_dataset,
    dataset_id_for,
    delete_dataset,
    list_datasets,
    load_dataset,
    load_dataset_entry,
)
from vesselzip.errors import LimitExceededError, NotFoundError, VesselzipError
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip_api.access import check_access, sees_everything
from vesselzip_api.job_service import Upload
from vesselzip_api.sweep_schemas import (
    DatasetDeleted,
    DatasetInfo,
    DatasetList,
    DatasetSummary,
    VolumeInfo,
)
from vesselzip_api.sweep_service import SweepService

# How long one dataset request may hold its idempotency key (and another may wait).
_CREATE_LOCK_S = 600
# How long writing a dataset's entries or deleting its files may hold the dataset (and
# another request wait for it): seconds for the largest dataset.
_COMMIT_LOCK_S = 120


class DatasetService:
    def __init__(
        self, settings: Settings, connection: Redis, store: BlobStore, sweeps: SweepService
    ):
        self.settings = settings
        self.redis = connection
        self.store = store
        self.sweeps = sweeps
        # Validating a volume holds it in memory: bound how many at once.
        self._slots = threading.BoundedSemaphore(settings.upload_concurrency)

    # -- create -----------------------------------------------------------------
    def create(
        self,
        *,
        name: str | None,
        images: list[Upload],
        truths: list[Upload],
        owner: str | None,
        idempotency_key: str | None,
        base_url: str,
    ) -> tuple[DatasetInfo, bool]:
        """A dataset, with the volumes uploaded in the same request (truths pair with
        images by position). For a known idempotency key the existing dataset is
        returned and the request's files are not looked at. All or nothing: when one
        volume is refused, the new dataset is removed again."""
        images = [u for u in images if u.given]
        truths = [u for u in truths if u.given]
        if truths and len(truths) != len(images):
            raise VesselzipError(
                f"{len(images)} image(s) but {len(truths)} truth(s): give one truth per "
                "image (in the same order) or none"
            )
        if len(images) > self.settings.max_dataset_volumes:  # refused before reading any
            raise LimitExceededError(
                f"{len(images)} images, more than VESSELZIP_MAX_DATASET_VOLUMES "
                f"({self.settings.max_dataset_volumes}) allows in a dataset"
            )
        if not idempotency_key:
            return self._create(name, images, truths, owner, None, base_url)
        # One request at a time per key: a second one waits, then gets the whole dataset.
        lock = f"vesselzip:dataset-lock:{dataset_id_for(owner, idempotency_key)}"
        with self.redis.lock(lock, timeout=_CREATE_LOCK_S, blocking_timeout=_CREATE_LOCK_S):
            return self._create(name, images, truths, owner, idempotency_key, base_url)

    def _create(
        self,
        name: str | None,
        images: list[Upload],
        truths: list[Upload],
        owner: str | None,
        idempotency_key: str | None,
        base_url: str,
    ) -> tuple[DatasetInfo, bool]:
        dataset, created = create_dataset(
            self.store,
            name=name,
            owner=owner,
            idempotency_key=idempotency_key,
            lock=self._lock,
        )
        if not created:
            self._authorize(dataset, owner)
            return self._info(dataset, base_url), False
        try:
            for i, image in enumerate(images):
                self._add(dataset.id, image, truths[i] if truths else None, name=None)
        except BaseException:
            with contextlib.suppress(NotFoundError):  # a DELETE came first
                delete_dataset(self.store, dataset.id, lock=self._lock)
            raise
        return self._info(load_dataset(self.store, dataset.id), base_url), True

    def add(
        self,
        dataset_id: str,
        *,
        image: Upload,
        truth: Upload | None,
        name: str | None,
        owner: str | None,
    ) -> VolumeInfo:
        self._authorize(load_dataset_entry(self.store, dataset_id), owner)
        if not image.given:
            raise VesselzipError("the request has no image file")
        return _volume_info(self._add(dataset_id, image, truth, name=name))

    def _add(
        self, dataset_id: str, image: Upload, truth: Upload | None, *, name: str | None
    ) -> VolumeEntry:
        # Validated where the web server spooled the upload; the image is then streamed
        # into the store once (add_volume), the one copy a dataset keeps.
        with self._slots:
            return add_volume(
                self.store,
                dataset_id,
                image.rewound(),
                truth.rewound() if truth is not None and truth.given else None,
                name=name,
                filename=image.filename,
                max_voxels=self.settings.max_voxels,
                max_volume_bytes=self.settings.max_volume_bytes,
                max_volumes=self.settings.max_dataset_volumes,
                lock=self._lock,
            )

    def _lock(self, dataset_id: str) -> Lock:
        """Held while a dataset's entry or a volume's entry is written, or the dataset
        deleted; the uploads themselves are stored before, under keys of their own.
        A Redis lock (SET NX) rather than an exclusive create in the store: it asks
        nothing of the store beyond put, list and delete, so it serves an S3 store as
        well as a folder, and one lock orders all three races on a dataset: one volume
        name added twice, the volume cap, and a deletion during an upload."""
        return self.redis.lock(
            f"vesselzip:dataset-commit:{dataset_id}",
            timeout=_COMMIT_LOCK_S,
            blocking_timeout=_COMMIT_LOCK_S,
        )

    # -- read -------------------------------------------------------------------
    def get(self, dataset_id: str, owner: str | None, base_url: str) -> DatasetInfo:
        dataset = load_dataset(self.store, dataset_id)
        self._authorize(dataset, owner)
        return self._info(dataset, base_url)

    def list(self, owner: str | None, base_url: str) -> DatasetList:
        entries = list_datasets(self.store, owner, everyone=sees_everything(self.settings))
        return DatasetList(
            datasets=[
                self._summary(entry, base_url, count_volumes(self.store, entry.id))
                for entry in entries
            ]
        )

    # -- delete -----------------------------------------------------------------
    def delete(self, dataset_id: str, owner: str | None) -> DatasetDeleted:
        """Cancel the unfinished jobs of sweeps over the dataset, then remove it. The
        results of finished jobs (and so the sweeps' tables) stay."""
        self._authorize(load_dataset_entry(self.store, dataset_id), owner)
        cancelled = self.sweeps.cancel_dataset_jobs(dataset_id, owner)
        removed = delete_dataset(self.store, dataset_id, lock=self._lock)
        return DatasetDeleted(id=dataset_id, volumes_deleted=removed, jobs_cancelled=cancelled)

    # -- views ------------------------------------------------------------------
    def _authorize(self, dataset: DatasetEntry, owner: str | None) -> None:
        check_access(self.settings, dataset.owner, owner, f"dataset {dataset.id}")

    def _summary(self, entry: DatasetEntry, base_url: str, n_volumes: int) -> DatasetSummary:
        return DatasetSummary(
            id=entry.id,
            url=dataset_url(base_url, entry.id),
            name=entry.name,
            n_volumes=n_volumes,
            created_at=_when(entry.created_at),
        )

    def _info(self, dataset: Dataset, base_url: str) -> DatasetInfo:
        return DatasetInfo(
            **self._summary(dataset, base_url, len(dataset.volumes)).model_dump(),
            raw_nbytes=sum(v.raw_nbytes for v in dataset.volumes),
            volumes=[_volume_info(v) for v in dataset.volumes],
        )


def dataset_url(base_url: str, dataset_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/datasets/{dataset_id}"


def _volume_info(entry: VolumeEntry) -> VolumeInfo:
    return VolumeInfo(
        **entry.model_dump(exclude={"image_key", "truth_key", "created_at"}),
        has_truth=entry.truth_key is not None,
        created_at=_when(entry.created_at),
    )


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)
