"""Sweeps without a service: grid expansion, aggregation against hand-computed values,
paired statistics against scipy, the table formats and figures; datasets in a local
store; a job that compresses its stored source on the worker side."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.datasets import (
    DatasetConflictError,
    add_volume,
    create_dataset,
    delete_dataset,
    list_datasets,
    load_dataset,
    volume_id_for,
)
from vesselzip.errors import InvalidCodecConfigError, InvalidVolumeError, NotFoundError
from vesselzip.jobs import ImageInfo, JobOutcome, JobResult, JobSpec, blob_key, run_job
from vesselzip.store import LocalStore
from vesselzip.sweeps import (
    PAPER_GRID,
    SETTING_COLUMNS,
    SweepCell,
    SweepNotReadyError,
    SweepResults,
    SweepSpec,
    cell_job_id,
    default_idempotency_key,
    figure_png,
    markdown_tables,
    paired_statistics,
    parse_grid,
    progress_of,
    setting_spec,
    sweep_summary,
    to_csv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- grid ----------------------------------------------------------------------------
def test_default_grid_is_the_papers_with_the_baseline_first():
    grid = parse_grid(None)
    assert grid[0] == {"id": "none"}
    assert [setting_spec(c) for c in grid[1:]] == list(PAPER_GRID)
    assert [c["value"] for c in grid[1:5]] == [16, 8, 4, 2]
    assert {c["mode"] for c in grid[5:]} == {"tolerance"}


def test_grid_parsing_dedupes_keeps_order_and_refuses_bad_specs():
    grid = parse_grid("zfp:tolerance=500, zfp:rate=2,none,zfp:rate=2")
    assert [setting_spec(c) for c in grid] == ["none", "zfp:tolerance=500", "zfp:rate=2"]
    assert parse_grid(["zfp:rate=2"]) == parse_grid("zfp:rate=2")
    with pytest.raises(InvalidCodecConfigError):
        parse_grid(["zfp:rate=0.1"])
    with pytest.raises(InvalidCodecConfigError):
        parse_grid(["sz3:rate=2"])


@pytest.mark.parametrize(
    "spec", ["none", "zfp:rate=2", "zfp:tolerance=0.5", "zfp:reversible", "zfp:precision=12"]
)
def test_setting_spec_reads_back_as_the_same_config(spec):
    config = parse_codec_spec(spec)
    assert parse_codec_spec(setting_spec(config)) == config


def test_job_and_sweep_keys_are_stable_and_distinct():
    rate2 = parse_codec_spec("zfp:rate=2")
    job = cell_job_id("d" * 32, "v1", rate2, "frangi")
    assert len(job) == 32 and int(job, 16) >= 0
    assert job == cell_job_id("d" * 32, "v1", dict(reversed(rate2.items())), "frangi")
    others = {
        cell_job_id("e" * 32, "v1", rate2, "frangi"),
        cell_job_id("d" * 32, "v2", rate2, "frangi"),
        cell_job_id("d" * 32, "v1", parse_codec_spec("zfp:rate=4"), "frangi"),
        cell_job_id("d" * 32, "v1", rate2, "mvn-small"),
    }
    assert job not in others and len(others) == 4
    grid = parse_grid(None)
    key = default_idempotency_key("d" * 32, ["v1", "v2"], grid, "frangi")
    assert key == default_idempotency_key("d" * 32, ["v2", "v1"], grid[::-1], "frangi")
    assert key != default_idempotency_key("d" * 32, ["v1", "v2"], grid[:-1], "frangi")
    assert key != default_idempotency_key("d" * 32, ["v1", "v2", "v3"], grid, "frangi")


# -- statistics ----------------------------------------------------------------------
def test_paired_statistics_match_scipy():
    deltas = [0.004, -0.001, 0.002, 0.0005, -0.003, 0.001, 0.0025, -0.0005]
    out = paired_statistics(deltas)
    ci = stats.bootstrap(
        (np.array(deltas),), np.mean, n_resamples=9999, rng=np.random.default_rng(0)
    ).confidence_interval
    assert out["n_pairs"] == 8
    assert out["delta_dice_mean"] == pytest.approx(np.mean(deltas), abs=1e-15)
    assert out["delta_dice_ci_low"] == pytest.approx(ci.low, abs=1e-15)
    assert out["delta_dice_ci_high"] == pytest.approx(ci.high, abs=1e-15)
    low, mean, high = out["delta_dice_ci_low"], out["delta_dice_mean"], out["delta_dice_ci_high"]
    assert low is not None and mean is not None and high is not None
    assert low < mean < high
    assert out["wilcoxon_p"] == pytest.approx(stats.wilcoxon(deltas).pvalue)
    assert paired_statistics(deltas) == out  # the seed is fixed


def test_paired_statistics_degenerate_cases():
    zeros = paired_statistics([0.0, 0.0, 0.0])
    assert zeros["wilcoxon_p"] == 1.0
    assert zeros["delta_dice_ci_low"] == zeros["delta_dice_ci_high"] == 0.0
    constant = paired_statistics([0.01] * 4)
    assert constant["delta_dice_ci_low"] == constant["delta_dice_ci_high"] == 0.01
    assert constant["wilcoxon_p"] == pytest.approx(stats.wilcoxon([0.01] * 4).pvalue)
    one = paired_statistics([0.02])
    assert one["delta_dice_mean"] == 0.02
    assert one["wilcoxon_p"] is one["delta_dice_ci_low"] is None
    assert paired_statistics([])["delta_dice_mean"] is None


# -- aggregation ---------------------------------------------------------------------
def _result(job_id, config, *, raw, blob, psnr, ssim, dice, finished_at=100.0):
    return JobResult(
        job_id=job_id,
        state="finished",
        model="frangi",
        codec=config,
        image=ImageInfo(shape=(10, 10, raw // 200), dtype="int16", spacing=(1, 1, 1)),
        compression={
            "raw_nbytes": raw,
            "blob_nbytes": blob,
            "payload_nbytes": blob - 100,
            "cr_raw": raw / blob,
            "bits_per_voxel": 8 * blob / (raw / 2),
            "psnr_db": psnr,
            "ssim": ssim,
            "max_abs_error": 0.0 if psnr is None else 3.0,
            "compress_s": 0.5,
            "decompress_s": 0.25,
        },
        segmentation={
            "dice": dice,
            "iou": dice / (2 - dice),
            "sensitivity": 0.9,
            "precision": 0.8,
            "volume_similarity": 0.95,
            "hd95_mm": 1.5,
        },
        created_at=0.0,
        finished_at=finished_at,
    )


@pytest.fixture
def toy_sweep():
    """Three volumes x (none, rate=2); volume c's rate=2 job is still running."""
    grid = parse_grid(["zfp:rate=2"])
    volumes = {"a": 2000, "b": 4000, "c": 2000}  # raw bytes
    cells, outcomes = [], {}
    numbers = {
        ("a", 0): (2010, None, 1.0, 0.80),
        ("a", 1): (260, 40.0, 0.99, 0.81),
        ("b", 0): (4010, None, 1.0, 0.70),
        ("b", 1): (510, 44.0, 0.97, 0.68),
        ("c", 0): (2010, None, 1.0, 0.90),
    }
    for volume, raw in volumes.items():
        for index, config in enumerate(grid):
            job_id = cell_job_id("d" * 32, volume, config, "frangi")
            cells.append(SweepCell(volume_id=volume, setting=index, job_id=job_id))
            if (volume, index) in numbers:
                blob, psnr, ssim, dice = numbers[volume, index]
                result = _result(
                    job_id, config, raw=raw, blob=blob, psnr=psnr, ssim=ssim, dice=dice
                )
                outcomes[job_id] = JobOutcome(state="finished", result=result)
            else:
                outcomes[job_id] = JobOutcome(state="running")
    spec = SweepSpec(
        id="s" * 32,
        dataset_id="d" * 32,
        model="frangi",
        queue="cpu",
        grid=grid,
        idempotency_key="k",
        created_at=50.0,
        submitted_at=50.0,
        cells=cells,
    )
    return spec, outcomes


