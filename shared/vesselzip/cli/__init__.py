"""The `vesselzip` command. Each sub-command lives in its own module with a
`register(subparsers)` function; this module only wires them and turns
VesselzipError into a one-line message and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from vesselzip import __version__
from vesselzip.errors import VesselzipError

# Modules that contribute sub-commands, in the order they appear in --help.
#: The optional libraries, by the extra that installs them (pyproject.toml).
EXTRA_OF = {
    "torch": "worker",
    "monai": "worker",
    "matplotlib": "figures",
    "fastapi": "gateway",
    "uvicorn": "gateway",
    "prometheus_client": "gateway",
    "multipart": "gateway",
}

COMMAND_MODULES = [
    "vesselzip.cli.codec_commands",
    "vesselzip.cli.evaluate_command",
    "vesselzip.cli.phantom_command",
    "vesselzip.cli.crop_command",
    "vesselzip.cli.mix_command",
    "vesselzip.cli.model_commands",
    "vesselzip.cli.service_commands",
    "vesselzip.cli.sweep_command",
    "vesselzip.cli.tune_command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vesselzip",
        description="Compress 3D angiography with ZFP and measure vessel segmentation on it.",
    )
    parser.add_argument("--version", action="version", version=f"vesselzip {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet; every other import error is real
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except VesselzipError as exc:
        print(f"vesselzip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"vesselzip {args.command}: error: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"vesselzip {args.command}: error: needs {exc.name}, which this installation "
            f"leaves out: install vesselzip[{extra}]",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"vesselzip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
