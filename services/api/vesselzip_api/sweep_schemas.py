"""Request and response bodies of /v1/datasets and /v1/sweeps (what /openapi.json
promises). The column definitions are in docs/sweeps.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ID_PATTERN = r"^[0-9a-f]{32}$"


# -- datasets ------------------------------------------------------------------------
class VolumeInfo(BaseModel):
    id: str = Field(description="Unique in the dataset: the name given, else the file name.")
    filename: str | None
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float] = Field(description="Voxel size in mm.")
    raw_nbytes: int = Field(description="Voxel bytes in the stored dtype (the CR numerator).")
    image_nbytes: int = Field(description="Bytes of the uploaded file.")
    image_sha256: str
    has_truth: bool
    truth_sha256: str | None = Field(description="Of the uploaded truth file.")
    created_at: datetime


class DatasetSummary(BaseModel):
    id: str
    url: str
    name: str | None
    n_volumes: int
    created_at: datetime


class DatasetInfo(DatasetSummary):
    raw_nbytes: int = Field(description="Sum over the volumes.")
    volumes: list[VolumeInfo]


class DatasetList(BaseModel):
    datasets: list[DatasetSummary]


class DatasetDeleted(BaseModel):
    id: str
    volumes_deleted: int
    jobs_cancelled: int = Field(description="Unfinished sweep jobs over the dataset, cancelled.")


# -- sweeps --------------------------------------------------------------------------
class SweepRequest(BaseModel):
    dataset: str = Field(pattern=ID_PATTERN, description="The dataset id.")
    grid: list[str] | None = Field(
        None,
        description='Codec specs, e.g. ["zfp:rate=2", "zfp:tolerance=500"]. Default: the '
        "paper's grid (fixed rate 16, 8, 4, 2 bits/voxel; tolerance 500, 1000, 1500). The "
        'uncompressed baseline ("none") is always added.',
        max_length=64,
    )
    model: str | None = Field(None, description="Segmenter; the server's default when omitted.")
    queue: Literal["gpu", "cpu"] | None = Field(
        None, description="Worker queue; the server's default when omitted."
    )


class SweepLinks(BaseModel):
    self: str
    tables: str = Field(description="Per-setting table; ?format=json|csv|md.")
    cases: str = Field(description="Per-volume results; ?format=json|csv.")
    figures: dict[str, str] = Field(description="PNG figures by name.")


class SweepCreated(BaseModel):
    id: str
    url: str
    created: bool = Field(description="False when the sweep existed (same idempotency key).")
    total_jobs: int = Field(description="Volumes x settings (baseline included).")
    jobs_submitted: int = Field(description="Jobs queued by this request.")
    jobs_reused: int = Field(description="Jobs already queued, running or finished, reused.")
    links: SweepLinks


class SweepProgress(BaseModel):
    state: Literal["queued", "running", "finished", "failed"] = Field(
        description="failed: every job ended and at least one did not finish."
    )
    total: int
    done: int = Field(description="Jobs that ended (finished, failed, cancelled or lost).")
    fraction: float
    counts: dict[str, int] = Field(description="Jobs per state.")
    elapsed_s: float = Field(description="Since the sweep was (re)submitted.")
    eta_s: float | None = Field(
        description="Remaining jobs x (elapsed / jobs finished since submission); null "
        "until one has finished."
    )


class SettingRow(BaseModel):
    """One setting over the dataset's volumes (the paper's Tables 1-4, and more)."""

    setting: str = Field(description='Codec spec; "none" is the uncompressed baseline.')
    codec: dict[str, Any]
    group: Literal["baseline", "fixed_rate", "tolerance", "other"]
    mode: str | None
    parameter: float | None = Field(description="Bits/voxel (rate) or the error bound.")
    n_volumes: int
    n_finished: int = Field(description="Volumes the means below are over.")
    n_failed: int
    raw_mb: float = Field(description="Sum of raw voxel bytes / 1e6.")
    compressed_mb: float = Field(description="Sum of stored blob bytes / 1e6.")
    cr_pooled: float | None = Field(description="Sum raw bytes / sum blob bytes (the paper's CR).")
    cr_mean: float | None = Field(description="Mean of per-volume CRs.")
    cr_payload_pooled: float | None = Field(
        description="Sum raw bytes / sum codec payload bytes (no container header)."
    )
    bits_per_voxel: float | None = Field(description="8 x sum blob bytes / sum voxels.")
    psnr_mean_db: float | None = Field(description="Mean per-volume PSNR; lossless ones left out.")
    psnr_n: int
    ssim_mean: float | None
    max_abs_error: float | None
    compress_mb_s: float | None = Field(description="Sum raw MB / sum compress seconds.")
    decompress_mb_s: float | None = Field(description="Sum raw MB / sum decompress seconds.")
    n_scored: int = Field(description="Volumes with a truth mask.")
    dice_mean: float | None
    iou_mean: float | None
    sensitivity_mean: float | None
    precision_mean: float | None
    volume_similarity_mean: float | None
    hd95_mean_mm: float | None
    n_pairs: int | None = Field(description="Volumes scored here and uncompressed.")
    delta_dice_mean: float | None = Field(description="Mean of Dice(setting) - Dice(none).")
    delta_dice_ci_low: float | None = Field(description="95% bootstrap CI (BCa, seed 0).")
    delta_dice_ci_high: float | None
    wilcoxon_p: float | None = Field(description="Two-sided Wilcoxon signed-rank p.")


class CaseRow(BaseModel):
    """One volume under one setting."""

    volume: str
    setting: str
    group: str
    state: str
    job_id: str
    error: str | None
    voxels: int | None
    raw_nbytes: int | None
    blob_nbytes: int | None
    payload_nbytes: int | None
    cr: float | None
    bits_per_voxel: float | None
    psnr_db: float | None
    ssim: float | None
    max_abs_error: float | None
    compress_s: float | None
    decompress_s: float | None
    dice: float | None
    iou: float | None
    sensitivity: float | None
    precision: float | None
    volume_similarity: float | None
    hd95_mm: float | None
    delta_dice: float | None = Field(description="Dice here minus Dice uncompressed.")


class CellFailure(BaseModel):
    volume: str
    setting: str
    state: str
    job_id: str
    error: str | None


class SweepStatus(BaseModel):
    id: str
    url: str
    dataset: str
    dataset_name: str | None
    model: str
    queue: str
    grid: list[str] = Field(description="Codec specs, the baseline first.")
    n_volumes: int
    created_at: datetime
    progress: SweepProgress
    settings: list[SettingRow] = Field(description="Aggregated over the jobs finished so far.")
    failures: list[CellFailure] = Field(
        description="Jobs that failed, were cancelled or were lost; POST the sweep again "
        "to rerun them."
    )
    links: SweepLinks


class SweepTables(BaseModel):
    sweep_id: str
    dataset_id: str
    model: str
    n_volumes: int
    progress: SweepProgress
    settings: list[SettingRow]
    columns: dict[str, str] = Field(description="What each column of `settings` is.")


class SweepCases(BaseModel):
    sweep_id: str
    cases: list[CaseRow]


class SweepSummary(BaseModel):
    id: str
    url: str
    dataset: str
    model: str
    grid: list[str]
    total_jobs: int
    created_at: datetime


class SweepList(BaseModel):
    sweeps: list[SweepSummary]