def test_setting_rows_follow_the_documented_definitions(toy_sweep):
    spec, outcomes = toy_sweep
    summary = sweep_summary(spec, outcomes, now=150.0)
    baseline, rate2 = summary.settings

    assert baseline.setting == "none" and baseline.group == "baseline"
    assert baseline.n_finished == 3 and baseline.n_volumes == 3
    assert baseline.cr_pooled == pytest.approx(8000 / 8030)
    assert baseline.psnr_mean_db is None and baseline.psnr_n == 0
    assert baseline.dice_mean == pytest.approx(0.8)
    assert baseline.delta_dice_mean is None and baseline.n_pairs is None

    assert rate2.n_finished == 2 and rate2.n_failed == 0
    assert rate2.raw_mb == pytest.approx(6000 / 1e6)
    assert rate2.compressed_mb == pytest.approx(770 / 1e6)
    assert rate2.cr_pooled == pytest.approx(6000 / 770)
    assert rate2.cr_mean == pytest.approx((2000 / 260 + 4000 / 510) / 2)
    assert rate2.cr_payload_pooled == pytest.approx(6000 / 570)
    assert rate2.bits_per_voxel == pytest.approx(8 * 770 / 3000)
    assert rate2.psnr_mean_db == pytest.approx(42.0)
    assert rate2.ssim_mean == pytest.approx(0.98)
    assert rate2.dice_mean == pytest.approx(0.745)
    assert rate2.compress_mb_s == pytest.approx(6000 / 1e6 / 1.0)
    assert rate2.decompress_mb_s == pytest.approx(6000 / 1e6 / 0.5)
    # Paired with the baseline on the same volumes only (c's rate=2 is not done).
    assert rate2.n_pairs == 2
    assert rate2.delta_dice_mean == pytest.approx((0.01 - 0.02) / 2)

    cases = {(c.volume, c.setting): c for c in summary.cases}
    assert cases["b", "zfp:rate=2"].delta_dice == pytest.approx(-0.02)
    assert cases["c", "zfp:rate=2"].state == "running"
    assert cases["c", "zfp:rate=2"].dice is None

    progress = summary.progress
    assert (progress.done, progress.total, progress.state) == (5, 6, "running")
    # Five jobs finished in the 100 s since submission: one left takes about 20 s.
    assert progress.eta_s == pytest.approx(20.0)


