"""Request and response bodies of /v1/tunings (what /openapi.json promises). The
search's own parts (per-volume paths, the dataset answer) are the domain's models,
described once in vesselzip.tunings.search."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from vesselzip.tunings import DatasetAnswer, VolumeSearch
from vesselzip_api.sweep_schemas import ID_PATTERN


class TuningRequest(BaseModel):
    dataset: str = Field(pattern=ID_PATTERN, description="The dataset id.")
    codec: str = Field(
        max_length=100,
        description="CODEC:MODE to search, e.g. zfp:tolerance, zfp:rate, sz3:tolerance, "
        "jpegls:near, jpeg2000:rate, sperr:psnr.",
    )
    max_dice_loss: float = Field(
        ge=0.0,
        le=1.0,
        description="The budget: how much Dice a volume may lose against its uncompressed "
        "baseline (score `truth`), or 1 − agreement Dice (score `agreement`).",
    )
    coverage: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Share of the volumes the dataset-level setting must keep within budget.",
    )
    score: Literal["auto", "truth", "agreement"] = Field(
        "auto",
        description="truth: Dice against each volume's truth, minus the baseline's; "
        "agreement: Dice against the same model's mask of the uncompressed volume (no "
        "truth needed); auto: truth when every volume has one, else agreement.",
    )
    range: tuple[float, float] | None = Field(
        None,
        description="Lowest and highest value of the mode to try; default: the mode's "
        "whole usual range (e.g. tolerance 0.001 to 10000, rate 0.25 to 16).",
    )
    model: str | None = Field(None, max_length=100, description="Default: the server's.")
    queue: Literal["gpu", "cpu"] | None = None


class TuningLinks(BaseModel):
    self: str
    dataset: str


class TuningCreated(BaseModel):
    id: str
    url: str
    created: bool = Field(description="False: the same tuning existed (failed jobs rerun).")
    axis: str
    candidates: int = Field(description="Values of the mode in the searched range.")
    volumes: int
    jobs_rerun: int = Field(
        description="Failed or cancelled jobs of an existing tuning queued again."
    )
    links: TuningLinks


class TuningProgress(BaseModel):
    state: Literal["queued", "running", "finished", "failed"] = Field(
        description="failed: the search ended without an answer for any volume."
    )
    done: int = Field(description="Jobs the search used that have ended.")
    total: int = Field(
        description="Jobs expected in all: an estimate (bisection depth per volume, plus "
        "the confirmation) until the search ends."
    )
    fraction: float
    elapsed_s: float
    eta_s: float | None


class TuningInferences(BaseModel):
    used: int = Field(description="Finished jobs (inferences) the search's answer rests on.")
    reused: int = Field(
        description="Of those, jobs that had run before this tuning (sweeps, tunings)."
    )
    ran: int = Field(description="Of those, jobs this tuning ran.")
    full_grid: int = Field(
        description="Jobs a sweep over every candidate value (and the baseline) would take "
        "to reach the same resolution."
    )


class TuningStatus(BaseModel):
    id: str
    url: str
    dataset: str
    dataset_name: str | None
    model: str
    axis: str
    range: tuple[float, float] = Field(description="The mildest and strongest value tried.")
    candidates: int
    score: Literal["truth", "agreement"] = Field(
        description="agreement scores are agreement with the uncompressed volume's mask, "
        "not accuracy."
    )
    max_dice_loss: float
    coverage: float
    created_at: datetime
    progress: TuningProgress
    answer: DatasetAnswer
    inferences: TuningInferences
    volumes: list[VolumeSearch]
    links: TuningLinks


class TuningSummary(BaseModel):
    id: str
    url: str
    dataset: str
    axis: str
    max_dice_loss: float
    score: str
    created_at: datetime


class TuningList(BaseModel):
    tunings: list[TuningSummary]
