"""The job of one stored dataset volume under one codec setting: what sweeps and
tunings queue (the worker compresses the stored original itself)."""

from __future__ import annotations

from typing import Any

from vesselzip.datasets import Dataset, VolumeEntry, load_dataset
from vesselzip.jobs import ImageInfo, JobSpec, blob_key
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip_api.access import check_access
from vesselzip_api.errors import EmptyDatasetError


def dataset_to_run(
    store: BlobStore, settings: Settings, dataset_id: str, owner: str | None
) -> Dataset:
    """The dataset a sweep or tuning runs on, if `owner` may use it and it has volumes."""
    dataset = load_dataset(store, dataset_id)
    check_access(settings, dataset.owner, owner, f"dataset {dataset.id}")
    if not dataset.volumes:
        raise EmptyDatasetError(f"dataset {dataset.id} has no volumes yet")
    return dataset


def volume_image(volume: VolumeEntry) -> ImageInfo:
    return ImageInfo(
        filename=volume.filename or volume.id,
        shape=volume.shape,
        dtype=volume.dtype,
        spacing=volume.spacing,
    )


def volume_job_spec(
    job_id: str,
    volume: VolumeEntry,
    codec: dict[str, Any],
    *,
    model: str,
    owner: str | None,
    reference: str | None,
) -> JobSpec:
    """`reference`: the job of the same volume uncompressed (agreement); None for that
    job itself."""
    return JobSpec(
        job_id=job_id,
        blob_key=blob_key(job_id),
        truth_key=volume.truth_key,
        source_key=volume.image_key,
        model=model,
        codec=codec,
        image=volume_image(volume),
        owner=owner,
        owned_keys=[blob_key(job_id)],  # the dataset's image and truth are shared
        reference_job_id=reference,
    )
