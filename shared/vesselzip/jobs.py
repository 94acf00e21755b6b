"""One segmentation job as plain data, and the two halves of its work.

* ``compress_upload`` runs where the upload arrives (the gateway): validate the NIfTI,
  encode it with the codec, decode it once to measure what the codec did.
* ``run_job`` runs on a worker: fetch the blob, verify and decode it, segment, score
  against the truth when there is one, store the mask.

Neither knows about HTTP or queues; the gateway and the worker glue call them. A job
names its inputs by store key, so many jobs (a sweep) can share one stored volume."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from vesselzip.errors import InvalidVolumeError, NotFoundError
from vesselzip.store import BlobStore

if TYPE_CHECKING:
    from vesselzip.volumes import VolumeSource

#: Stages a job goes through, in order; each one's seconds are reported.
STAGES = ("upload", "compress", "queue_wait", "fetch", "decompress", "inference", "metrics")
# Share of a worker's progress bar each of its stages covers (inference dominates).
_WORKER_PROGRESS = {
    "compress": (0.0, 0.0),  # only jobs with a source_key; brief next to inference
    "fetch": (0.0, 0.05),
    "decompress": (0.05, 0.15),
    "inference": (0.15, 0.9),
    "metrics": (0.9, 1.0),
}

ReportProgress = Callable[[str, float], None]


class JobState(str, Enum):
    """Where a job stands: the one spelling of it in records, results, sweeps and the API."""

    QUEUED = "queued"  # waiting in its queue, or for a retry
    RUNNING = "running"  # a worker has it
    FINISHED = "finished"  # the mask is stored; scores when a truth was given
    FAILED = "failed"  # `error` says why
    CANCELLED = "cancelled"  # deleted before it ended

    def __str__(self) -> str:  # the value in f-strings, CSV and Redis, on every Python
        return self.value

    @property
    def ended(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


#: A sweep cell whose job has neither a record nor a result (Redis lost it before it ran).
LOST = "lost"


def new_job_id() -> str:
    return uuid.uuid4().hex


def blob_key(job_id: str) -> str:
    return f"blobs/{job_id}.vz"


def truth_key(job_id: str) -> str:
    return f"truth/{job_id}.nii.gz"


def mask_key(job_id: str) -> str:
    return f"masks/{job_id}.nii.gz"


def result_key(job_id: str) -> str:
    return f"results/{job_id}.json"


class ImageInfo(BaseModel):
    filename: str | None = None
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]


class JobSpec(BaseModel):
    """Everything a worker needs to run a job; JSON-serialisable."""

    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    blob_key: str
    truth_key: str | None = None
    model: str
    codec: dict[str, Any]
    image: ImageInfo
    # Hash of the API key that created the job (None when the API is open).
    owner: str | None = None
    # Store keys that belong to this job alone and go when it is deleted; a shared
    # volume (e.g. a dataset's) is referenced by key but not listed here.
    owned_keys: list[str] = Field(default_factory=list)
    # Jobs made for this one alone (an upload's reference job), deleted with it.
    owned_jobs: list[str] = Field(default_factory=list)
    # An original volume in the store (a dataset's) that the worker compresses with
    # `codec` into `blob_key` first; None when the gateway compressed an upload.
    source_key: str | None = None
    # Compression metrics measured where the original was (see compress_upload).
    compression: dict[str, Any] = Field(default_factory=dict)
    # Seconds spent before the job reached a queue (upload, compress).
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    # The job segmenting the same volume uncompressed with the same model: this job's
    # mask is scored against that job's mask (`agreement`). It runs first (the queue
    # holds this one back until it ended); None for the uncompressed job itself.
    reference_job_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    created_at: float = Field(default_factory=time.time)


class JobResult(BaseModel):
    """What a job ended with; stored as results/<id>.json and kept in Redis."""

    job_id: str
    state: Literal[JobState.FINISHED, JobState.FAILED]
    model: str
    # The truth the model's mask answers ("named arteries" or "every vessel").
    model_answers: str | None = None
    codec: dict[str, Any]
    image: ImageInfo
    owner: str | None = None
    has_truth: bool = False
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    compression: dict[str, Any] = Field(default_factory=dict)
    segmentation: dict[str, Any] | None = None
    # This mask against the reference job's mask (see JobSpec.reference_job_id).
    reference_job_id: str | None = None
    agreement: dict[str, Any] | None = None
    mask_key: str | None = None
    blob_key: str | None = None
    # What the pictures of the job are drawn from: its truth, and the original volume
    # of a dataset job (an upload's original is not kept).
    truth_key: str | None = None
    source_key: str | None = None
    owned_keys: list[str] = Field(default_factory=list)
    owned_jobs: list[str] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 1
    notes: list[str] = Field(default_factory=list)
    created_at: float
    finished_at: float = Field(default_factory=time.time)

    @classmethod
    def failed(cls, spec: JobSpec, error: str, **extra: Any) -> JobResult:
        return cls(
            job_id=spec.job_id,
            state=JobState.FAILED,
            model=spec.model,
            codec=spec.codec,
            image=spec.image,
            owner=spec.owner,
            has_truth=spec.truth_key is not None,
            stage_seconds=dict(spec.stage_seconds),
            compression=spec.compression,
            reference_job_id=spec.reference_job_id,
            blob_key=spec.blob_key,
            truth_key=spec.truth_key,
            source_key=spec.source_key,
            owned_keys=spec.owned_keys,
            owned_jobs=spec.owned_jobs,
            error=error,
            created_at=spec.created_at,
            **extra,
        )


class JobOutcome(BaseModel):
    """What is known of a job wherever it was found (its Redis record, RQ, or its stored
    result): the state, the result once it ended, the reason when it did not finish."""

    state: JobState | Literal["lost"]
    result: JobResult | None = None
    error: str | None = None
    position: int | None = Field(default=None, description="Jobs ahead of it, while queued.")

    @property
    def ended(self) -> bool:
        return self.state == LOST or JobState(self.state).ended


@dataclass
class CompressedUpload:
    """An uploaded image after validation and compression (not yet stored)."""

    blob: bytes
    image: ImageInfo
    compression: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    # |decoded − original| projected per view (vesselzip.pictures), for the job's
    # pictures: the original itself is not kept.
    difference: bytes | None = None
    # Kept so a truth can be checked against the image's grid.
    shape: tuple[int, int, int] = (0, 0, 0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))


def compress_upload(
    source: VolumeSource,
    codec_config: dict[str, Any],
    *,
    filename: str | None = None,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
) -> CompressedUpload:
    """Validate the NIfTI `source` (a path, bytes, or an open binary file such as the
    upload the web server spooled, read from its current position) and compress it;
    measure the codec on it.

    Raises InvalidVolumeError / VolumeTooLargeError for bad uploads and
    InvalidCodecConfigError for a bad codec configuration (checked first: it is cheap)."""
    from vesselzip.codecs import get_codec
    from vesselzip.container import read_blob_meta
    from vesselzip.pictures import difference_projections, projections_to_bytes
    from vesselzip.roundtrip import encode_decode_measure
    from vesselzip.volumes import read_volume_file

    codec = get_codec(codec_config)
    t0 = time.perf_counter()
    volume, file = read_volume_file(
        source,
        max_voxels=max_voxels,
        max_volume_bytes=max_volume_bytes,
        label=f"image ({filename})" if filename else "image",
    )
    t1 = time.perf_counter()
    # Slab by slab, with the metrics computed on other threads while later slabs are
    # coded: besides the original, memory holds the blob, the decoded volume in the
    # stored dtype, one slab's float copies and the tile buffers, never a full float copy.
    round_trip = encode_decode_measure(
        volume, codec, nifti_gz_nbytes=file.nbytes if file.gzip else None
    )
    blob, metrics = round_trip.blob, round_trip.metrics
    difference = projections_to_bytes(difference_projections(volume.data, round_trip.decoded))
    encode_s, decode_s, measure_s = round_trip.encode_s, round_trip.decode_s, round_trip.measure_s
    del round_trip  # the decoded volume is not needed any more
    metrics["codec"] = codec.describe()
    # Beside encode (compress_s) and decode (decompress_s), each the codec's own calls
    # summed over slabs: reading the NIfTI and the wall time the metrics added (the
    # part that did not overlap the codec), so the whole cost of an upload is on record.
    metrics["read_s"] = t1 - t0
    metrics["measure_s"] = measure_s
    # The codec's own stream, without the container's header (e.g. the bare ZFP stream),
    # from the blob's JSON header alone.
    metrics["payload_nbytes"] = read_blob_meta(blob)["payload_nbytes"]
    image = ImageInfo(
        filename=filename,
        shape=volume.shape,
        dtype=str(volume.dtype),
        spacing=volume.spacing,
    )
    seconds = {"validate": t1 - t0, "encode": encode_s, "decode": decode_s, "measure": measure_s}
    return CompressedUpload(
        blob=blob,
        image=image,
        compression=metrics,
        seconds=seconds,
        difference=difference,
        shape=image.shape,
        affine=volume.affine,
    )


def prepare_truth(
    truth_source: VolumeSource,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    max_voxels: int | None = None,
    max_volume_bytes: int | None = None,
) -> bytes:
    """Validate a ground-truth mask (a path, bytes or an open binary file) for an image
    of this `shape` and `affine`; return it as a compact uint8 .nii.gz, 1 where the
    truth's intensity (its stored value through scl_slope and scl_inter) is non-zero."""
    from vesselzip.volumes import nonzero_intensities, read_volume, same_grid, volume_to_bytes

    truth = read_volume(
        truth_source,
        max_voxels=max_voxels,
        max_volume_bytes=max_volume_bytes,
        label="truth",
    )
    if tuple(truth.shape) != tuple(shape):
        raise InvalidVolumeError(
            f"truth shape {tuple(truth.shape)} does not match image shape {tuple(shape)}"
        )
    if not same_grid(truth.affine, affine):
        raise InvalidVolumeError(
            "truth is on another grid than the image (their affines differ: voxel size, "
            "axes or position); save the mask with the image's header"
        )
    return volume_to_bytes(nonzero_intensities(truth), like=truth)


