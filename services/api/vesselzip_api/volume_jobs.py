"""The job of one stored dataset volume under one codec setting: what sweeps and
tunings queue (the worker compresses the stored original itself)."""

from __future__ import annotations

from typing import Any

from vesselzip.datasets import VolumeEntry
from vesselzip.jobs import ImageInfo, JobSpec, blob_key


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
