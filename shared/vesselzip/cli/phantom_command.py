"""`vesselzip phantom OUTDIR`: write a synthetic TOF-MRA dataset (images, exact
vessel masks, MONAI decathlon-style dataset.json); with `--geometry MASK`, volumes
rendered around a real vessel mask on its own grid."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vesselzip.errors import VesselzipError

#: The phantoms' fields of view (vesselzip.phantoms.FIELDS_OF_VIEW), repeated here
#: so that `vesselzip --help` does not import the generator.
FIELDS_OF_VIEW = ("crop", "head", "whole-head")
#: How a --geometry mask's values are read (vesselzip.phantoms.real_masks.MASK_CLASSES).
MASK_CLASSES = ("auto", "topcow", "binary")


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
            "holds the union of the named territories. "
            "With --geometry MASK, each volume is instead rendered around a real vessel "
            "mask, on the mask's grid (shape and affine kept), and labelled with the mask."
        ),
    )
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="directory to write into")
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="number of volumes (default 8), or with --geometry per mask (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first volume (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
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
    parser.add_argument(
        "--geometry",
        type=Path,
        action="append",
        default=None,
        metavar="MASK",
        help=(
            "render around this real vessel mask (.nii/.nii.gz; 0 background, >0 vessel, "
            "or TopCoW classes) on its own grid; may be given several times"
        ),
    )
    parser.add_argument(
        "--classes",
        choices=MASK_CLASSES,
        default="auto",
        help=(
            "with --geometry: how mask values are read: topcow (multi-class Circle of "
            "Willis, written also as named territories), binary (every vessel only) or "
            "auto (topcow when all values are TopCoW classes, default)"
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.geometry:
        return run_geometry(args)
    # Imported here so `vesselzip --help` stays fast.
    from rich.console import Console
    from rich.progress import Progress

    from vesselzip.phantoms import write_phantom_dataset

    if args.classes != "auto":
        raise VesselzipError("--classes applies only with --geometry")
    args.n = 8 if args.n is None else args.n
    args.shape = [128, 128, 96] if args.shape is None else args.shape
    check_output(args.n, args.outdir)

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


def run_geometry(args: argparse.Namespace) -> int:
    """`--geometry MASK ...`: render around real masks, on their grids."""
    from rich.console import Console
    from rich.progress import Progress

    from vesselzip.phantoms.geometry_dataset import write_geometry_dataset

    given = [
        flag
        for flag, value in (
            ("--shape", args.shape),
            ("--spacing", args.spacing),
            ("--field-of-view", args.field_of_view),
        )
        if value is not None
    ]
    if given:
        raise VesselzipError(
            f"{' and '.join(given)} cannot be used with --geometry: the mask's grid is used"
        )
    n = 1 if args.n is None else args.n
    check_output(n, args.outdir)

    started = time.perf_counter()
    count = n * len(args.geometry)
    vessel_fractions = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("renders", total=count)

        def advance(_index, phantom):
            vessel_fractions.append(float(phantom.mask.mean()))
            progress.advance(task)

        dataset_json = write_geometry_dataset(
            args.geometry, args.outdir, n, seed=args.seed, classes=args.classes, progress=advance
        )
    elapsed = time.perf_counter() - started
    mean_vessel = 100.0 * sum(vessel_fractions) / len(vessel_fractions)
    volumes = f"{count} volume{'s' if count > 1 else ''}"
    masks = f"{len(args.geometry)} mask{'s' if len(args.geometry) > 1 else ''}"
    seeds = f"seeds {args.seed}-{args.seed + count - 1}" if count > 1 else f"seed {args.seed}"
    print(
        f"wrote {volumes} around {masks} ({seeds}, {mean_vessel:.2f}% vessel voxels) "
        f"to {args.outdir} in {elapsed:.1f}s; dataset: {dataset_json}"
    )
    return 0


def check_output(n: int, outdir: Path) -> None:
    """At least one volume, and a folder to write into (an old dataset there is said)."""
    if n < 1:
        raise VesselzipError(f"--n must be at least 1, got {n}")
    if outdir.exists() and not outdir.is_dir():
        raise VesselzipError(f"{outdir} exists and is not a directory")
    if (outdir / "dataset.json").exists():
        print(f"note: overwriting the dataset in {outdir}", file=sys.stderr)