def run_job(
    spec: JobSpec,
    store: BlobStore,
    segmenter: Any,
    report_progress: ReportProgress | None = None,
) -> JobResult:
    """Fetch, verify, decode, segment, score and store the mask of one job (first
    compressing its source volume when it names one: sweeps over a stored dataset).

    `report_progress(stage, fraction)` is called often; it may raise to abandon the
    job (e.g. when it was cancelled). Raises VesselzipError for bad stored input
    (corrupt blob, missing truth): retrying cannot help with those."""
    from vesselzip.container import decode_volume
    from vesselzip.metrics.segmentation import segmentation_metrics
    from vesselzip.volumes import read_volume, volume_to_bytes

    def progress(stage: str, fraction: float) -> None:
        if report_progress is not None:
            lo, hi = _WORKER_PROGRESS[stage]
            report_progress(stage, lo + (hi - lo) * min(max(fraction, 0.0), 1.0))

    seconds = dict(spec.stage_seconds)
    compression = spec.compression

    if spec.source_key is not None:
        progress("compress", 0.0)
        t0 = time.perf_counter()
        with store.local_copy(spec.source_key) as source:
            compressed = compress_upload(source, spec.codec, filename=spec.image.filename)
        store.put_bytes(spec.blob_key, compressed.blob)
        if compressed.difference is not None:
            store.put_bytes(difference_key(spec.job_id), compressed.difference)
        compression = compressed.compression
        seconds["compress"] = time.perf_counter() - t0

    progress("fetch", 0.0)
    t0 = time.perf_counter()
    try:
        blob = store.get_bytes(spec.blob_key)
        truth_bytes = store.get_bytes(spec.truth_key) if spec.truth_key else None
    except NotFoundError as exc:
        raise NotFoundError(
            f"{exc} (deleted meanwhile, or the gateway and this worker do not share "
            "VESSELZIP_STORE_DIR)"
        ) from exc
    seconds["fetch"] = time.perf_counter() - t0

    progress("decompress", 0.0)
    t0 = time.perf_counter()
    volume = decode_volume(blob)  # verifies the checksum (CorruptBlobError)
    del blob
    seconds["decompress"] = time.perf_counter() - t0

    progress("inference", 0.0)
    t0 = time.perf_counter()
    mask = segmenter.segment(volume, progress=lambda f: progress("inference", f))
    mask = np.asarray(mask, dtype=np.uint8)
    seconds["inference"] = time.perf_counter() - t0

    progress("metrics", 0.0)
    t0 = time.perf_counter()
    scores = None
    if truth_bytes is not None:
        truth = read_volume(truth_bytes)
        if tuple(truth.shape) != tuple(mask.shape):
            raise InvalidVolumeError(
                f"stored truth shape {tuple(truth.shape)} does not match image {mask.shape}"
            )
        scores = segmentation_metrics(mask, truth.data, volume.spacing)
    agreement: dict[str, Any] | None = None
    notes: list[str] = []
    if spec.reference_job_id is not None:
        agreement, notes = _agreement(store, spec.reference_job_id, mask, volume.spacing)
    store.put_bytes(mask_key(spec.job_id), volume_to_bytes(mask, like=volume))
    seconds["metrics"] = time.perf_counter() - t0
    progress("metrics", 1.0)

    return JobResult(
        job_id=spec.job_id,
        state=JobState.FINISHED,
        model=spec.model,
        model_answers=segmenter.info().answers,
        codec=spec.codec,
        image=spec.image,
        owner=spec.owner,
        has_truth=spec.truth_key is not None,
        stage_seconds=seconds,
        compression=compression,
        segmentation=scores,
        reference_job_id=spec.reference_job_id,
        agreement=agreement,
        mask_key=mask_key(spec.job_id),
        blob_key=spec.blob_key,
        truth_key=spec.truth_key,
        source_key=spec.source_key,
        owned_keys=[*spec.owned_keys, mask_key(spec.job_id)],
        owned_jobs=spec.owned_jobs,
        notes=notes,
        created_at=spec.created_at,
    )


