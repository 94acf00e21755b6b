"""`vesselzip sweep DATASET_DIR --url URL`: the paper's study for a dataset, run by a
vesselzip service over HTTP.

Uploads the dataset (once: the same files give the same dataset, and volumes already
there are skipped), submits the sweep (the same dataset, grid and model give the same
sweep, so a rerun reuses finished results), follows it, then saves the tables, the
per-volume results and the figures into --out and prints the tables. Every call goes
through vesselzip_api.client.VesselzipClient (imported when the command runs)."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vesselzip.errors import VesselzipError

if TYPE_CHECKING:
    from vesselzip_api.client import VesselzipClient

DEFAULT_URL = "http://127.0.0.1:8000"  # where `vesselzip serve` listens


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a compression sweep over a dataset on a vesselzip service",
        description="Upload DATASET_DIR (a folder with a decathlon-style dataset.json, e.g. "
        "from `vesselzip phantom`) to the service at --url, run every setting of --grid "
        "(default: the paper's ZFP grid) plus the uncompressed baseline on every volume, "
        "and save the tables (JSON, CSV, Markdown), per-volume results and figures in "
        "--out. Running it again reuses the uploaded dataset and the finished jobs.",
    )
    parser.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (X-API-Key), when the service wants one")
    parser.add_argument(
        "--grid",
        help="comma-separated codec specs, e.g. zfp:rate=2,zfp:tolerance=500, or a grid "
        "name: paper, comparison (every codec side by side) (default: the paper's, zfp "
        "rate 16, 8, 4, 2 and tolerance 500, 1000, 1500)",
    )
    parser.add_argument("--model", help="segmenter (default: the service's default model)")
    parser.add_argument("--queue", choices=("gpu", "cpu"), help="worker queue")
    parser.add_argument("--idempotency-key", help="name the sweep (same key, same sweep)")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: ./sweep-<first 8 of the sweep id>)"
    )
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="give up after N seconds")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status checks")
    parser.set_defaults(handler=run_sweep)


# -- the dataset folder --------------------------------------------------------------
@dataclass
class Entry:
    name: str
    image: Path
    label: Path | None


def read_dataset_dir(folder: Path) -> tuple[str, list[Entry]]:
    """(name, entries) of a decathlon-style dataset: "training" items with an image and
    a label, "test" items (paths or {"image": ...}) without one."""
    manifest_path = folder / "dataset.json"
    if not manifest_path.is_file():
        raise VesselzipError(f"{folder} has no dataset.json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise VesselzipError(f"{manifest_path} is not JSON: {exc}") from exc
    entries = []
    items = [(item, True) for item in manifest.get("training", [])]
    items += [(item, False) for item in manifest.get("test", [])]
    for item, labelled in items:
        image = item if isinstance(item, str) else item.get("image")
        label = item.get("label") if labelled and isinstance(item, dict) else None
        if not isinstance(image, str):
            raise VesselzipError(f"{manifest_path}: an entry has no image path: {item!r}")
        entry = Entry(
            name=_volume_name(image),
            image=(folder / image).resolve(),
            label=(folder / label).resolve() if isinstance(label, str) else None,
        )
        for path in (entry.image, entry.label):
            if path is not None and not path.is_file():
                raise VesselzipError(f"{manifest_path} lists {path}, which does not exist")
        entries.append(entry)
    if not entries:
        raise VesselzipError(f"{manifest_path} lists no volumes")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise VesselzipError(f"{manifest_path}: two volumes share a file name")
    return str(manifest.get("name") or folder.name), entries


def _volume_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- over HTTP (vesselzip_api.client) -------------------------------------------------
def upload_dataset(
    client: VesselzipClient, name: str, entries: list[Entry], say: Callable[[str], object]
) -> dict[str, Any]:
    """The dataset for these files, creating it and adding missing volumes."""
    hashes = {e.name: (_sha256(e.image), e.label and _sha256(e.label)) for e in entries}
    fingerprint = hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()
    dataset = client.create_dataset(name, idempotency_key=f"dataset-{fingerprint}")
    present = {v["id"]: v for v in dataset["volumes"]}
    missing = [e for e in entries if e.name not in present]
    say(
        f"dataset {dataset['id']}: {len(present)} volume(s) already uploaded, "
        f"{len(missing)} to upload"
    )
    for i, entry in enumerate(missing, 1):
        client.add_volume(dataset["id"], entry.image, entry.label, name=entry.name)
        say(f"  uploaded {entry.name} ({i}/{len(missing)})")
    return client.dataset(dataset["id"])


def download(client: VesselzipClient, status: dict[str, Any], out: Path) -> list[Path]:
    """Tables, per-volume results and every figure the sweep (`status`, as GET
    /v1/sweeps/{id} gives it) has."""
    sweep_id = status["id"]
    contents: dict[str, bytes | None] = {
        "tables.json": client.sweep_tables(sweep_id, "json"),
        "tables.csv": client.sweep_tables(sweep_id, "csv"),
        "tables.md": client.sweep_tables(sweep_id, "md"),
        "cases.json": client.sweep_cases(sweep_id, "json"),
        "cases.csv": client.sweep_cases(sweep_id, "csv"),
    }
    for name in status["links"]["figures"]:
        # None when the grid has no such settings, or none of them finished.
        contents[f"{name}.png"] = client.sweep_figure(sweep_id, name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, content in contents.items():
        if content is not None:
            (out / filename).write_bytes(content)
            written.append(out / filename)
    return written


# -- the command ---------------------------------------------------------------------
def run_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vesselzip_api.client import VesselzipClient

    console = Console(stderr=True, soft_wrap=True)  # messages stay on one line
    started = time.perf_counter()
    name, entries = read_dataset_dir(args.dataset_dir)
    grid = [s.strip() for s in args.grid.split(",") if s.strip()] if args.grid else None
    with VesselzipClient(args.url, args.api_key) as client:
        dataset = upload_dataset(client, name, entries, console.print)
        created = client.submit_sweep(
            dataset["id"],
            grid=grid,
            model=args.model,
            queue=args.queue,
            idempotency_key=args.idempotency_key,
        )
        console.print(
            f"sweep {created['id']}: {created['total_jobs']} jobs, "
            f"{created['jobs_submitted']} queued now, {created['jobs_reused']} reused"
        )
        deadline = time.monotonic() + args.timeout
        with Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} jobs"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("sweep", total=created["total_jobs"], detail="")
            while True:
                status = client.sweep(created["id"])
                state = status["progress"]
                progress.update(task, completed=state["done"], detail=_detail(state))
                if state["state"] in ("finished", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise VesselzipError(
                        f"sweep {created['id']} not done after {args.timeout:.0f} s "
                        f"({state['done']}/{state['total']}); run the same command again "
                        "to pick it up"
                    )
                time.sleep(args.poll)
        out = args.out or Path(f"sweep-{created['id'][:8]}")
        written = download(client, status, out)
        (out / "sweep.json").write_text(json.dumps(status, indent=1) + "\n")

    print((out / "tables.md").read_text())
    for failure in status["failures"]:
        console.print(
            f"[red]{failure['volume']} {failure['setting']}: {failure['state']}: {failure['error']}"
        )
    console.print(
        f"{len(written) + 1} files in {out}; wall time {time.perf_counter() - started:.1f} s"
    )
    return 0 if state["state"] == "finished" else 1


def _detail(progress: dict[str, Any]) -> str:
    counts = progress["counts"]
    parts = [f"{counts[s]} {s}" for s in ("running", "queued", "failed") if counts.get(s)]
    if progress["eta_s"] is not None and progress["done"] < progress["total"]:
        parts.append(f"ETA {progress['eta_s']:.0f} s")
    return ", ".join(parts)
