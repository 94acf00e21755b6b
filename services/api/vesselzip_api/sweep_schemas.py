"""Request and response bodies of /v1/datasets and /v1/sweeps (what /openapi.json
promises). A sweep's rows and progress are the domain's own models: every column is
described once, in vesselzip.sweeps.rows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from vesselzip.sweeps import CaseRow, SettingRow, SweepProgress
from vesselzip.sweeps.grid import MAX_GRID_SETTINGS

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
        description='Codec specs, e.g. ["zfp:rate=2", "zfp:tolerance=500"], or grid names: '
        '"paper", "comparison" (every codec side by side, docs/codecs.md). Default: the '
        "paper's grid (fixed rate 16, 8, 4, 2 bits/voxel; tolerance 500, 1000, 1500). The "
        'uncompressed baseline ("none") is always added: at most '
        f"{MAX_GRID_SETTINGS} settings besides it.",
        max_length=MAX_GRID_SETTINGS,
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
    columns: dict[str, str] = Field(
        description="The CSV columns of `settings` (every field but `codec`) with their "
        "definitions."
    )


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