def test_progress_states(toy_sweep):
    spec, outcomes = toy_sweep
    running = next(k for k, o in outcomes.items() if o.state == "running")
    outcomes[running] = JobOutcome(state="failed", error="boom")
    progress = progress_of(spec, outcomes, now=150.0)
    assert progress.state == "failed" and progress.eta_s == 0.0
    queued = {k: JobOutcome(state="queued") for k in outcomes}
    progress = progress_of(spec, queued, now=150.0)
    assert progress.state == "queued" and progress.eta_s is None


def test_tables_in_csv_and_markdown(toy_sweep):
    spec, outcomes = toy_sweep
    summary = sweep_summary(spec, outcomes)
    text = to_csv(summary.settings, list(SETTING_COLUMNS))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["setting"] for r in rows] == ["none", "zfp:rate=2"]
    assert float(rows[1]["cr_pooled"]) == summary.settings[1].cr_pooled  # every digit
    assert rows[0]["psnr_mean_db"] == ""

    markdown = markdown_tables(summary)
    assert "**Table 1: ZFP fixed-rate compression results**" in markdown
    assert "**Table 2: Segmentation performance, ZFP fixed-rate**" in markdown
    assert "Table 3" not in markdown  # no tolerance settings in this grid
    assert "| none (uncompressed) |" in markdown and "| 2 |" in markdown
    assert f"{6000 / 770:.2f} : 1" in markdown


def test_figures_are_pngs_and_say_when_they_cannot_be_drawn(toy_sweep):
    spec, outcomes = toy_sweep
    summary = sweep_summary(spec, outcomes)
    for name in ("fixed_rate", "dice_vs_cr", "psnr_vs_bpv"):
        png = figure_png(summary, name)
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    with pytest.raises(NotFoundError, match="no tolerance settings"):
        figure_png(summary, "tolerance")
    with pytest.raises(NotFoundError):
        figure_png(summary, "nonsense")
    nothing = sweep_summary(spec, {k: JobOutcome(state="queued") for k in outcomes})
    with pytest.raises(SweepNotReadyError):
        figure_png(nothing, "fixed_rate")


