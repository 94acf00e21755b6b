"""`vesselzip tune DATASET_DIR --url URL --codec zfp:tolerance --max-dice-loss 0.005`:
the strongest setting of one codec mode that keeps segmentation within a Dice budget,
per volume and for the dataset, searched by a vesselzip service over HTTP.

Uploads the dataset as `vesselzip sweep` does (once), submits the tuning (the same
request gives the same tuning, so a rerun picks it up), follows it, then prints each
volume's search path and the dataset-level answer and saves the whole result as
tuning.json in --out."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from vesselzip.cli.sweep_command import DEFAULT_URL, read_dataset_dir, upload_dataset
from vesselzip.errors import VesselzipError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="find the strongest setting within a Dice budget on a vesselzip service",
        description="Upload DATASET_DIR (a folder with a decathlon-style dataset.json) to "
        "the service at --url and search, per volume, the strongest value of --codec "
        "(CODEC:MODE) whose Dice loss against the uncompressed volume stays within "
        "--max-dice-loss (bisection); then the one value that keeps --coverage of the "
        "volumes within it. Volumes without a truth are scored by agreement with the "
        "uncompressed volume's mask.",
    )
    parser.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (X-API-Key), when the service wants one")
    parser.add_argument(
        "--codec", required=True, help="CODEC:MODE, e.g. zfp:tolerance, zfp:rate, sz3:tolerance"
    )
    parser.add_argument("--max-dice-loss", type=float, required=True, help="the budget, e.g. 0.005")
    parser.add_argument(
        "--coverage",
        type=float,
        help="share of volumes the dataset setting keeps within budget (default 0.95)",
    )
    parser.add_argument(
        "--score",
        choices=("auto", "truth", "agreement"),
        help="truth (Dice vs the truth), agreement (vs the uncompressed volume's mask); "
        "default auto: truth when every volume has one",
    )
    parser.add_argument(
        "--range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="values of the mode to try (default: its usual range)",
    )
    parser.add_argument("--model", help="segmenter (default: the service's default model)")
    parser.add_argument("--queue", choices=("gpu", "cpu"), help="worker queue")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: ./tuning-<first 8 of its id>)"
    )
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="give up after N seconds")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status checks")
    parser.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vesselzip_api.client import VesselzipClient

    console = Console(stderr=True, soft_wrap=True)
    name, entries = read_dataset_dir(args.dataset_dir)
    with VesselzipClient(args.url, args.api_key) as client:
        dataset = upload_dataset(client, name, entries, console.print)
        created = client.submit_tuning(
            dataset["id"],
            codec=args.codec,
            max_dice_loss=args.max_dice_loss,
            coverage=args.coverage,
            score=args.score,
            value_range=tuple(args.range) if args.range else None,
            model=args.model,
            queue=args.queue,
        )
        console.print(
            f"tuning {created['id']}: {created['axis']} over {created['candidates']} values, "
            f"{created['volumes']} volume(s)" + (" (picked up)" if not created["created"] else "")
        )
        deadline = time.monotonic() + args.timeout
        with Progress(
            TextColumn("[bold]tuning"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} jobs"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("tuning", total=created["volumes"], detail="")
            while True:
                status = client.tuning(created["id"])
                state = status["progress"]
                eta = state["eta_s"]
                detail = f"ETA {eta:.0f} s" if eta and state["state"] == "running" else ""
                progress.update(task, completed=state["done"], total=state["total"], detail=detail)
                if state["state"] in ("finished", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise VesselzipError(
                        f"tuning {created['id']} not done after {args.timeout:.0f} s; run the "
                        "same command again to pick it up"
                    )
                time.sleep(args.poll)
    out = args.out or Path(f"tuning-{created['id'][:8]}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuning.json").write_text(json.dumps(status, indent=1) + "\n")
    print(report(status))
    console.print(f"saved {out / 'tuning.json'}")
    return 0 if status["answer"]["state"] in ("finished", "none") else 1


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report(status: dict[str, Any]) -> str:
    """Each volume's search path, then the dataset answer, as Markdown."""
    scored = "Dice loss" if status["score"] == "truth" else "1 − agreement Dice"
    lines = [
        f"Tuning `{status['id']}`: {status['axis']} over {status['candidates']} values "
        f"({status['range'][0]:g} to {status['range'][1]:g}), budget {scored} ≤ "
        f"{status['max_dice_loss']:g}, model `{status['model']}`.",
        "",
        f"| Volume | Best setting | CR | Search path ({scored}) |",
        "|---|---|---:|---|",
    ]
    for search in status["volumes"]:
        path = ", ".join(
            f"{p['setting']} {'✓' if p['within_budget'] else '✗'} {_number(p['loss'])}"
            for p in search["path"]
        )
        best = search["best_setting"] or ("–" if search["state"] == "finished" else search["state"])
        if search["error"]:
            path += f" ({search['error']})"
        lines.append(f"| {search['volume']} | {best} | {_number(search['best_cr'], 2)} | {path} |")
    answer, inferences = status["answer"], status["inferences"]
    lines.append("")
    if answer["state"] == "finished":
        ci = f"[{_number(answer['delta_dice_ci_low'])}, {_number(answer['delta_dice_ci_high'])}]"
        lines.append(
            f"Dataset: **{answer['setting']}** keeps {answer['volumes_within']}/"
            f"{answer['volumes']} volumes within budget (target {answer['coverage_target']:g}); "
            f"pooled CR {_number(answer['cr_pooled'], 2)}, ΔDice "
            f"{_number(answer['delta_dice_mean'])} 95% CI {ci}, agreement Dice mean "
            f"{_number(answer['agreement_dice_mean'])} (min {_number(answer['agreement_dice_min'])})."
        )
    else:
        lines.append(f"Dataset: no answer ({answer['state']}).")
    lines.append(
        f"{inferences['used']} inferences ({inferences['reused']} reused, {inferences['ran']} "
        f"run) against {inferences['full_grid']} for a full grid at the same resolution."
    )
    return "\n".join(lines)
