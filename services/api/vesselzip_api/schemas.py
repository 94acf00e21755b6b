"""Response bodies of the API (they are what /openapi.json promises)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vesselzip.jobs import JobState
from vesselzip.model_info import ModelInfo


class FieldIssue(BaseModel):
    """One problem with a request field, as FastAPI reports request validation."""

    loc: list[str | int] = Field(description='Where: e.g. ["body", "queue"].')
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: str | list[FieldIssue] = Field(
        description="What was wrong, written for the client; for malformed form fields "
        "or JSON, one entry per field."
    )


class JobLinks(BaseModel):
    self: str
    mask: str = Field(description="NIfTI mask, once the job has finished.")
    blob: str = Field(description="The compressed volume (.vz), decodable with the CLI.")
    reference: str | None = Field(
        None,
        description="The reference job: the same model on the uncompressed volume, whose "
        "mask `agreement` compares this one with.",
    )


class JobCreated(BaseModel):
    id: str
    url: str = Field(description="Where to follow the job (GET).")
    state: JobState
    queue: str
    links: JobLinks


class ImageInfo(BaseModel):
    filename: str | None
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float] = Field(description="Voxel size in mm.")


class StageSeconds(BaseModel):
    """Seconds per stage; null for stages not reached (yet)."""

    upload: float | None = Field(None, description="Receiving the request body.")
    compress: float | None = Field(
        None,
        description="Validating, encoding and measuring the codec: at the gateway for an "
        "upload, on the worker for a sweep over a stored dataset.",
    )
    queue_wait: float | None = Field(None, description="From queued to picked up (so far).")
    model_load: float | None = Field(None, description="Zero when the model was warm.")
    fetch: float | None = Field(None, description="Reading the blob (and truth) from the store.")
    decompress: float | None = Field(None, description="Verifying and decoding the blob.")
    inference: float | None = None
    metrics: float | None = Field(None, description="Scoring against the truth, storing the mask.")


class CompressionMetrics(BaseModel):
    """Original upload versus its decoded blob (docs/metrics.md has the definitions)."""

    model_config = ConfigDict(extra="allow")

    codec: str | None = None
    raw_nbytes: int | None = None
    blob_nbytes: int | None = None
    cr_raw: float | None = Field(None, description="Raw voxel bytes / blob bytes.")
    cr_nifti_gz: float | None = Field(None, description="Uploaded .nii.gz bytes / blob bytes.")
    bits_per_voxel: float | None = None
    psnr_db: float | None = Field(None, description="Null when lossless.")
    ssim: float | None = None
    max_abs_error: float | None = None
    rmse: float | None = None
    payload_nbytes: int | None = Field(None, description="The codec's stream inside the blob.")
    compress_mb_s: float | None = None
    decompress_mb_s: float | None = None
    read_s: float | None = Field(None, description="Reading and validating the NIfTI.")
    compress_s: float | None = Field(None, description="Encoding.")
    decompress_s: float | None = Field(None, description="Decoding (to measure the loss).")
    measure_s: float | None = Field(None, description="Computing these metrics.")


class SegmentationMetrics(BaseModel):
    """Predicted mask versus the uploaded truth."""

    model_config = ConfigDict(extra="allow")

    dice: float | None = None
    iou: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    precision: float | None = None
    volume_similarity: float | None = None
    hd95_mm: float | None = None
    assd_mm: float | None = None


class AgreementMetrics(BaseModel):
    """This job's mask against the same model's mask of the uncompressed volume (the
    reference job): how far compression moved the segmentation. Agreement, not
    accuracy: no truth is involved."""

    dice: float | None = None
    iou: float | None = None
    hd95_mm: float | None = None


class JobStatus(BaseModel):
    id: str
    url: str
    state: JobState
    queue: str | None = None
    position: int | None = Field(
        None, description="Jobs ahead of this one in its queue (0 = next), while queued."
    )
    progress: float = Field(ge=0.0, le=1.0)
    stage: str | None = Field(None, description="The stage running now.")
    attempts: int = Field(description="Attempts started so far.")
    max_attempts: int
    model: str
    model_answers: str | None = Field(
        default=None,
        description='The truth the mask answers: "named arteries" (the Circle of Willis and '
        'its main branches) or "every vessel"; once the job finished.',
    )
    codec: dict[str, Any]
    image: ImageInfo
    has_truth: bool
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stage_seconds: StageSeconds
    compression: CompressionMetrics
    segmentation: SegmentationMetrics | None = Field(
        None, description="Present when finished and a truth was given."
    )
    reference_job: str | None = Field(
        None,
        description="The job segmenting the uncompressed volume with the same model, "
        "whose mask this one is compared with (`agreement`); null when there is none.",
    )
    agreement: AgreementMetrics | None = Field(
        None,
        description="Agreement with the reference job's mask, once finished: present "
        "with or without a truth. A note says why when the reference left no mask.",
    )
    error: str | None = Field(None, description="Why it failed, when it failed.")
    notes: list[str] = Field(
        default_factory=list, description="Earlier attempts that ended, and why."
    )
    links: JobLinks


class JobDeleted(BaseModel):
    id: str
    previous_state: JobState
    cancelled: bool = Field(description="True when the job had not finished yet.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    ready: bool
    redis: bool = Field(description="Redis answers.")
    store: bool = Field(description="The blob store is writable.")
    workers: int = Field(description="Workers with a recent heartbeat.")
    detail: str | None = None


class ModelList(BaseModel):
    models: list[ModelInfo] = Field(
        description="What the workers offer now (each offers only what it loaded), by "
        "name; empty while no worker runs, when every name is accepted and waits."
    )
