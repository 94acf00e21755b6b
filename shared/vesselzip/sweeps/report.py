"""A sweep's results as CSV, Markdown (the paper's Tables 1-4) and PNG figures
(Figures 2-3 and PSNR against bits/voxel), and the column tables of docs/sweeps.md.
Headers and definitions come from vesselzip.sweeps.rows; matplotlib is imported
only when a figure is drawn."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from vesselzip.errors import NotFoundError, NotInstalledError, VesselzipError
from vesselzip.sweeps.aggregate import SweepResults
from vesselzip.sweeps.grid import number_text
from vesselzip.sweeps.rows import CaseRow, SettingRow, title

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGURES = ("fixed_rate", "tolerance", "psnr_vs_bpv")


class SweepNotReadyError(VesselzipError):
    """Nothing has finished yet to summarise."""

    http_status = 409


# -- CSV -----------------------------------------------------------------------------
def to_csv(rows: Sequence[BaseModel], columns: Iterable[str]) -> str:
    """`columns` of `rows` (e.g. rows.SETTING_COLUMNS), every digit of every float."""
    columns = list(columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [getattr(row, c) for c in columns]
        writer.writerow(["" if v is None else _csv_value(v) for v in values])
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value  # repr: every digit


# -- Markdown ------------------------------------------------------------------------
def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} : 1"


def _delta_text(row: SettingRow) -> str:
    if row.delta_dice_mean is None:
        return "reference" if row.group == "baseline" else "–"
    text = f"{row.delta_dice_mean:+.5f}"
    if row.delta_dice_ci_low is not None and row.delta_dice_ci_high is not None:
        text += f" [{row.delta_dice_ci_low:+.5f}, {row.delta_dice_ci_high:+.5f}]"
    return text


def _parameter_text(row: SettingRow) -> str:
    if row.group == "baseline":
        return "none (uncompressed)"
    if row.group in ("fixed_rate", "tolerance"):
        return number_text(row.codec.get("value"))  # as the spec writes it
    return row.setting


# One table column: header, cell text, alignment.
Column = tuple[str, Callable[[SettingRow], str], str]


def _number(name: str, digits: int) -> Column:
    return title(SettingRow, name), lambda r: _fmt(getattr(r, name), digits), "---:"


def _ratio(name: str) -> Column:
    return title(SettingRow, name), lambda r: _ratio_text(getattr(r, name)), "---:"


_COMPRESSION_TABLE: list[Column] = [
    _number("compressed_mb", 2),
    _ratio("cr_pooled"),
    _ratio("cr_mean"),
    _ratio("cr_payload_pooled"),
    _number("psnr_mean_db", 4),
    _number("ssim_mean", 4),
    _number("bits_per_voxel", 3),
    _number("compress_mb_s", 1),
    _number("decompress_mb_s", 1),
    (title(SettingRow, "n_volumes"), lambda r: f"{r.n_finished}/{r.n_volumes}", "---:"),
]
_SEGMENTATION_TABLE: list[Column] = [
    _number("dice_mean", 5),
    _number("iou_mean", 5),
    _number("sensitivity_mean", 5),
    _number("volume_similarity_mean", 5),
    _number("hd95_mean_mm", 3),
    (f"{title(SettingRow, 'delta_dice_mean')} [95% CI]", _delta_text, "---"),
    _number("wilcoxon_p", 4),
    (title(SettingRow, "n_pairs"), lambda r: "–" if r.n_pairs is None else str(r.n_pairs), "---:"),
]
#: Columns whose definition is printed under the tables.
_DEFINED_BELOW = (
    "cr_pooled",
    "cr_mean",
    "cr_payload_pooled",
    "psnr_mean_db",
    "delta_dice_mean",
    "delta_dice_ci_low",
    "wilcoxon_p",
)


def _table(first: str, columns: list[Column], rows: list[SettingRow]) -> list[str]:
    lines = [
        "| " + " | ".join([first, *(c[0] for c in columns)]) + " |",
        "|" + "|".join(["---", *(c[2] for c in columns)]) + "|",
    ]
    for row in rows:
        cells = [_parameter_text(row), *(c[1](row) for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


#: Table titles of the codecs beyond the paper's ZFP groups.
CODEC_NAMES = {
    "zfp": "ZFP, other modes",
    "sz3": "SZ3",
    "sperr": "SPERR",
    "lerc": "LERC",
    "jpegls": "JPEG-LS",
    "jpeg2000": "JPEG 2000",
    "htj2k": "HTJ2K",
    "zstd": "Zstandard (lossless)",
    "blosc2": "Blosc2 (lossless)",
}


def markdown_tables(summary: SweepResults) -> str:
    """The paper's Tables 1-4 (fixed rate, then tolerance; each with the baseline row),
    then a pair in the same layout for each other codec of the grid, in grid order, and
    the definitions of their columns."""
    rows = summary.settings
    baseline = [r for r in rows if r.group == "baseline"]
    original_mb = baseline[0].raw_mb if baseline else 0.0
    lines = [
        f"Sweep `{summary.sweep_id}` — dataset `{summary.dataset_id}` "
        f"({summary.n_volumes} volumes, original data size {original_mb:.2f} MB), "
        f"model `{summary.model}`; {summary.progress.done}/"
        f"{summary.progress.total} jobs done.",
        "",
    ]
    others = [r for r in rows if r.group == "other"]
    codecs = list(dict.fromkeys(str(r.codec.get("id")) for r in others))
    sections = [
        ("ZFP fixed-rate", "Rate (bits/voxel)", [r for r in rows if r.group == "fixed_rate"]),
        (
            "ZFP error-tolerance",
            "Abs. error tolerance",
            [r for r in rows if r.group == "tolerance"],
        ),
        *(
            (
                CODEC_NAMES.get(codec, codec),
                "Setting",
                [r for r in others if r.codec.get("id") == codec],
            )
            for codec in codecs
        ),
    ]
    number = 1
    for name, first_column, group_rows in sections:
        if not group_rows:
            continue
        table_rows = baseline + group_rows
        lines += [
            f"**Table {number}: {name} compression results** "
            f"(original data size: {original_mb:.2f} MB)",
            "",
            *_table(first_column, _COMPRESSION_TABLE, table_rows),
            "",
            f"**Table {number + 1}: Segmentation performance, {name}**",
            "",
            *_table(first_column, _SEGMENTATION_TABLE, table_rows),
            "",
        ]
        number += 2
    for name in _DEFINED_BELOW:
        field = SettingRow.model_fields[name]
        lines.append(f"- {field.title}: {field.description}")
    lines.append("")
    return "\n".join(lines)


# -- the column tables of docs/sweeps.md ---------------------------------------------
#: The generated tables of docs/sweeps.md, by the name in their markers.
COLUMN_TABLES: dict[str, type[BaseModel]] = {
    "setting columns": SettingRow,
    "case columns": CaseRow,
}


def column_table(model: type[BaseModel]) -> str:
    """Every field of `model` as a Markdown table: name, header, definition."""
    lines = ["| column | header | definition |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        cells = [f"`{name}`", field.title or "", field.description or ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- {name}: generated from vesselzip.sweeps.rows by "
        "`python -m vesselzip.sweeps --update-docs` -->",
        f"<!-- end of {name} -->",
    )


def documented_column_tables(text: str) -> dict[str, str]:
    """The generated tables as a document holds them, by name."""
    found = {}
    for name in COLUMN_TABLES:
        start, end = _markers(name)
        if start in text and end in text:
            found[name] = text.split(start, 1)[1].split(end, 1)[0].strip()
    return found


def column_tables() -> dict[str, str]:
    return {name: column_table(model) for name, model in COLUMN_TABLES.items()}


def update_docs(path: Path) -> Path:
    """Rewrite the generated column tables of `path` (docs/sweeps.md) from the models."""
    text = path.read_text()
    for name, table in column_tables().items():
        start, end = _markers(name)
        if start not in text or end not in text:
            raise VesselzipError(f"{path} has no {start} ... {end} section")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"
    path.write_text(text)
    return path


# -- figures -------------------------------------------------------------------------
def figure_png(summary: SweepResults, name: str) -> bytes:
    """One of FIGURES as PNG: the paper's dual-axis CR / mean Dice plots for fixed
    rate (Figure 2) and tolerance (Figure 3), and PSNR against bits/voxel."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NotInstalledError(
            "figures need matplotlib, which this installation leaves out: "
            "install vesselzip[figures]"
        ) from None

    if name not in FIGURES:
        raise NotFoundError(f"no figure {name!r}; figures: {', '.join(FIGURES)}")
    rows = summary.settings
    figure = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if name == "psnr_vs_bpv":
        _psnr_plot(axes, rows)
    else:
        _dual_axis_plot(axes, rows, "fixed_rate" if name == "fixed_rate" else "tolerance")
    figure.suptitle(
        f"{summary.model} on {summary.n_volumes} volumes "
        f"({summary.progress.done}/{summary.progress.total} jobs done)",
        fontsize=8,
        color="0.4",
    )
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _finished(rows: list[SettingRow], group: str, what: str) -> list[SettingRow]:
    chosen = [r for r in rows if r.group == group]
    if not chosen:
        raise NotFoundError(f"the sweep has no {what} settings")
    done = [r for r in chosen if r.n_finished]
    if not done:
        raise SweepNotReadyError(f"no {what} job has finished yet")
    return done


