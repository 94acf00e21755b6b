"""`vesselzip demo`: the main job end to end, through HTTP only.

Writes phantoms with known vessel masks, posts every (phantom, compression setting)
pair with its truth, follows the jobs and prints what compression did to the volume
(CR, PSNR) and to the segmentation (Dice, IoU)."""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import tempfile
import time
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vesselzip.errors import VesselzipError
from vesselzip.jobs import JobState
from vesselzip.settings import get_settings
from vesselzip_api.client import VesselzipClient
from vesselzip_api.local_service import local_service


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 16:
        raise VesselzipError(
            f"--shape wants three sizes of at least 16, e.g. 96,96,64; got {text!r}"
        )
    return shape


#: Default phantom shape per --field-of-view: a clinical whole-head grid, or a crop.
DEFAULT_SHAPES = {"cow": "512,512,160", "whole-head": "512,512,160", "crop": "64,64,48"}


def run_demo(args: argparse.Namespace) -> int:
    from vesselzip.dataset_crops import write_crop_dataset
    from vesselzip.phantoms import write_phantom_dataset

    console = Console()
    if not console.is_terminal:  # e.g. piped into a file: do not squeeze the table
        console = Console(width=120)
    field_of_view = getattr(args, "field_of_view", "crop")
    shape = parse_shape(args.shape or DEFAULT_SHAPES[field_of_view])
    specs = [s.strip() for s in args.settings.split(",") if s.strip()]
    if args.volumes < 1 or not specs:
        raise VesselzipError("the demo needs at least one volume and one setting")

    with (
        tempfile.TemporaryDirectory(prefix="vesselzip-demo-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        console.print(
            f"Writing {args.volumes} phantom(s) of {shape[0]}x{shape[1]}x{shape[2]} voxels"
            + (", cut to their Circle of Willis" if field_of_view == "cow" else "")
        )
        kind = "crop" if field_of_view == "crop" else "whole-head"
        dataset_json = write_phantom_dataset(
            Path(tmp) / "phantoms",
            args.volumes,
            seed=args.seed,
            shape=shape,
            spacing=None,
            field_of_view=kind,
        )
        if field_of_view == "cow":
            dataset_json = write_crop_dataset(dataset_json, Path(tmp) / "cow", cow_margin_mm=5.0)
        dataset = json.loads(dataset_json.read_text())
        base = dataset_json.parent
        pairs = [(base / e["image"], base / e["label"]) for e in dataset["training"]]

        url = args.url
        if not url:
            log_path = Path(get_settings().store_dir).resolve() / "logs" / "demo-serve.log"
            console.print(f"Starting the embedded service (log: {log_path}) ...")
            url = stack.enter_context(local_service(log_path=log_path))
        console.print(f"Service at {url}")
        client = stack.enter_context(VesselzipClient(url, api_key=args.api_key))

        jobs = []
        started = time.monotonic()
        for image, truth in pairs:
            for spec in specs:
                created = client.post_job(image, truth, codec=spec, model=args.model)
                jobs.append({"volume": image.name, "setting": spec, "id": created["id"]})
        console.print(f"Posted {len(jobs)} job(s)")
        results = follow(client, jobs, console, args.timeout)
        console.print(results_table(jobs, results))
        console.print(f"{len(jobs)} job(s) in {time.monotonic() - started:.1f} s")
        out = getattr(args, "out", None)
        if out is not None:
            page = save_results(client, jobs, results, Path(out))
            console.print(f"Results and pictures in {out}: open {page}")

    failed = [r for r in results.values() if r["state"] != "finished"]
    for job in failed:
        console.print(f"[red]job {job['id']} {job['state']}: {job.get('error')}[/red]")
    return 1 if failed else 0


def follow(client: VesselzipClient, jobs: list[dict], console: Console, timeout_s: float) -> dict:
    """Poll every job until it ends, with a progress bar per job."""
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bars:
        tasks = {
            job["id"]: bars.add_task(f"{job['volume']} {job['setting']}", total=1.0, state="queued")
            for job in jobs
        }
        while len(results) < len(jobs):
            for job in jobs:
                if job["id"] in results:
                    continue
                body = client.job(job["id"])
                state = body["state"]
                if state == "queued" and body.get("position") is not None:
                    state = f"queued (#{body['position'] + 1})"
                elif state == "running":
                    state = f"running: {body.get('stage')}"
                bars.update(tasks[job["id"]], completed=body["progress"], state=state)
                if JobState(body["state"]).ended:
                    results[job["id"]] = body
            if time.monotonic() > deadline:
                raise VesselzipError(f"jobs still running after {timeout_s:.0f} s")
            time.sleep(0.5)
    return results


def results_table(jobs: list[dict], results: dict[str, dict]) -> Table:
    table = Table(title="Compression vs. segmentation", box=box.SIMPLE_HEAD)
    for name in ("volume", "setting", "CR", "bits/vox", "PSNR dB", "SSIM", "Dice", "IoU"):
        table.add_column(name, justify="left" if name in ("volume", "setting") else "right")
    table.add_column("infer s", justify="right")
    table.add_column("state")
    for job in jobs:
        body = results[job["id"]]
        comp = body.get("compression") or {}
        seg = body.get("segmentation") or {}
        seconds = (body.get("stage_seconds") or {}).get("inference")
        table.add_row(
            job["volume"].removesuffix(".nii.gz"),
            job["setting"],
            _fmt(comp.get("cr_raw"), ".2f"),
            _fmt(comp.get("bits_per_voxel"), ".2f"),
            "lossless" if comp.get("max_abs_error") == 0 else _fmt(comp.get("psnr_db"), ".1f"),
            _fmt(comp.get("ssim"), ".4f"),
            _fmt(seg.get("dice"), ".4f"),
            _fmt(seg.get("iou"), ".4f"),
            _fmt(seconds, ".1f"),
            body["state"],
        )
    return table


def save_results(
    client: VesselzipClient, jobs: list[dict], results: dict[str, dict], out: Path
) -> Path:
    """results.json, each finished job's pictures, and index.html showing them."""
    from vesselzip.pictures import VIEWS

    (out / "pictures").mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps([{**job, "result": results[job["id"]]} for job in jobs], indent=1) + "\n"
    )
    sections = []
    for job in jobs:
        body = results[job["id"]]
        if body["state"] != "finished":
            continue
        stem = f"{job['volume'].removesuffix('.nii.gz')}_{job['setting'].replace(':', '_')}"
        images = []
        for view in VIEWS:
            png = client.picture(job["id"], f"mask_{view}")
            if png is not None:
                (out / "pictures" / f"{stem}_{view}.png").write_bytes(png)
                images.append(f'<img src="pictures/{stem}_{view}.png" alt="{view}">')
        seg = body.get("segmentation") or {}
        comp = body.get("compression") or {}
        sections.append(
            f"<h2>{html.escape(job['volume'])} · {html.escape(job['setting'])}</h2>"
            f"<p>CR {_fmt(comp.get('cr_raw'), '.2f')}, PSNR {_fmt(comp.get('psnr_db'), '.1f')} dB, "
            f"Dice {_fmt(seg.get('dice'), '.4f')}, IoU {_fmt(seg.get('iou'), '.4f')}</p>"
            f"<p>{''.join(images)}</p>"
        )
    page = out / "index.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>vesselzip demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}img{height:320px;margin-right:8px}"
        "</style><h1>vesselzip demo</h1><p>Maximum-intensity projections of each decoded "
        "volume with its mask: true positives green, false positives red, false negatives "
        "blue.</p>" + "".join(sections)
    )
    return page


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
