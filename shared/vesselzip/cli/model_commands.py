"""`vesselzip segment`, `vesselzip train`, `vesselzip models` and
`vesselzip export-weights`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vesselzip.errors import VesselzipError

if TYPE_CHECKING:
    from vesselzip.model.train import TrainConfig

#: What these commands need beyond the core install.
WORKER_LIBRARIES = {"torch", "monai"}


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

    export = subparsers.add_parser(
        "export-weights", help="strip a training checkpoint down to shippable weights"
    )
    export.add_argument("checkpoint", type=Path)
    export.add_argument("output", type=Path, help="output .pt (a .json config is written too)")
    export.add_argument("--float32", action="store_true", help="keep float32 (default fp16)")
    export.set_defaults(handler=export_command)

    train_help = "train MambaVesselNet++ on a decathlon-style dataset.json"
    try:
        from vesselzip.model.train import TrainConfig
    except ModuleNotFoundError as exc:  # a gateway-only install: say so when it is run
        if exc.name not in WORKER_LIBRARIES:
            raise
        # No option is known here: every word after `train` is taken as it comes.
        stub = subparsers.add_parser("train", help=train_help, prefix_chars="\0", add_help=False)
        stub.add_argument("words", nargs="*")
        stub.set_defaults(handler=needs_worker_extra)
        return
    train = subparsers.add_parser("train", help=train_help)
    add_config_options(train, TrainConfig)
    # Options that are not TrainConfig fields.
    train.add_argument(
        "--native-grid",
        action="store_true",
        help="keep each volume's own voxel grid (no resampling to --target-spacing)",
    )
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.set_defaults(handler=train_command)


def segment_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

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
    # The bar goes to stderr and only to a terminal; the summary line is the output.
    console = Console(stderr=True)
    with Progress(
        TextColumn("segmenting"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("segment", total=1.0)

        def progress(fraction: float) -> None:
            bar.update(task, completed=fraction)

        mask = segmenter.segment(volume, progress=progress if console.is_terminal else None)
    seconds = time.monotonic() - started
    write_volume(args.output, mask, like=volume)
    print(
        f"{args.output}: {segmenter.name}, {int(mask.sum())} vessel voxels "
        f"of {mask.size} in {seconds:.1f} s"
    )
    return 0


def models_command(args) -> int:
    from vesselzip.model import available_segmenters
    from vesselzip.model.segmenters import SUMMARIES
    from vesselzip.weights import MODEL_ALIASES, MODEL_ANSWERS

    for name in available_segmenters():
        print(f"{name:<16} answers: {MODEL_ANSWERS.get(name, '?'):<15} {SUMMARIES[name]}")
    for alias, name in MODEL_ALIASES.items():
        print(f"{alias:<16} an earlier name of {name}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    import torch

    from vesselzip.model.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    summary = train(train_config(args))
    print(json.dumps(summary, indent=2))
    return 0


def needs_worker_extra(args: argparse.Namespace) -> int:
    raise VesselzipError(
        f"`vesselzip {args.command}` needs torch and MONAI, which this installation leaves "
        "out: install vesselzip[worker]"
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a `vesselzip train` command line."""
    from vesselzip.model.train import TrainConfig

    values = config_values(args, TrainConfig)
    if args.native_grid:
        if "target_spacing" in values:
            raise VesselzipError("give either --native-grid or --target-spacing, not both")
        values["target_spacing"] = None
    return TrainConfig(**values)


# ------------------------------------------------- options from a config dataclass


def add_config_options(parser: argparse.ArgumentParser, config: type[Any]) -> None:
    """One option per init field of the dataclass `config`: ``--kebab-case`` of the
    name (or ``metadata["flag"]``), type and count from the annotation, help (and
    optionally metavar, choices, nargs) from the field's metadata. A bool field is a
    flag that turns its default over. Options left out leave no attribute behind, so
    the dataclass's own defaults apply (see `config_values`)."""
    hints = typing.get_type_hints(config)
    for item in dataclasses.fields(config):
        if item.init:
            flag, options = _option(item, hints[item.name])
            parser.add_argument(flag, dest=item.name, default=argparse.SUPPRESS, **options)


def config_values(args: argparse.Namespace, config: type[Any]) -> dict[str, Any]:
    """The values of `config`'s fields given on the command line."""
    given = vars(args)
    return {f.name: given[f.name] for f in dataclasses.fields(config) if f.name in given}


def _option(item: dataclasses.Field[Any], hint: Any) -> tuple[str, dict[str, Any]]:
    meta = item.metadata
    flag = meta.get("flag", "--" + item.name.replace("_", "-"))
    has_default = item.default is not dataclasses.MISSING
    options: dict[str, Any] = {"help": meta.get("help", "")}
    if not has_default and item.default_factory is dataclasses.MISSING:
        options["required"] = True
    arguments = typing.get_args(hint)
    if type(None) in arguments:  # X | None: None is the default, not an input
        (hint,) = [a for a in arguments if a is not type(None)]
    if hint is bool:
        options["action"] = "store_false" if item.default else "store_true"
        return flag, options
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis:
            options["nargs"] = "+"
        else:
            if len(set(items)) != 1:
                raise TypeError(f"{item.name}: a tuple option needs one item type, got {hint}")
            options["nargs"] = len(items)
        hint = items[0]
    if hint not in (int, float, str, Path):
        raise TypeError(f"{item.name}: no command-line option for type {hint}")
    if hint is not str:
        options["type"] = hint
    for key in ("nargs", "metavar", "choices"):
        if key in meta:
            options[key] = meta[key]
    if has_default and item.default is not None and "(default" not in options["help"]:
        shown = item.default
        if isinstance(shown, tuple):
            shown = " ".join(map(str, shown))
        options["help"] += f" (default: {shown})"
    return flag, options


def export_command(args) -> int:
    from vesselzip.model.checkpoints import export_weights

    out = export_weights(args.checkpoint, args.output, half=not args.float32)
    size = out.stat().st_size / 1e6
    print(f"{out}: {size:.1f} MB, config in {out.with_suffix('.json')}")
    return 0
