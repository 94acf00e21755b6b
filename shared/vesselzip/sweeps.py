"""Sweeps: every compression setting of a grid on every volume of a dataset, against
the uncompressed baseline, summarised in the paper's tables and figures.

* Grid: codec configs; the baseline ("none") is always first. One job per
  (volume, setting), with an id derived from (dataset, volume, codec, model), so a
  job is shared by every sweep that needs it: the baseline runs once per volume and
  model, and a resubmitted or overlapping sweep reuses finished results.
* Aggregation: per-volume results -> one row per setting (Tables 1-4 of the paper,
  plus HD95, throughput and paired statistics against the baseline).
* Output: JSON-ready dicts, CSV, Markdown and PNG figures.

Every definition is written out in docs/sweeps.md; keep the two in step."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from vesselzip.errors import InvalidCodecConfigError, NotFoundError, VesselzipError
from vesselzip.jobs import JobResult
from vesselzip.store import BlobStore

#: The paper's grid: ZFP fixed rate 16, 8, 4, 2 bits/voxel and absolute error
#: tolerance 500, 1000, 1500 (the baseline is added to every grid).
PAPER_GRID = (
    "zfp:rate=16",
    "zfp:rate=8",
    "zfp:rate=4",
    "zfp:rate=2",
    "zfp:tolerance=500",
    "zfp:tolerance=1000",
    "zfp:tolerance=1500",
)
BASELINE: dict[str, Any] = {"id": "none"}
FIGURES = ("fixed_rate", "tolerance", "psnr_vs_bpv")
MB = 1e6  # tables use decimal megabytes
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0

Group = Literal["baseline", "fixed_rate", "tolerance", "other"]


class SweepNotReadyError(VesselzipError):
    """Nothing has finished yet to summarise."""

    http_status = 409


class SweepConflictError(VesselzipError):
    """An idempotency key reused for a different sweep."""

    http_status = 409


# -- grid ----------------------------------------------------------------------------
def canonical(config: dict[str, Any]) -> str:
    """One text per codec config (key order does not matter)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def parse_grid(specs: Sequence[str] | str | None) -> list[dict[str, Any]]:
    """Canonical codec configs for specs such as ["zfp:rate=2", "zfp:tolerance=500"]
    (or one comma-separated string); None means the paper's grid. The baseline comes
    first; duplicates are dropped, the order is kept."""
    from vesselzip.codecs import parse_codec_spec

    if specs is None:
        specs = PAPER_GRID
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    configs = [BASELINE]
    seen = {canonical(BASELINE)}
    for spec in specs:
        config = parse_codec_spec(spec)
        if canonical(config) not in seen:
            seen.add(canonical(config))
            configs.append(config)
    if len(configs) > 64:
        raise InvalidCodecConfigError(f"a grid holds at most 64 settings, got {len(configs)}")
    return configs


def setting_spec(config: dict[str, Any]) -> str:
    """The short text form of a config ("zfp:rate=2"); parse_codec_spec reads it back."""
    options = {k: v for k, v in config.items() if k != "id"}
    parts = []
    mode = options.pop("mode", None)
    if mode is not None:
        value = options.pop("value", None)
        parts.append(mode if value is None else f"{mode}={_number_text(value)}")
    parts += [f"{key}={_number_text(value)}" for key, value in sorted(options.items())]
    return config["id"] + (":" + "+".join(parts) if parts else "")


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_group(config: dict[str, Any]) -> Group:
    if config.get("id") == "none":
        return "baseline"
    if config.get("id") == "zfp" and config.get("mode") == "rate":
        return "fixed_rate"
    if config.get("id") == "zfp" and config.get("mode") == "tolerance":
        return "tolerance"
    return "other"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def cell_job_id(dataset_id: str, volume: str, codec: dict[str, Any], model: str) -> str:
    """The job for one volume and setting; the same for every sweep that needs it.
    `volume` names the volume and its content (VolumeEntry.fingerprint), so a volume
    replaced under the same name never reuses the old one's results."""
    return _digest("cell", dataset_id, volume, canonical(codec), model)


def default_idempotency_key(
    dataset_id: str, volumes: Sequence[str], grid: list[dict[str, Any]], model: str
) -> str:
    """What identifies a sweep when the client gives no key: the same volumes (by
    fingerprint), set of settings and model is the same sweep. A volume added later
    makes a new sweep, which reuses every job of the old one."""
    return _digest(
        "sweep", dataset_id, *sorted(volumes), "", *sorted(canonical(c) for c in grid), model
    )