# -- datasets and jobs on stored volumes ---------------------------------------------
@pytest.fixture(scope="module")
def phantom_pairs(tmp_path_factory):
    from vesselzip.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("sweep-phantoms")
    dataset = json.loads(write_phantom_dataset(root, 2, seed=21, shape=(24, 24, 16)).read_text())
    return [(root / e["image"], root / e["label"]) for e in dataset["training"]]


def test_dataset_store_round_trip(tmp_path, phantom_pairs):
    import nibabel as nib

    off_grid_truth = tmp_path / "off_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), off_grid_truth)
    store = LocalStore(tmp_path / "store")
    dataset, created = create_dataset(store, name="two", owner="alice", idempotency_key="k1")
    assert created
    again, created_again = create_dataset(store, name="x", owner="alice", idempotency_key="k1")
    assert not created_again and again.id == dataset.id and again.name == "two"
    other, _ = create_dataset(store, name="x", owner="bob", idempotency_key="k1")
    assert other.id != dataset.id

    (image, truth), (image2, _) = phantom_pairs
    entry = add_volume(store, dataset.id, image, truth, filename=image.name)
    assert entry.id == "phantom_000" and entry.shape == (24, 24, 16) and entry.dtype == "int16"
    assert entry.raw_nbytes == 24 * 24 * 16 * 2
    assert store.get_bytes(entry.image_key) == image.read_bytes()
    with pytest.raises(DatasetConflictError):
        add_volume(store, dataset.id, image2, None, name="phantom_000")
    add_volume(store, dataset.id, image2, None, name="second")
    with pytest.raises(InvalidVolumeError, match="does not match"):
        add_volume(store, dataset.id, image2, off_grid_truth, name="x")

    loaded = load_dataset(store, dataset.id)
    assert [v.id for v in loaded.volumes] == ["phantom_000", "second"]
    assert loaded.volumes[1].truth_key is None
    everyone = list_datasets(store, None, everyone=True)
    assert {d.id: d.owner for d in everyone} == {dataset.id: "alice", other.id: "bob"}
    assert [d.id for d in list_datasets(store, "bob")] == [other.id]
    assert delete_dataset(store, dataset.id) == 2
    assert not any(store.keys(f"datasets/{dataset.id}"))
    with pytest.raises(NotFoundError):
        load_dataset(store, dataset.id)


def test_volume_ids():
    assert volume_id_for(None, "/x/imagesTr/case 1.nii.gz") == "case_1"
    assert volume_id_for("mine", "a.nii") == "mine"
    assert volume_id_for(None, None).startswith("volume-")


def test_job_with_a_source_compresses_it_on_the_worker(tmp_path, phantom_pairs):
    from vesselzip.container import decode_volume, encode_volume
    from vesselzip.metrics.compression import psnr
    from vesselzip.model import load_segmenter
    from vesselzip.volumes import read_volume

    store = LocalStore(tmp_path / "store")
    dataset, _ = create_dataset(store, name=None, owner=None)
    image, truth = phantom_pairs[0]
    volume = add_volume(store, dataset.id, image, truth, filename=image.name)
    config = parse_codec_spec("zfp:rate=4")
    job_id = cell_job_id(dataset.id, volume.fingerprint, config, "frangi")
    spec = JobSpec(
        job_id=job_id,
        blob_key=blob_key(job_id),
        truth_key=volume.truth_key,
        source_key=volume.image_key,
        model="frangi",
        codec=config,
        image=ImageInfo(shape=volume.shape, dtype=volume.dtype, spacing=volume.spacing),
        owned_keys=[blob_key(job_id)],
    )
    result = run_job(spec, store, load_segmenter("frangi"))

    original = read_volume(image)
    expected_blob = encode_volume(original, get_codec(config))
    assert store.get_bytes(blob_key(job_id)) == expected_blob
    assert result.compression["blob_nbytes"] == len(expected_blob)
    assert result.compression["payload_nbytes"] < len(expected_blob)
    decoded = decode_volume(expected_blob)
    assert result.compression["psnr_db"] == pytest.approx(psnr(original.data, decoded.data))
    assert result.stage_seconds["compress"] > 0
    assert result.segmentation is not None
    assert 0.0 <= result.segmentation["dice"] <= 1.0 and math.isfinite(result.segmentation["dice"])


