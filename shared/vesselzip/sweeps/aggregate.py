"""Per-volume results -> one row per (volume, setting) and one per setting (Tables
1-4 of the paper, plus HD95, throughput and paired statistics against the baseline).
What each column is: vesselzip.sweeps.rows."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import TypedDict

import numpy as np
from pydantic import BaseModel

from vesselzip.jobs import LOST, JobOutcome, JobState
from vesselzip.sweeps.grid import setting_group, setting_spec
from vesselzip.sweeps.progress import SweepProgress, progress_of
from vesselzip.sweeps.rows import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MB,
    CaseRow,
    SettingRow,
)
from vesselzip.sweeps.stored import SweepSpec

_UNSUCCESSFUL = (JobState.FAILED, JobState.CANCELLED, LOST)


class SweepResults(BaseModel):
    """Everything GET /v1/sweeps/{id} shows about results: progress, per-setting rows
    and per-volume rows."""

    sweep_id: str
    dataset_id: str
    model: str
    n_volumes: int
    progress: SweepProgress
    settings: list[SettingRow]
    cases: list[CaseRow]


def sweep_summary(
    spec: SweepSpec, outcomes: dict[str, JobOutcome], now: float | None = None
) -> SweepResults:
    cases = case_rows(spec, outcomes)
    return SweepResults(
        sweep_id=spec.id,
        dataset_id=spec.dataset_id,
        model=spec.model,
        n_volumes=len({c.volume_id for c in spec.cells}),
        progress=progress_of(spec, outcomes, now),
        settings=setting_rows(spec, cases),
        cases=cases,
    )


def case_rows(spec: SweepSpec, outcomes: dict[str, JobOutcome]) -> list[CaseRow]:
    """One row per (volume, setting) of the sweep, in dataset and grid order; the
    metrics are None until the job has finished. `delta_dice` is the setting's Dice
    minus the baseline's Dice on the same volume."""
    rows = []
    for cell in spec.cells:
        config = spec.grid[cell.setting]
        outcome = outcomes[cell.job_id]
        result = outcome.result if outcome.state == JobState.FINISHED else None
        compression = result.compression if result else {}
        segmentation = (result.segmentation or {}) if result else {}
        agreement = (result.agreement or {}) if result else {}
        rows.append(
            CaseRow(
                volume=cell.volume_id,
                setting=setting_spec(config),
                group=setting_group(config),
                state=outcome.state,
                job_id=cell.job_id,
                error=outcome.error,
                voxels=math.prod(result.image.shape) if result else None,
                raw_nbytes=compression.get("raw_nbytes"),
                blob_nbytes=compression.get("blob_nbytes"),
                payload_nbytes=compression.get("payload_nbytes"),
                cr=compression.get("cr_raw"),
                bits_per_voxel=compression.get("bits_per_voxel"),
                psnr_db=compression.get("psnr_db"),
                ssim=compression.get("ssim"),
                max_abs_error=compression.get("max_abs_error"),
                compress_s=compression.get("compress_s"),
                decompress_s=compression.get("decompress_s"),
                dice=segmentation.get("dice"),
                iou=segmentation.get("iou"),
                sensitivity=segmentation.get("sensitivity"),
                precision=segmentation.get("precision"),
                volume_similarity=segmentation.get("volume_similarity"),
                hd95_mm=segmentation.get("hd95_mm"),
                delta_dice=None,
                agreement_dice=agreement.get("dice"),
                agreement_iou=agreement.get("iou"),
                agreement_hd95_mm=agreement.get("hd95_mm"),
            )
        )
    baseline_dice = {
        row.volume: row.dice for row in rows if row.group == "baseline" and row.dice is not None
    }
    for row in rows:
        if row.dice is not None and row.volume in baseline_dice:
            row.delta_dice = row.dice - baseline_dice[row.volume]
    return rows


class PairedStatistics(TypedDict):
    n_pairs: int | None
    delta_dice_mean: float | None
    delta_dice_ci_low: float | None
    delta_dice_ci_high: float | None
    wilcoxon_p: float | None