def _agreement(
    store: BlobStore, reference_job_id: str, mask: np.ndarray, spacing: tuple[float, ...]
) -> tuple[dict[str, Any] | None, list[str]]:
    """`mask` against the reference job's mask, or None with the reason as a note."""
    from vesselzip.metrics.segmentation import agreement_metrics
    from vesselzip.volumes import read_volume

    try:
        reference = read_volume(store.get_bytes(mask_key(reference_job_id)))
    except NotFoundError:
        return None, [
            f"no agreement: the reference job {reference_job_id} (the uncompressed volume) "
            "left no mask (it failed, was deleted, or has not run)"
        ]
    if tuple(reference.shape) != tuple(mask.shape):
        return None, [
            f"no agreement: the reference job {reference_job_id}'s mask has another shape"
        ]
    return agreement_metrics(mask, reference.data, spacing), []


def save_result(store: BlobStore, result: JobResult) -> None:
    """Write the result next to the blobs, where it survives a Redis flush."""
    store.put_json(result_key(result.job_id), result.model_dump(mode="json"))


def load_result(store: BlobStore, job_id: str) -> JobResult:
    try:
        return JobResult.model_validate(store.get_json(result_key(job_id)))
    except NotFoundError:
        raise NotFoundError(f"no job {job_id}") from None


def pictures_prefix(job_id: str) -> str:
    return f"pictures/{job_id}"


def difference_key(job_id: str) -> str:
    """|decoded − original| projected per view, written where the job was compressed."""
    return f"{pictures_prefix(job_id)}/difference.npz"


def delete_job_data(store: BlobStore, keys: list[str], job_id: str) -> None:
    """Remove what a job stored: the keys it owns, its mask, its result and pictures."""
    pictures = list(store.keys(pictures_prefix(job_id)))
    for key in {*keys, mask_key(job_id), result_key(job_id), *pictures}:
        store.delete(key)
    if pictures:
        store.prune(pictures_prefix(job_id))