def test_a_grid_may_name_the_paper_or_the_comparison_grid():
    from vesselzip.codecs import parse_codec_spec
    from vesselzip.sweeps.grid import COMPARISON_GRID, PAPER_GRID, parse_grid

    assert parse_grid(["paper"]) == parse_grid(None)
    comparison = parse_grid("comparison")
    assert comparison[0] == {"id": "none"} and len(comparison) == 1 + len(COMPARISON_GRID)
    ids = {config["id"] for config in comparison}
    assert ids == {
        "none",
        "zfp",
        "sz3",
        "sperr",
        "lerc",
        "jpeg2000",
        "htj2k",
        "jpegls",
        "zstd",
        "blosc2",
    }
    # The paper's ZFP settings come first, and names mix with specs without repeats.
    assert comparison[1 : 1 + len(PAPER_GRID)] == [parse_codec_spec(s) for s in PAPER_GRID]
    mixed = parse_grid(["paper", "zfp:rate=2", "sz3:tolerance=100"])
    assert len(mixed) == 1 + len(PAPER_GRID) + 1


def queued_sweep(grid: list) -> SweepResults:
    """The summary of a sweep of one volume over `grid` whose jobs are all queued."""
    cells = [
        SweepCell(volume_id="a", setting=index, job_id=cell_job_id("d" * 32, "a", config, "frangi"))
        for index, config in enumerate(grid)
    ]
    spec = SweepSpec(
        id="s" * 32, dataset_id="d" * 32, model="frangi", queue="cpu", grid=grid,
        idempotency_key="k", created_at=50.0, submitted_at=50.0, cells=cells,
    )  # fmt: skip
    return sweep_summary(spec, {cell.job_id: JobOutcome(state="queued") for cell in cells})


def test_each_other_codec_gets_its_own_pair_of_tables():
    grid = parse_grid(
        ["zfp:rate=2", "sz3:tolerance=5", "jpegls:near=2", "sz3:psnr=50", "zfp:precision=10"]
    )
    markdown = markdown_tables(queued_sweep(grid))
    titles = [line for line in markdown.splitlines() if line.startswith("**Table")]
    assert titles == [
        "**Table 1: ZFP fixed-rate compression results** (original data size: 0.00 MB)",
        "**Table 2: Segmentation performance, ZFP fixed-rate**",
        "**Table 3: SZ3 compression results** (original data size: 0.00 MB)",
        "**Table 4: Segmentation performance, SZ3**",
        "**Table 5: JPEG-LS compression results** (original data size: 0.00 MB)",
        "**Table 6: Segmentation performance, JPEG-LS**",
        "**Table 7: ZFP, other modes compression results** (original data size: 0.00 MB)",
        "**Table 8: Segmentation performance, ZFP, other modes**",
    ]
    sz3_table = markdown.split("**Table 3")[1].split("**Table 4")[0]
    assert "| sz3:tolerance=5 |" in sz3_table and "| sz3:psnr=50 |" in sz3_table
    assert "jpegls" not in sz3_table


def test_comparison_figures_wait_for_finished_jobs_and_name_each_curve():
    from vesselzip.sweeps.figures import curve_of

    summary = queued_sweep(parse_grid("comparison"))
    for name in ("dice_vs_cr", "psnr_vs_bpv"):
        with pytest.raises(SweepNotReadyError):
            figure_png(summary, name)
    curves = {curve_of(row) for row in summary.settings if row.group != "baseline"}
    assert curves == {
        "ZFP fixed rate", "ZFP tolerance", "SZ3 tolerance", "SPERR tolerance",
        "LERC tolerance", "JPEG 2000 rate", "HTJ2K rate", "JPEG-LS near",
        "JPEG-LS lossless", "JPEG 2000 lossless", "HTJ2K lossless", "Zstandard lossless",
        "Blosc2 lossless",
    }  # fmt: skip