def paired_statistics(deltas: Sequence[float]) -> PairedStatistics:
    """Mean of paired differences, its 95% bootstrap CI and the Wilcoxon signed-rank
    p-value (two-sided).

    - CI: scipy.stats.bootstrap of the mean, BCa, 9999 resamples, seed 0 (percentile
      when BCa is undefined); (d, d) when every difference is d; None when n < 2.
    - p: scipy.stats.wilcoxon (zero differences dropped, exact for small n); 1.0
      when every difference is 0; None when n < 2."""
    from scipy import stats

    d = np.asarray(deltas, dtype=np.float64)
    n = int(d.size)
    out: PairedStatistics = {
        "n_pairs": n,
        "delta_dice_mean": float(d.mean()) if n else None,
        "delta_dice_ci_low": None,
        "delta_dice_ci_high": None,
        "wilcoxon_p": None,
    }
    if n < 2:
        return out
    if np.all(d == d[0]):
        out["delta_dice_ci_low"] = out["delta_dice_ci_high"] = float(d[0])
    else:
        for method in ("BCa", "percentile"):
            with warnings.catch_warnings():  # BCa warns where it is undefined; see below
                warnings.simplefilter("ignore")
                interval = stats.bootstrap(
                    (d,),
                    np.mean,
                    n_resamples=BOOTSTRAP_RESAMPLES,
                    confidence_level=0.95,
                    method=method,
                    rng=np.random.default_rng(BOOTSTRAP_SEED),
                ).confidence_interval
            if math.isfinite(interval.low) and math.isfinite(interval.high):
                break
        out["delta_dice_ci_low"] = float(interval.low)
        out["delta_dice_ci_high"] = float(interval.high)
    out["wilcoxon_p"] = 1.0 if np.all(d == 0) else float(stats.wilcoxon(d).pvalue)
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _rate(nbytes: float, seconds: Sequence[float | None]) -> float | None:
    """MB/s over every volume; None unless each one was timed."""
    known = [s for s in seconds if s is not None]
    if not seconds or len(known) < len(seconds) or sum(known) <= 0:
        return None
    return nbytes / MB / sum(known)


def setting_rows(spec: SweepSpec, cases: list[CaseRow]) -> list[SettingRow]:
    """One row per setting, over its finished volumes (see vesselzip.sweeps.rows)."""
    rows = []
    for index, config in enumerate(spec.grid):
        label = setting_spec(config)
        mine = [c for c in cases if c.setting == label]
        done = [c for c in mine if c.state == "finished"]
        raw = sum(c.raw_nbytes or 0 for c in done)
        blob = sum(c.blob_nbytes or 0 for c in done)
        payloads = [c.payload_nbytes for c in done]
        payload = sum(p or 0 for p in payloads) if done and None not in payloads else None
        voxels = sum(c.voxels or 0 for c in done)
        errors = [c.max_abs_error for c in done if c.max_abs_error is not None]
        if index == 0:  # the baseline is the reference, not compared with itself
            paired = paired_statistics([])
            paired["n_pairs"] = paired["delta_dice_mean"] = None
        else:
            paired = paired_statistics([c.delta_dice for c in done if c.delta_dice is not None])
        rows.append(
            SettingRow(
                setting=label,
                codec=config,
                group=setting_group(config),
                mode=config.get("mode"),
                parameter=config.get("value"),
                n_volumes=len(mine),
                n_finished=len(done),
                n_failed=sum(c.state in _UNSUCCESSFUL for c in mine),
                raw_mb=raw / MB,
                compressed_mb=blob / MB,
                cr_pooled=raw / blob if blob else None,
                cr_mean=_mean(c.cr for c in done),
                cr_payload_pooled=raw / payload if payload else None,
                bits_per_voxel=8.0 * blob / voxels if voxels else None,
                psnr_mean_db=_mean(c.psnr_db for c in done),
                psnr_n=sum(c.psnr_db is not None for c in done),
                ssim_mean=_mean(c.ssim for c in done),
                max_abs_error=max(errors, default=None),
                compress_mb_s=_rate(raw, [c.compress_s for c in done]),
                decompress_mb_s=_rate(raw, [c.decompress_s for c in done]),
                n_scored=sum(c.dice is not None for c in done),
                dice_mean=_mean(c.dice for c in done),
                iou_mean=_mean(c.iou for c in done),
                sensitivity_mean=_mean(c.sensitivity for c in done),
                precision_mean=_mean(c.precision for c in done),
                volume_similarity_mean=_mean(c.volume_similarity for c in done),
                hd95_mean_mm=_mean(c.hd95_mm for c in done),
                **paired,
                n_agreement=sum(c.agreement_dice is not None for c in done),
                agreement_dice_mean=_mean(c.agreement_dice for c in done),
                agreement_dice_min=min(
                    (c.agreement_dice for c in done if c.agreement_dice is not None), default=None
                ),
                agreement_iou_mean=_mean(c.agreement_iou for c in done),
                agreement_hd95_mean_mm=_mean(c.agreement_hd95_mm for c in done),
            )
        )
    return rows
