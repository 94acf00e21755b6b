"""A sweep's results as CSV and Markdown (the paper's Tables 1-4, and a pair per other
codec), and the column tables of docs/sweeps.md. Headers and definitions come from
vesselzip.sweeps.rows; the figures are in vesselzip.sweeps.figures."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vesselzip.errors import VesselzipError
from vesselzip.sweeps.aggregate import SweepResults
from vesselzip.sweeps.grid import number_text
from vesselzip.sweeps.rows import CaseRow, SettingRow, title


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
    _number("agreement_dice_mean", 5),
    _number("agreement_dice_min", 5),
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
    "agreement_dice_mean",
)


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


class Table(BaseModel):
    """One of the paper's tables for a group of settings, as text cells."""

    title: str
    note: str = ""  # printed after the title
    header: list[str]
    align: list[str] = []  # "left" or "right", per column
    rows: list[list[str]]
    settings: list[str] = []  # the setting of each row


def paper_tables(summary: SweepResults) -> list[Table]:
    """The paper's Tables 1-4 (fixed rate, then tolerance; each with the baseline row),
    then a pair in the same layout for each other codec of the grid, in grid order."""
    rows = summary.settings
    baseline = [r for r in rows if r.group == "baseline"]
    original_mb = baseline[0].raw_mb if baseline else 0.0
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
    tables = []
    number = 1
    for name, first_column, group_rows in sections:
        if not group_rows:
            continue
        table_rows = baseline + group_rows
        for kind, note, columns in (
            (
                f"{name} compression results",
                f"(original data size: {original_mb:.2f} MB)",
                _COMPRESSION_TABLE,
            ),
            (f"Segmentation performance, {name}", "", _SEGMENTATION_TABLE),
        ):
            tables.append(
                Table(
                    title=f"Table {number}: {kind}",
                    note=note,
                    header=[first_column, *(c[0] for c in columns)],
                    align=["left", *("right" if c[2] == "---:" else "left" for c in columns)],
                    rows=[[_parameter_text(r), *(c[1](r) for c in columns)] for r in table_rows],
                    settings=[r.setting for r in table_rows],
                )
            )
            number += 1
    return tables


def markdown_tables(summary: SweepResults) -> str:
    """paper_tables as Markdown, with the definitions of their columns."""
    baseline = [r for r in summary.settings if r.group == "baseline"]
    original_mb = baseline[0].raw_mb if baseline else 0.0
    lines = [
        f"Sweep `{summary.sweep_id}` — dataset `{summary.dataset_id}` "
        f"({summary.n_volumes} volumes, original data size {original_mb:.2f} MB), "
        f"model `{summary.model}`; {summary.progress.done}/"
        f"{summary.progress.total} jobs done.",
        "",
    ]
    for table in paper_tables(summary):
        lines += [
            f"**{table.title}** {table.note}".rstrip(),
            "",
            "| " + " | ".join(table.header) + " |",
            "|" + "|".join("---:" if a == "right" else "---" for a in table.align) + "|",
            *("| " + " | ".join(cells) + " |" for cells in table.rows),
            "",
        ]
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