def sweep_id_for(owner: str | None, idempotency_key: str) -> str:
    return _digest("sweep-id", owner or "", idempotency_key)


# -- the stored sweep ----------------------------------------------------------------
class SweepCell(BaseModel):
    volume_id: str
    setting: int = Field(description="Index into the sweep's grid.")
    job_id: str


class SweepSpec(BaseModel):
    """A sweep as stored (sweeps/<id>.json); its results live with its jobs."""

    id: str
    owner: str | None = None
    dataset_id: str
    dataset_name: str | None = None
    model: str
    queue: str
    grid: list[dict[str, Any]]
    idempotency_key: str
    created_at: float = Field(default_factory=time.time)
    # When it was last (re)submitted: jobs finished since then pace the ETA.
    submitted_at: float = Field(default_factory=time.time)
    cells: list[SweepCell] = Field(default_factory=list)


def sweep_key(sweep_id: str) -> str:
    return f"sweeps/{sweep_id}.json"


def save_sweep(store: BlobStore, spec: SweepSpec) -> None:
    store.put_json(sweep_key(spec.id), spec.model_dump(mode="json"))


def load_sweep(store: BlobStore, sweep_id: str) -> SweepSpec:
    try:
        return SweepSpec.model_validate(store.get_json(sweep_key(sweep_id)))
    except NotFoundError:
        raise NotFoundError(f"no sweep {sweep_id}") from None


def list_sweeps(store: BlobStore) -> list[SweepSpec]:
    """Every stored sweep, oldest first (scans the store)."""
    sweeps = []
    for key in store.keys("sweeps"):
        if key.endswith(".json"):
            sweeps.append(SweepSpec.model_validate(store.get_json(key)))
    return sorted(sweeps, key=lambda s: (s.created_at, s.id))


# -- progress ------------------------------------------------------------------------
class CellOutcome(BaseModel):
    """Where one cell's job stands: queued | running | finished | failed | cancelled
    | lost (no record and no result: Redis lost it before it ran)."""

    state: str
    result: JobResult | None = None
    error: str | None = None


TERMINAL = ("finished", "failed", "cancelled", "lost")


def progress_of(
    spec: SweepSpec, outcomes: dict[str, CellOutcome], now: float | None = None
) -> dict[str, Any]:
    """Counts per state, done/total and an ETA paced by the jobs that finished since
    the sweep was (re)submitted (None until one has)."""
    now = time.time() if now is None else now
    counts = {state: 0 for state in ("queued", "running", "finished", "failed", "cancelled")}
    counts["lost"] = 0
    paced = 0
    for cell in spec.cells:
        outcome = outcomes[cell.job_id]
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
        if outcome.result is not None and outcome.result.finished_at >= spec.submitted_at:
            paced += 1
    total = len(spec.cells)
    done = sum(counts[s] for s in TERMINAL)
    elapsed = max(0.0, now - spec.submitted_at)
    eta = None
    if done == total:
        eta = 0.0
    elif paced and elapsed > 0:
        eta = (total - done) * elapsed / paced
    if done < total:
        state = (
            "running" if counts["running"] or counts["finished"] + counts["failed"] else "queued"
        )
    else:
        state = "finished" if counts["finished"] == total else "failed"
    return {
        "state": state,
        "total": total,
        "done": done,
        "fraction": done / total if total else 1.0,
        "counts": counts,
        "elapsed_s": elapsed,
        "eta_s": eta,
    }


# -- aggregation ---------------------------------------------------------------------
_SEGMENTATION_KEYS = ("dice", "iou", "sensitivity", "precision", "volume_similarity", "hd95_mm")