def _dual_axis_plot(axes: Axes, rows: list[SettingRow], group: str) -> None:
    fixed_rate = group == "fixed_rate"
    what = "fixed-rate" if fixed_rate else "tolerance"
    chosen = sorted(
        _finished(rows, group, what), key=lambda r: r.parameter or 0.0, reverse=fixed_rate
    )
    labels = [number_text(r.codec.get("value")) for r in chosen]
    x = np.arange(len(chosen))
    cr = [r.cr_pooled or 0.0 for r in chosen]  # a finished setting has blobs
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
    dice = [r.dice_mean for r in chosen]
    if any(d is not None for d in dice):
        dice_axes.plot(
            x, [np.nan if d is None else d for d in dice], "s-", color="tab:red", label="mean Dice"
        )
        baseline = next((r for r in rows if r.group == "baseline"), None)
        if baseline and baseline.dice_mean is not None:
            base = baseline.dice_mean
            dice_axes.axhline(
                base,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"uncompressed mean Dice {base:.4f}",
            )
            # The paired CI, shifted onto the Dice axis: uncompressed mean + [low, high].
            intervals = [
                (r.dice_mean, r.delta_dice_ci_low, r.delta_dice_ci_high)
                for r in chosen
                if r.dice_mean
                and r.delta_dice_ci_low is not None
                and r.delta_dice_ci_high is not None
            ]
            if len(intervals) == len(chosen):
                means = [m for m, _, _ in intervals]
                low = [base + lo for _, lo, _ in intervals]
                high = [base + hi for _, _, hi in intervals]
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


def _psnr_plot(axes: Axes, rows: list[SettingRow]) -> None:
    from matplotlib.ticker import ScalarFormatter

    points = [
        (r, r.bits_per_voxel, r.psnr_mean_db)
        for r in rows
        if r.psnr_mean_db is not None and r.bits_per_voxel
    ]
    if not points:
        if not any(r.group != "baseline" for r in rows):
            raise NotFoundError("the sweep has no lossy settings")
        raise SweepNotReadyError("no lossy job has finished yet")
    markers = {
        "fixed_rate": ("o-", "fixed rate"),
        "tolerance": ("s-", "error tolerance"),
        "other": ("^", "other"),
    }
    for group, (style, label) in markers.items():
        mine = sorted((p for p in points if p[0].group == group), key=lambda p: p[1] or 0.0)
        if not mine:
            continue
        bpv = [p[1] for p in mine]
        psnr = [p[2] for p in mine]
        axes.plot(bpv, psnr, style, label=label)
        for r, xi, yi in mine:
            axes.annotate(
                r.setting.removeprefix("zfp:"),
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
