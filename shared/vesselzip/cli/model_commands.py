"""`vesselzip segment`, `vesselzip train`, `vesselzip models` and
`vesselzip export-weights`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from vesselzip.errors import VesselzipError
from vesselzip.model.train import SMALL_FEATURE_DIMS, TrainConfig


def register(subparsers) -> None:
    seg = subparsers.add_parser(
        "segment", help="segment vessels in a NIfTI volume and write the mask"
    )
    seg.add_argument("input", type=Path, help="input volume (.nii or .nii.gz)")
    seg.add_argument("output", type=Path, help="output mask (.nii or .nii.gz), input's grid")
    seg.add_argument("--model", default=None, help="segmenter name (default: settings)")
    seg.add_argument("--checkpoint", type=Path, default=None, help="checkpoint for mvn-checkpoint")
    seg.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    seg.add_argument(
        "--flip-averaging",
        action="store_true",
        help="average over the 8 flips of the volume (a little more Dice, 8x the time)",
    )
    seg.set_defaults(handler=segment_command)

    models = subparsers.add_parser("models", help="list the available segmenters")
    models.set_defaults(handler=models_command)

    train = subparsers.add_parser(
        "train", help="train MambaVesselNet++ on a decathlon-style dataset.json"
    )
    train.add_argument("--data", type=Path, required=True, help="dataset.json")
    train.add_argument("--out", type=Path, required=True, help="output directory")
    train.add_argument(
        "--feature-dims", type=int, nargs=5, default=list(SMALL_FEATURE_DIMS), metavar="F"
    )
    train.add_argument("--iterations", type=int, default=5000)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--patch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--min-lr", type=float, default=1e-7)
    train.add_argument("--weight-decay", type=float, default=1e-5)
    train.add_argument("--switch-ratio", type=float, default=0.4)
    train.add_argument(
        "--final-focal-weight",
        type=float,
        default=1.0,
        help="Focal's share once the ramp ends (the paper: 1, Focal alone)",
    )
    train.add_argument("--val-every", type=int, default=500)
    train.add_argument("--val-count", type=int, default=4)
    train.add_argument(
        "--val-data",
        type=Path,
        default=None,
        help="validate on every volume of this dataset.json (default: the data's "
        "validation list, else the last --val-count volumes)",
    )
    train.add_argument(
        "--target-spacing",
        type=float,
        nargs=3,
        default=None,
        metavar="MM",
        help="resample to this spacing (default: the paper's 0.3542 mm isotropic)",
    )
    train.add_argument(
        "--native-grid",
        action="store_true",
        help="keep each volume's own voxel grid (no resampling to --target-spacing)",
    )
    train.add_argument("--window", type=float, nargs=2, default=[0.0, 1000.0], metavar="I")
    train.add_argument(
        "--window-percentiles",
        type=float,
        nargs=2,
        default=None,
        metavar="P",
        help="window each volume between these percentiles instead of --window",
    )
    train.add_argument(
        "--overlap", type=float, default=0.25, help="sliding-window overlap (validation, inference)"
    )
    train.add_argument(
        "--init", type=Path, default=None, help="start from this checkpoint's weights"
    )
    train.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep argmax instead of choosing the vessel-probability threshold on validation",
    )
    train.add_argument("--no-augment", action="store_true")
    train.add_argument(
        "--zoom-prob",
        type=float,
        default=TrainConfig.zoom_prob,
        help="share of patches zoomed 0.7-1.4x (0: exact labels stay exact)",
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument(
        "--stop-after", type=int, default=None, metavar="N", help="stop after iteration N"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--num-workers", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)

    export = subparsers.add_parser(
        "export-weights", help="strip a training checkpoint down to shippable weights"
    )
    export.add_argument("checkpoint", type=Path)
    export.add_argument("output", type=Path, help="output .pt (a .json config is written too)")
    export.add_argument("--float32", action="store_true", help="keep float32 (default fp16)")
    export.set_defaults(handler=export_command)


def segment_command(args) -> int:
    from vesselzip.model import load_segmenter
    from vesselzip.model.segmenters import NetworkSegmenter
    from vesselzip.volumes import read_volume, write_volume

    volume = read_volume(args.input)
    segmenter = load_segmenter(args.model, checkpoint=args.checkpoint, device=args.device)
    if args.flip_averaging:
        if not isinstance(segmenter, NetworkSegmenter):
            raise VesselzipError(f"--flip-averaging needs a network model, not {segmenter.name}")
        segmenter = segmenter.with_config(flip_averaging=True)
    started = time.monotonic()
    mask = segmenter.segment(volume, progress=_print_progress if sys.stderr.isatty() else None)
    seconds = time.monotonic() - started
    if sys.stderr.isatty():
        print(file=sys.stderr)
    write_volume(args.output, mask, like=volume)
    print(
        f"{args.output}: {segmenter.name}, {int(mask.sum())} vessel voxels "
        f"of {mask.size} in {seconds:.1f} s"
    )
    return 0


def _print_progress(fraction: float) -> None:
    print(f"\rsegmenting {100 * fraction:5.1f}%", end="", file=sys.stderr, flush=True)


def models_command(args) -> int:
    from vesselzip.model import available_segmenters

    for name in available_segmenters():
        print(name)
    return 0


def train_command(args) -> int:
    import torch

    from vesselzip.model.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.native_grid and args.target_spacing:
        raise VesselzipError("give either --native-grid or --target-spacing, not both")
    spacing = {}  # TrainConfig's default: the paper's spacing
    if args.native_grid:
        spacing = {"target_spacing": None}
    elif args.target_spacing:
        spacing = {"target_spacing": args.target_spacing}
    config = TrainConfig(
        data=args.data,
        out=args.out,
        feature_dims=args.feature_dims,
        iterations=args.iterations,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        switch_ratio=args.switch_ratio,
        final_focal_weight=args.final_focal_weight,
        val_every=args.val_every,
        val_count=args.val_count,
        val_data=args.val_data,
        seed=args.seed,
        device=args.device,
        num_workers=args.num_workers,
        augment=not args.no_augment,
        zoom_prob=args.zoom_prob,
        window=args.window,
        window_percentiles=args.window_percentiles,
        overlap=args.overlap,
        calibrate_threshold=not args.no_calibrate,
        init=args.init,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.quiet,
        **spacing,
    )
    summary = train(config)
    print(json.dumps(summary, indent=2))
    return 0


def export_command(args) -> int:
    from vesselzip.model.train import export_weights

    out = export_weights(args.checkpoint, args.output, half=not args.float32)
    size = out.stat().st_size / 1e6
    print(f"{out}: {size:.1f} MB, config in {out.with_suffix('.json')}")
    return 0
