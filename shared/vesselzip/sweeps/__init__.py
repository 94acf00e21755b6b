"""Sweeps: every compression setting of a grid on every volume of a dataset, against
the uncompressed baseline, summarised in the paper's tables and figures.

* grid: codec specs -> canonical configs (the baseline "none" always first), their
  text form and group.
* stored: the stored sweep (SweepSpec, SweepCell) and the ids that make a job shared
  by every sweep that needs it (see cell_job_id).
* progress: each cell's job outcome, and the sweep's counts and ETA.
* rows: the per-volume and per-setting rows, and what every column is (the one
  description the CSV, Markdown, API schemas and docs/sweeps.md are taken from).
* aggregate: per-volume results -> those rows, with paired statistics.
* report: CSV, Markdown, PNG figures; the column tables of docs/sweeps.md.

Every public name is importable from here."""

from vesselzip.sweeps.aggregate import (
    PairedStatistics,
    SweepResults,
    case_rows,
    paired_statistics,
    setting_rows,
    sweep_summary,
)
from vesselzip.sweeps.figures import FIGURES, figure_png
from vesselzip.sweeps.grid import (
    BASELINE,
    PAPER_GRID,
    Group,
    canonical,
    number_text,
    parse_grid,
    setting_group,
    setting_spec,
)
from vesselzip.sweeps.progress import CELL_STATES, SweepProgress, progress_of
from vesselzip.sweeps.report import SweepNotReadyError, markdown_tables, to_csv
from vesselzip.sweeps.rows import CASE_COLUMNS, SETTING_COLUMNS, CaseRow, SettingRow
from vesselzip.sweeps.stored import (
    SweepCell,
    SweepConflictError,
    SweepSpec,
    cell_job_id,
    default_idempotency_key,
    index_existing_sweeps,
    list_sweeps,
    load_sweep,
    save_sweep,
    sweep_id_for,
    sweep_key,
    sweeps_over,
)

__all__ = [
    "BASELINE",
    "CASE_COLUMNS",
    "FIGURES",
    "PAPER_GRID",
    "SETTING_COLUMNS",
    "CELL_STATES",
    "CaseRow",
    "Group",
    "PairedStatistics",
    "SettingRow",
    "SweepCell",
    "SweepConflictError",
    "SweepNotReadyError",
    "SweepProgress",
    "SweepResults",
    "SweepSpec",
    "canonical",
    "case_rows",
    "cell_job_id",
    "default_idempotency_key",
    "figure_png",
    "index_existing_sweeps",
    "list_sweeps",
    "load_sweep",
    "markdown_tables",
    "number_text",
    "paired_statistics",
    "parse_grid",
    "progress_of",
    "save_sweep",
    "setting_group",
    "setting_rows",
    "setting_spec",
    "sweep_id_for",
    "sweep_key",
    "sweep_summary",
    "sweeps_over",
    "to_csv",
]
