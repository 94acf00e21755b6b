"""`vesselzip phantom OUTDIR`: write a synthetic TOF-MRA dataset (images, exact
vessel masks, MONAI decathlon-style dataset.json)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vesselzip.errors import VesselzipError

#: The phantoms' fields of view (vesselzip.phantoms.FIELDS_OF_VIEW), repeated here
#: so that `vesselzip --help` does not import the generator.
FIELDS_OF_VIEW = ("crop", "head", "whole-head")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write synthetic TOF-MRA volumes with exact vessel masks",
        description=(
            "Write N synthetic TOF-MRA-like volumes (imagesTr/, int16) with exact vessel "
            "masks (labelsTr/, uint8) and a MONAI decathlon-style dataset.json. "
            "Volume i uses seed SEED+i, so the same arguments give the same files. "
            "Whole heads (an in-plane field of view of 120 mm or more, or "
            "--field-of-view whole-head) also get territoriesTr/ (the named arterial "
            "territories, multi-class) and vesselsTr/ (every vessel); their labelsTr/ "
            "holds the union of the named territories."
        ),
    )
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="directory to write into")
    parser.add_argument("--n", type=int, default=8, help="number of volumes (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first volume (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=[128, 128, 96],
        metavar=("X", "Y", "Z"),
        help="volume size in voxels (default 128 128 96)",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=None,
        metavar=("SX", "SY", "SZ"),
        help=(
            "voxel size in mm (default: drawn per volume; crops 0.28-0.6 in-plane, whole "
            "heads 0.35-0.5; slices up to 0.8)"
        ),
    )
    parser.add_argument(
        "--field-of-view",
        choices=FIELDS_OF_VIEW,
        default=None,
        help=(
            "crop (tissue fills the volume), head (a small head in air) or whole-head "
            "(an anatomical head with named arteries); default: whole-head when the "
            "in-plane field of view is at least 120 mm, otherwise drawn per volume"
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `vesselzip --help` stays fast.
    from rich.console import Console
    from rich.progress import Progress

    from vesselzip.phantoms import write_phantom_dataset

    if args.n < 1:
        raise VesselzipError(f"--n must be at least 1, got {args.n}")
    if args.outdir.exists() and not args.outdir.is_dir():
        raise VesselzipError(f"{args.outdir} exists and is not a directory")
    if (args.outdir / "dataset.json").exists():
        print(f"note: overwriting the dataset in {args.outdir}", file=sys.stderr)

    started = time.perf_counter()
    vessel_fractions = []
    # The bar goes to stderr and only to a terminal; the summary line is the output.
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("phantoms", total=args.n)

        def advance(_index, phantom):
            vessel_fractions.append(float(phantom.mask.mean()))
            progress.advance(task)

        dataset_json = write_phantom_dataset(
            args.outdir,
            args.n,
            seed=args.seed,
            shape=tuple(args.shape),
            spacing=None if args.spacing is None else tuple(args.spacing),
            field_of_view=args.field_of_view,
            progress=advance,
        )
    elapsed = time.perf_counter() - started
    mean_vessel = 100.0 * sum(vessel_fractions) / len(vessel_fractions)
    print(
        f"wrote {args.n} phantoms ({'x'.join(map(str, args.shape))}, seeds "
        f"{args.seed}-{args.seed + args.n - 1}, {mean_vessel:.1f}% vessel voxels) "
        f"to {args.outdir} in {elapsed:.1f}s; dataset: {dataset_json}"
    )
    return 0