def case_rows(spec: SweepSpec, outcomes: dict[str, CellOutcome]) -> list[dict[str, Any]]:
    """One row per (volume, setting) of the sweep, in dataset and grid order; the
    metrics are None until the job has finished. `delta_dice` is the setting's Dice
    minus the baseline's Dice on the same volume."""
    rows = []
    for cell in spec.cells:
        config = spec.grid[cell.setting]
        outcome = outcomes[cell.job_id]
        row: dict[str, Any] = {
            "volume": cell.volume_id,
            "setting": setting_spec(config),
            "group": setting_group(config),
            "state": outcome.state,
            "job_id": cell.job_id,
            "error": outcome.error,
        }
        result = outcome.result if outcome.state == "finished" else None
        compression = result.compression if result else {}
        segmentation = (result.segmentation or {}) if result else {}
        voxels = math.prod(result.image.shape) if result else None
        row.update(
            voxels=voxels,
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
            **{key: segmentation.get(key) for key in _SEGMENTATION_KEYS},
            delta_dice=None,
        )
        rows.append(row)
    baseline_dice = {
        row["volume"]: row["dice"]
        for row in rows
        if row["group"] == "baseline" and row["dice"] is not None
    }
    for row in rows:
        if row["dice"] is not None and row["volume"] in baseline_dice:
            row["delta_dice"] = row["dice"] - baseline_dice[row["volume"]]
    return rows


