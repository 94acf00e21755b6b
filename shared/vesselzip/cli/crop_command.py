"""`vesselzip crop-dataset DATASET OUTDIR`: cut training crops from a decathlon-style
dataset (for example whole-head phantoms), every label set at the same place."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vesselzip.errors import VesselzipError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "crop-dataset",
        help="cut training crops from a dataset (e.g. whole heads) into a new dataset",
        description=(
            "Cut --per-volume crops of --size voxels from every training volume of a "
            "decathlon-style dataset.json into OUTDIR (imagesTr/, labelsTr/, any other "
            "label set the entries list, dataset.json). A share --on-label of the crops is "
            "centred near a labelled voxel, the rest anywhere in the volume. With --cow, "
            "one crop per volume instead: the box of its Circle of Willis (from its "
            "territories) and a margin, as TopCoW cuts its region of interest. The same "
            "arguments give the same crops."
        ),
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET", help="the source dataset.json")
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="directory to write into")
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=[160, 160, 96],
        metavar=("X", "Y", "Z"),
        help="crop size in voxels (default 160 160 96)",
    )
    parser.add_argument("--per-volume", type=int, default=4, help="crops per volume (default 4)")
    parser.add_argument(
        "--on-label",
        type=float,
        default=0.5,
        help="share of crops centred near a labelled voxel (default 0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--cow",
        type=float,
        metavar="MARGIN_MM",
        help="one Circle-of-Willis crop per volume, with this margin in mm (e.g. 5)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from vesselzip.dataset_crops import write_crop_dataset

    if args.cow is not None and not 0 <= args.cow <= 100:
        raise VesselzipError(f"--cow takes a margin of 0 to 100 mm, got {args.cow}")
    if min(args.size) < 1:
        raise VesselzipError(f"--size must be positive, got {args.size}")
    if args.outdir.exists() and not args.outdir.is_dir():
        raise VesselzipError(f"{args.outdir} exists and is not a directory")
    try:
        count = len(json.loads(args.dataset.read_text()).get("training") or [])
    except (OSError, ValueError) as error:
        raise VesselzipError(f"cannot read {args.dataset}: {error}") from None

    started = time.perf_counter()
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("volumes", total=count)
        target = write_crop_dataset(
            args.dataset,
            args.outdir,
            size=tuple(args.size),
            per_volume=args.per_volume,
            seed=args.seed,
            on_label=args.on_label,
            cow_margin_mm=args.cow,
            progress=lambda _index: progress.advance(task),
        )
    crops = len(json.loads(target.read_text())["training"])
    size = "Circle of Willis" if args.cow is not None else "x".join(map(str, args.size))
    print(
        f"wrote {crops} crops ({size}) from {count} volumes "
        f"to {args.outdir} in {time.perf_counter() - started:.1f}s; dataset: {target}"
    )
    return 0
