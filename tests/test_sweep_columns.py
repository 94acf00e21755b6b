"""Each column of a sweep's tables is described once, in vesselzip.sweeps.rows: the CSV
headers, the Markdown tables, the API schemas and the column tables of docs/sweeps.md
are taken from it, and checked against it here."""

from __future__ import annotations

from pathlib import Path

import pytest

from vesselzip.jobs import JobOutcome
from vesselzip.sweeps import (
    CASE_COLUMNS,
    SETTING_COLUMNS,
    CaseRow,
    SettingRow,
    SweepCell,
    SweepSpec,
    markdown_tables,
    parse_grid,
    sweep_summary,
)
from vesselzip.sweeps.__main__ import main as sweeps_main
from vesselzip.sweeps.report import column_tables, documented_column_tables

DOC = Path(__file__).resolve().parents[1] / "docs" / "sweeps.md"


def test_the_docs_column_tables_are_the_models():
    assert documented_column_tables(DOC.read_text()) == column_tables(), (
        "docs/sweeps.md's column tables differ from vesselzip.sweeps.rows: run "
        "`python -m vesselzip.sweeps --update-docs`"
    )


def test_update_docs_rewrites_only_the_tables(tmp_path, capsys):
    text = DOC.read_text()
    stale = text.replace("| `cr_pooled` |", "| `cr_pooled_renamed` |")
    assert documented_column_tables(stale) != column_tables()
    copy = tmp_path / "sweeps.md"
    copy.write_text(stale)
    assert sweeps_main(["--update-docs", str(copy)]) == 0
    assert copy.read_text() == text
    assert sweeps_main(["--columns"]) == 0
    assert "| `wilcoxon_p` | Wilcoxon p |" in capsys.readouterr().out


@pytest.mark.parametrize("model", [SettingRow, CaseRow])
def test_every_column_has_a_header_and_a_definition(model):
    for name, field in model.model_fields.items():
        assert field.title and field.description and field.description.endswith("."), name


def test_the_csv_columns_are_the_fields_with_their_definitions():
    assert list(SETTING_COLUMNS) == [name for name in SettingRow.model_fields if name != "codec"]
    assert sorted(CASE_COLUMNS) == sorted(CaseRow.model_fields)
    assert list(CASE_COLUMNS)[-2:] == ["job_id", "error"]
    for columns, model in ((SETTING_COLUMNS, SettingRow), (CASE_COLUMNS, CaseRow)):
        assert columns == {name: model.model_fields[name].description for name in columns}


def test_the_api_schemas_are_the_rows():
    from vesselzip_api import sweep_schemas

    assert sweep_schemas.SettingRow is SettingRow and sweep_schemas.CaseRow is CaseRow
    definitions = sweep_schemas.SweepTables.model_json_schema()["$defs"]
    definitions |= sweep_schemas.SweepCases.model_json_schema()["$defs"]
    for model in (SettingRow, CaseRow):
        properties = definitions[model.__name__]["properties"]
        assert {name: p["description"] for name, p in properties.items()} == {
            name: field.description for name, field in model.model_fields.items()
        }


def test_the_markdown_headers_and_definitions_are_the_fields():
    grid = parse_grid(["zfp:rate=2", "zfp:tolerance=500", "zfp:precision=10"])
    cells = [SweepCell(volume_id="a", setting=i, job_id=f"{i:032x}") for i in range(len(grid))]
    spec = SweepSpec(
        id="s" * 32,
        dataset_id="d" * 32,
        model="frangi",
        queue="cpu",
        grid=grid,
        idempotency_key="k",
        cells=cells,
    )
    queued = {c.job_id: JobOutcome(state="queued") for c in cells}
    lines = markdown_tables(sweep_summary(spec, queued)).splitlines()
    headers = [lines[i - 1] for i, line in enumerate(lines) if line.startswith("|---")]
    assert len(headers) == 6  # Tables 1-6
    titles = {field.title for field in SettingRow.model_fields.values()}
    for header in headers:
        first, *rest = [cell.strip() for cell in header.strip("|").split("|")]
        assert first in ("Rate (bits/voxel)", "Abs. error tolerance", "Setting")
        assert {cell.removesuffix(" [95% CI]") for cell in rest} <= titles, header
    definitions = [line for line in lines if line.startswith("- ")]
    fields = {f"- {f.title}: {f.description}" for f in SettingRow.model_fields.values()}
    assert definitions and set(definitions) <= fields