def paired_statistics(deltas: Sequence[float]) -> dict[str, Any]:
    """Mean of paired differences, its 95% bootstrap CI and the Wilcoxon signed-rank
    p-value (two-sided).

    - CI: scipy.stats.bootstrap of the mean, BCa, 9999 resamples, seed 0 (percentile
      when BCa is undefined); (d, d) when every difference is d; None when n < 2.
    - p: scipy.stats.wilcoxon (zero differences dropped, exact for small n); 1.0
      when every difference is 0; None when n < 2."""
    from scipy import stats

    d = np.asarray(deltas, dtype=np.float64)
    n = int(d.size)
    out: dict[str, Any] = {
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


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _rate(nbytes: float, seconds: list[float | None]) -> float | None:
    if not seconds or any(s is None for s in seconds) or sum(seconds) <= 0:
        return None
    return nbytes / MB / sum(seconds)


def setting_rows(spec: SweepSpec, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting, over its finished volumes (see docs/sweeps.md)."""
    rows = []
    for index, config in enumerate(spec.grid):
        label = setting_spec(config)
        mine = [c for c in cases if c["setting"] == label]
        done = [c for c in mine if c["state"] == "finished"]
        raw = sum(c["raw_nbytes"] for c in done)
        blob = sum(c["blob_nbytes"] for c in done)
        payloads = [c["payload_nbytes"] for c in done]
        payload = sum(payloads) if done and None not in payloads else None
        voxels = sum(c["voxels"] for c in done)
        row: dict[str, Any] = {
            "setting": label,
            "codec": config,
            "group": setting_group(config),
            "mode": config.get("mode"),
            "parameter": config.get("value"),
            "n_volumes": len(mine),
            "n_finished": len(done),
            "n_failed": sum(c["state"] in ("failed", "cancelled", "lost") for c in mine),
            "raw_mb": raw / MB,
            "compressed_mb": blob / MB,
            "cr_pooled": raw / blob if blob else None,
            "cr_mean": _mean(c["cr"] for c in done),
            "cr_payload_pooled": raw / payload if payload else None,
            "bits_per_voxel": 8.0 * blob / voxels if voxels else None,
            "psnr_mean_db": _mean(c["psnr_db"] for c in done),
            "psnr_n": sum(c["psnr_db"] is not None for c in done),
            "ssim_mean": _mean(c["ssim"] for c in done),
            "max_abs_error": max((c["max_abs_error"] for c in done), default=None),
            "compress_mb_s": _rate(raw, [c["compress_s"] for c in done]),
            "decompress_mb_s": _rate(raw, [c["decompress_s"] for c in done]),
            "n_scored": sum(c["dice"] is not None for c in done),
            "dice_mean": _mean(c["dice"] for c in done),
            "iou_mean": _mean(c["iou"] for c in done),
            "sensitivity_mean": _mean(c["sensitivity"] for c in done),
            "precision_mean": _mean(c["precision"] for c in done),
            "volume_similarity_mean": _mean(c["volume_similarity"] for c in done),
            "hd95_mean_mm": _mean(c["hd95_mm"] for c in done),
        }
        if index == 0:  # the baseline is the reference, not compared with itself
            row.update(paired_statistics([]), n_pairs=None, delta_dice_mean=None)
        else:
            row.update(
                paired_statistics([c["delta_dice"] for c in done if c["delta_dice"] is not None])
            )
        rows.append(row)
    return rows


# -- formats -------------------------------------------------------------------------
#: CSV columns of the per-setting table, with what each one is.
SETTING_COLUMNS = {
    "setting": "codec spec (none = the uncompressed baseline)",
    "group": "baseline | fixed_rate | tolerance | other",
    "mode": "ZFP mode",
    "parameter": "bits/voxel (rate) or absolute error bound (tolerance)",
    "n_volumes": "volumes in the sweep",
    "n_finished": "volumes whose job finished (the rows below average over these)",
    "n_failed": "failed, cancelled or lost jobs",
    "raw_mb": "sum of raw voxel bytes / 1e6",
    "compressed_mb": "sum of stored blob bytes / 1e6 (container header included)",
    "cr_pooled": "sum raw bytes / sum blob bytes (the paper's Original Size / Compressed Size)",
    "cr_mean": "mean over volumes of raw bytes / blob bytes",
    "cr_payload_pooled": "sum raw bytes / sum codec payload bytes (bare ZFP stream, no header)",
    "bits_per_voxel": "8 x sum blob bytes / sum voxels",
    "psnr_mean_db": "mean per-volume PSNR, lossless volumes (infinite PSNR) left out",
    "psnr_n": "volumes in the PSNR mean",
    "ssim_mean": "mean per-volume 3D SSIM",
    "max_abs_error": "largest per-volume max |original - decoded|",
    "compress_mb_s": "sum raw MB / sum compress seconds",
    "decompress_mb_s": "sum raw MB / sum decompress seconds",
    "n_scored": "volumes with a truth mask",
    "dice_mean": "mean per-volume Dice",
    "iou_mean": "mean per-volume IoU",
    "sensitivity_mean": "mean per-volume sensitivity",
    "precision_mean": "mean per-volume precision",
    "volume_similarity_mean": "mean per-volume volume similarity",
    "hd95_mean_mm": "mean per-volume HD95 in mm (undefined ones left out)",
    "n_pairs": "volumes scored both here and uncompressed",
    "delta_dice_mean": "mean paired Dice(setting) - Dice(uncompressed)",
    "delta_dice_ci_low": "95% bootstrap CI of the mean paired difference, low",
    "delta_dice_ci_high": "95% bootstrap CI of the mean paired difference, high",
    "wilcoxon_p": "Wilcoxon signed-rank p-value of the paired differences",
}
CASE_COLUMNS = (
    "volume",
    "setting",
    "group",
    "state",
    "voxels",
    "raw_nbytes",
    "blob_nbytes",
    "payload_nbytes",
    "cr",
    "bits_per_voxel",
    "psnr_db",
    "ssim",
    "max_abs_error",
    "compress_s",
    "decompress_s",
    *_SEGMENTATION_KEYS,
    "delta_dice",
    "job_id",
    "error",
)


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _csv_value(row[c]) for c in columns])
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value  # repr: every digit


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def _ratio_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} : 1"


def _delta_text(row: dict[str, Any]) -> str:
    if row["delta_dice_mean"] is None:
        return "reference" if row["group"] == "baseline" else "–"
    text = f"{row['delta_dice_mean']:+.5f}"
    if row["delta_dice_ci_low"] is not None:
        text += f" [{row['delta_dice_ci_low']:+.5f}, {row['delta_dice_ci_high']:+.5f}]"
    return text


def _parameter_text(row: dict[str, Any]) -> str:
    if row["group"] == "baseline":
        return "none (uncompressed)"
    if row["group"] in ("fixed_rate", "tolerance"):
        return _number_text(row["parameter"])
    return row["setting"]


def markdown_tables(summary: dict[str, Any]) -> str:
    """The paper's Tables 1-4 (fixed rate, then tolerance; each with the baseline row)
    plus the settings that fit neither, from `summary` as sweep_summary returns it."""
    rows = summary["settings"]
    baseline = [r for r in rows if r["group"] == "baseline"]
    original_mb = baseline[0]["raw_mb"] if baseline else 0.0
    lines = [
        f"Sweep `{summary['sweep_id']}` — dataset `{summary['dataset_id']}` "
        f"({summary['n_volumes']} volumes, original data size {original_mb:.2f} MB), "
        f"model `{summary['model']}`; {summary['progress']['done']}/"
        f"{summary['progress']['total']} jobs done.",
        "",
    ]
    sections = [
        ("fixed_rate", "ZFP fixed-rate", "Rate (bits/voxel)", 1),
        ("tolerance", "ZFP error-tolerance", "Abs. error tolerance", 3),
        ("other", "Other settings", "Setting", 5),
    ]
    for group, title, first_column, number in sections:
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        table_rows = baseline + group_rows
        lines += [
            f"**Table {number}: {title} compression results** "
            f"(original data size: {original_mb:.2f} MB)",
            "",
            f"| {first_column} | Compressed size (MB) | CR, pooled (Σraw/Σblob) "
            "| CR, mean per volume | CR, codec stream (Σraw/Σpayload) | Avg. PSNR (dB) "
            "| Avg. SSIM | Bits/voxel | Compress MB/s | Decompress MB/s | Volumes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in table_rows:
            lines.append(
                f"| {_parameter_text(r)} | {_fmt(r['compressed_mb'], 2)} "
                f"| {_ratio_text(r['cr_pooled'])} | {_ratio_text(r['cr_mean'])} "
                f"| {_ratio_text(r['cr_payload_pooled'])} | {_fmt(r['psnr_mean_db'], 4)} | {_fmt(r['ssim_mean'], 4)} "
                f"| {_fmt(r['bits_per_voxel'], 3)} | {_fmt(r['compress_mb_s'], 1)} "
                f"| {_fmt(r['decompress_mb_s'], 1)} | {r['n_finished']}/{r['n_volumes']} |"
            )
        lines += [
            "",
            f"**Table {number + 1}: Segmentation performance, {title}**",
            "",
            f"| {first_column} | Mean Dice | Mean IoU | Mean sensitivity "
            "| Mean volume similarity | Mean HD95 (mm) | ΔDice vs uncompressed [95% CI] "
            "| Wilcoxon p | Pairs |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for r in table_rows:
            pairs = "–" if r["n_pairs"] is None else str(r["n_pairs"])
            lines.append(
                f"| {_parameter_text(r)} | {_fmt(r['dice_mean'], 5)} | {_fmt(r['iou_mean'], 5)} "
                f"| {_fmt(r['sensitivity_mean'], 5)} | {_fmt(r['volume_similarity_mean'], 5)} "
                f"| {_fmt(r['hd95_mean_mm'], 3)} | {_delta_text(r)} "
                f"| {_fmt(r['wilcoxon_p'], 4)} | {pairs} |"
            )
        lines.append("")
    lines += [
        "CR, pooled = total raw voxel bytes / total stored blob bytes (the paper's "
        "definition); CR, mean per volume = mean of each volume's ratio; blobs include "
        "the .vz container header, the codec stream (payload) does not. Avg. PSNR leaves out lossless volumes (infinite PSNR). "
        "ΔDice = Dice(setting) − Dice(uncompressed) on the same volume; the interval is "
        "a 95% BCa bootstrap of the mean (9999 resamples, seed 0); p is the two-sided "
        "Wilcoxon signed-rank test (1.0 when every difference is 0).",
        "",
    ]
    return "\n".join(lines)


def sweep_summary(
    spec: SweepSpec, outcomes: dict[str, CellOutcome], now: float | None = None
) -> dict[str, Any]:
    """Everything GET /v1/sweeps/{id} shows about results: progress, per-setting rows
    and per-volume rows."""
    cases = case_rows(spec, outcomes)
    return {
        "sweep_id": spec.id,
        "dataset_id": spec.dataset_id,
        "model": spec.model,
        "n_volumes": len({c.volume_id for c in spec.cells}),
        "progress": progress_of(spec, outcomes, now),
        "settings": setting_rows(spec, cases),
        "cases": cases,
    }


# -- figures -------------------------------------------------------------------------
def figure_png(summary: dict[str, Any], name: str) -> bytes:
    """One of FIGURES as PNG: the paper's dual-axis CR / mean Dice plots for fixed
    rate (Figure 2) and tolerance (Figure 3), and PSNR against bits/voxel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if name not in FIGURES:
        raise NotFoundError(f"no figure {name!r}; figures: {', '.join(FIGURES)}")
    rows = summary["settings"]
    figure = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if name == "psnr_vs_bpv":
        _psnr_plot(axes, rows)
    else:
        _dual_axis_plot(axes, rows, "fixed_rate" if name == "fixed_rate" else "tolerance")
    figure.suptitle(
        f"{summary['model']} on {summary['n_volumes']} volumes "
        f"({summary['progress']['done']}/{summary['progress']['total']} jobs done)",
        fontsize=8,
        color="0.4",
    )
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _finished(rows: list[dict[str, Any]], group: str, what: str) -> list[dict[str, Any]]:
    chosen = [r for r in rows if r["group"] == group]
    if not chosen:
        raise NotFoundError(f"the sweep has no {what} settings")
    done = [r for r in chosen if r["n_finished"]]
    if not done:
        raise SweepNotReadyError(f"no {what} job has finished yet")
    return done


def _dual_axis_plot(axes, rows: list[dict[str, Any]], group: str) -> None:
    fixed_rate = group == "fixed_rate"
    what = "fixed-rate" if fixed_rate else "tolerance"
    chosen = sorted(_finished(rows, group, what), key=lambda r: r["parameter"], reverse=fixed_rate)
    labels = [_number_text(r["parameter"]) for r in chosen]
    x = np.arange(len(chosen))
    cr = [r["cr_pooled"] for r in chosen]
    axes.plot(x, cr, "o-", color="tab:blue", label="compression ratio (pooled)")
    for xi, value in zip(x, cr, strict=True):
        axes.annotate(
            f"{value:.2f}",
            (xi, value),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
            color="tab:blue",
        )
    axes.set_xticks(x, labels)
    axes.set_xlabel("rate (bits/voxel)" if fixed_rate else "absolute error tolerance")
    axes.set_ylabel("compression ratio (Σraw / Σblob)", color="tab:blue")
    axes.set_ylim(0, max(cr) * 1.15)  # room for the labels above the points

    dice_axes = axes.twinx()
    dice = [r["dice_mean"] for r in chosen]
    if any(d is not None for d in dice):
        dice_axes.plot(
            x, [np.nan if d is None else d for d in dice], "s-", color="tab:red", label="mean Dice"
        )
        baseline = next((r for r in rows if r["group"] == "baseline"), None)
        if baseline and baseline["dice_mean"] is not None:
            base = baseline["dice_mean"]
            dice_axes.axhline(
                base,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"uncompressed mean Dice {base:.4f}",
            )
            # The paired CI, shifted onto the Dice axis: uncompressed mean + [low, high].
            if all(r["delta_dice_ci_low"] is not None and r["dice_mean"] for r in chosen):
                means = [r["dice_mean"] for r in chosen]
                low = [base + r["delta_dice_ci_low"] for r in chosen]
                high = [base + r["delta_dice_ci_high"] for r in chosen]
                dice_axes.errorbar(
                    x,
                    means,
                    yerr=[
                        [max(0.0, m - lo) for m, lo in zip(means, low, strict=True)],
                        [max(0.0, hi - m) for m, hi in zip(means, high, strict=True)],
                    ],
                    fmt="none",
                    ecolor="tab:red",
                    alpha=0.5,
                    capsize=3,
                    label="95% CI of paired ΔDice (+ uncompressed mean)",
                )
        dice_axes.set_ylabel("mean Dice", color="tab:red")
    # One legend under the plot, where it hides no point of either axis.
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = dice_axes.get_legend_handles_labels()
    axes.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    axes.set_title(
        f"ZFP {what} mode: compression ratio and mean Dice"
        + (" (paper Figure 2)" if fixed_rate else " (paper Figure 3)"),
        fontsize=10,
    )


def _psnr_plot(axes, rows: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import ScalarFormatter

    points = [r for r in rows if r["psnr_mean_db"] is not None and r["bits_per_voxel"]]
    if not points:
        if not any(r["group"] != "baseline" for r in rows):
            raise NotFoundError("the sweep has no lossy settings")
        raise SweepNotReadyError("no lossy job has finished yet")
    markers = {
        "fixed_rate": ("o-", "fixed rate"),
        "tolerance": ("s-", "error tolerance"),
        "other": ("^", "other"),
    }
    for group, (style, label) in markers.items():
        mine = sorted((r for r in points if r["group"] == group), key=lambda r: r["bits_per_voxel"])
        if not mine:
            continue
        bpv = [r["bits_per_voxel"] for r in mine]
        psnr = [r["psnr_mean_db"] for r in mine]
        axes.plot(bpv, psnr, style, label=label)
        for r, xi, yi in zip(mine, bpv, psnr, strict=True):
            axes.annotate(
                r["setting"].removeprefix("zfp:"),
                (xi, yi),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("bits/voxel (stored blob, pooled over volumes)")
    axes.set_ylabel("mean PSNR (dB)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("PSNR against bits/voxel (lossless settings left out)", fontsize=10)
