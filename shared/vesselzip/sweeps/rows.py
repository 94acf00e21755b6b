"""The rows of a sweep's tables, and what every column is: the one description.

Each column is a field with a `title` (the header of the Markdown tables) and a
`description` (its definition). The CSV headers, the Markdown tables, the API's
schemas (/openapi.json and the `columns` of GET /v1/sweeps/{id}/tables) and the column
tables of docs/sweeps.md are all taken from here; tests/test_sweeps.py checks the docs
(`python -m vesselzip.sweeps --update-docs` rewrites them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from vesselzip.jobs import JobState
from vesselzip.sweeps.grid import Group

MB = 1e6  # tables use decimal megabytes
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0

# Columns both tables have, with the same meaning.
SettingText = Annotated[
    str,
    Field(
        title="Setting",
        description="Codec spec, e.g. `zfp:rate=2` or `zfp:tolerance=500`; `none` is the "
        "uncompressed baseline.",
    ),
]
GroupName = Annotated[
    Group,
    Field(
        title="Group",
        description="`baseline`, `fixed_rate` (ZFP rate mode), `tolerance` (ZFP error "
        "tolerance mode) or `other`: the table the setting goes in.",
    ),
]


class SettingRow(BaseModel):
    """One setting over the dataset's volumes (the paper's Tables 1-4, and more)."""

    setting: SettingText
    codec: dict[str, Any] = Field(
        title="Codec config",
        description="The codec config `setting` stands for (JSON only: the CSV has `setting`).",
    )
    group: GroupName
    mode: str | None = Field(
        title="Mode", description="ZFP mode (`rate`, `tolerance`, ...); null for the baseline."
    )
    parameter: float | None = Field(
        title="Parameter",
        description="The mode's value: bits/voxel (rate) or the absolute error bound "
        "(tolerance); null when the mode has none.",
    )
    n_volumes: int = Field(title="Volumes", description="Volumes in the sweep.")
    n_finished: int = Field(
        title="Finished",
        description="Volumes whose job finished: the row's sums and means are over these.",
    )
    n_failed: int = Field(
        title="Failed",
        description="Volumes whose job failed, was cancelled or was lost (POST the sweep "
        "again to rerun them).",
    )
    raw_mb: float = Field(
        title="Original size (MB)",
        description='Σ raw voxel bytes / 10⁶ (the paper\'s "Original Data Size").',
    )
    compressed_mb: float = Field(
        title="Compressed size (MB)",
        description="Σ blob bytes / 10⁶, container header included (Tables 1 and 3 "
        '"Compressed Size").',
    )
    cr_pooled: float | None = Field(
        title="CR, pooled (Σraw/Σblob)",
        description="Σ raw bytes / Σ blob bytes: the paper's \"Original Data Size / "
        'Compressed Size".',
    )
    cr_mean: float | None = Field(
        title="CR, mean per volume", description="Mean over volumes of raw bytes / blob bytes."
    )
    cr_payload_pooled: float | None = Field(
        title="CR, codec stream (Σraw/Σpayload)",
        description="Σ raw bytes / Σ codec payload bytes: the bare codec stream without the "
        ".vz container header (what a bare pyzfp stream would give).",
    )
    bits_per_voxel: float | None = Field(
        title="Bits/voxel", description="8 × Σ blob bytes / Σ voxels."
    )
    psnr_mean_db: float | None = Field(
        title="Avg. PSNR (dB)",
        description="Mean of per-volume PSNRs; lossless volumes (PSNR = +∞, reported as "
        "null) are left out and `psnr_n` counts the rest. Null for the baseline.",
    )
    psnr_n: int = Field(title="PSNR volumes", description="Volumes in `psnr_mean_db`.")
    ssim_mean: float | None = Field(title="Avg. SSIM", description="Mean of per-volume 3D SSIM.")
    max_abs_error: float | None = Field(
        title="Max. abs. error",
        description="Largest per-volume maximum absolute difference between original and "
        "decoded voxels.",
    )
    compress_mb_s: float | None = Field(
        title="Compress MB/s",
        description="Σ raw MB / Σ compress seconds (single-threaded, measured on the worker).",
    )
    decompress_mb_s: float | None = Field(
        title="Decompress MB/s",
        description="Σ raw MB / Σ decompress seconds (single-threaded, measured on the worker).",
    )
    n_scored: int = Field(
        title="Scored",
        description="Finished volumes with a truth mask: the segmentation means are over these.",
    )
    dice_mean: float | None = Field(
        title="Mean Dice",
        description='Mean of per-volume Dice (Tables 2 and 4 "Overall Mean").',
    )
    iou_mean: float | None = Field(title="Mean IoU", description="Mean of per-volume IoU.")
    sensitivity_mean: float | None = Field(
        title="Mean sensitivity", description="Mean of per-volume sensitivity."
    )
    precision_mean: float | None = Field(
        title="Mean precision", description="Mean of per-volume precision."
    )
    volume_similarity_mean: float | None = Field(
        title="Mean volume similarity", description="Mean of per-volume volume similarity."
    )
    hd95_mean_mm: float | None = Field(
        title="Mean HD95 (mm)",
        description="Mean of per-volume HD95 in mm; undefined ones (an empty mask) are left out.",
    )
    n_pairs: int | None = Field(
        title="Pairs",
        description="Volumes scored both under this setting and uncompressed; null for the "
        "baseline, which is the reference.",
    )
    delta_dice_mean: float | None = Field(
        title="ΔDice vs uncompressed",
        description="Mean of the paired differences d = Dice(setting) − Dice(`none`) over "
        "the `n_pairs` volumes.",
    )
    delta_dice_ci_low: float | None = Field(
        title="ΔDice 95% CI, low",
        description="Low end of the 95% confidence interval of `delta_dice_mean`: "
        "`scipy.stats.bootstrap((d,), np.mean, "
        f'n_resamples={BOOTSTRAP_RESAMPLES}, method="BCa", '
        f"rng=np.random.default_rng({BOOTSTRAP_SEED}))`; the percentile method where BCa "
        "is undefined; (d, d) when every difference equals d; null when n < 2.",
    )
    delta_dice_ci_high: float | None = Field(
        title="ΔDice 95% CI, high",
        description="High end of that interval.",
    )
    wilcoxon_p: float | None = Field(
        title="Wilcoxon p",
        description="`scipy.stats.wilcoxon(d).pvalue`: two-sided, zero differences dropped, "
        "exact for small n; 1.0 when every difference is 0; null when n < 2.",
    )
    n_agreement: int = Field(
        title="Agreement volumes",
        description="Finished volumes whose mask was compared with the baseline's mask of "
        "the same volume: the agreement means are over these (none for the baseline).",
    )
    agreement_dice_mean: float | None = Field(
        title="Mean agreement Dice",
        description="Mean of per-volume agreement Dice: the mask under this setting against "
        "the same model's mask of the uncompressed volume. Agreement, not accuracy: no "
        "truth is needed.",
    )
    agreement_dice_min: float | None = Field(
        title="Min. agreement Dice", description="The lowest per-volume agreement Dice."
    )
    agreement_iou_mean: float | None = Field(
        title="Mean agreement IoU", description="Mean of per-volume agreement IoU."
    )
    agreement_hd95_mean_mm: float | None = Field(
        title="Mean agreement HD95 (mm)",
        description="Mean of per-volume agreement HD95 in mm; undefined ones are left out.",
    )


class CaseRow(BaseModel):
    """One volume under one setting. The numbers are null until its job has finished;
    per-volume metrics are those of docs/metrics.md."""

    volume: str = Field(title="Volume", description="The volume's id in the dataset.")
    setting: SettingText
    group: GroupName
    state: JobState | Literal["lost"] = Field(
        title="State",
        description="The job's state: queued, running, finished, failed, cancelled or lost "
        "(no record and no result: Redis lost it before it ran).",
    )
    job_id: str = Field(
        title="Job",
        description="The job (`/v1/jobs/{job_id}`), shared by every sweep with this volume, "
        "setting and model.",
    )
    error: str | None = Field(
        title="Error", description="Why the job failed or was lost; null otherwise."
    )
    voxels: int | None = Field(title="Voxels", description="Voxels in the volume.")
    raw_nbytes: int | None = Field(
        title="Raw bytes",
        description="The voxels' bytes in the stored dtype (2 per voxel for int16).",
    )
    blob_nbytes: int | None = Field(
        title="Blob bytes",
        description="Bytes of the stored .vz blob, container header included.",
    )
    payload_nbytes: int | None = Field(
        title="Payload bytes",
        description="Bytes of the codec's own stream inside the blob (the bare ZFP stream).",
    )
    cr: float | None = Field(title="CR", description="`raw_nbytes` / `blob_nbytes`.")
    bits_per_voxel: float | None = Field(
        title="Bits/voxel", description="8 × `blob_nbytes` / `voxels`."
    )
    psnr_db: float | None = Field(
        title="PSNR (dB)", description="PSNR; null for a lossless round trip (+∞)."
    )
    ssim: float | None = Field(title="SSIM", description="3D SSIM.")
    max_abs_error: float | None = Field(
        title="Max. abs. error",
        description="Maximum absolute difference between original and decoded voxels.",
    )
    compress_s: float | None = Field(
        title="Compress s",
        description="Seconds to compress (single-threaded, measured on the worker).",
    )
    decompress_s: float | None = Field(
        title="Decompress s",
        description="Seconds to decompress (single-threaded, measured on the worker).",
    )
    dice: float | None = Field(
        title="Dice",
        description="Dice of the mask segmented from the decoded volume against the truth; "
        "null without a truth.",
    )
    iou: float | None = Field(title="IoU", description="IoU, like `dice`.")
    sensitivity: float | None = Field(title="Sensitivity", description="Sensitivity, like `dice`.")
    precision: float | None = Field(title="Precision", description="Precision, like `dice`.")
    volume_similarity: float | None = Field(
        title="Volume similarity", description="Volume similarity, like `dice`."
    )
    hd95_mm: float | None = Field(
        title="HD95 (mm)",
        description="95th percentile Hausdorff distance in mm, like `dice`; also null when "
        "undefined (an empty mask).",
    )
    delta_dice: float | None = Field(
        title="ΔDice",
        description="Dice(setting) − Dice(`none`) on the same volume and model.",
    )
    agreement_dice: float | None = Field(
        title="Agreement Dice",
        description="Dice of the mask under this setting against the same model's mask of "
        "the uncompressed volume (the baseline's job); no truth involved. Null for the "
        "baseline, and when the baseline left no mask.",
    )
    agreement_iou: float | None = Field(
        title="Agreement IoU", description="IoU, like `agreement_dice`."
    )
    agreement_hd95_mm: float | None = Field(
        title="Agreement HD95 (mm)", description="HD95 in mm, like `agreement_dice`."
    )


def _columns(
    model: type[BaseModel], *, leave_out: tuple[str, ...] = (), last: tuple[str, ...] = ()
) -> dict[str, str]:
    names = [n for n in model.model_fields if n not in leave_out and n not in last]
    return {name: model.model_fields[name].description or "" for name in [*names, *last]}


#: The CSV columns of each table, in order, with their definitions: every field but
#: `codec` (a dict; `setting` is its text form); the per-volume CSV keeps the job id
#: and the error (the long ones) for last.
SETTING_COLUMNS = _columns(SettingRow, leave_out=("codec",))
CASE_COLUMNS = _columns(CaseRow, last=("job_id", "error"))


def title(model: type[BaseModel], name: str) -> str:
    """The column's short name (a Markdown header)."""
    return model.model_fields[name].title or name
