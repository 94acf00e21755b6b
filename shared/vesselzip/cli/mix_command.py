"""`vesselzip mix-datasets OUT.json SOURCE[:KEY] ...`: one training dataset from
several, each source's chosen truth as the label."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "mix-datasets",
        help="one training dataset.json from several, with the truth chosen per source",
        description=(
            "List the training volumes of every SOURCE dataset.json in OUT.json, paths made "
            "absolute, with the label set KEY of each source as the truth to learn "
            "(SOURCE.json:vessels takes a whole head's every-vessel truth; without :KEY, "
            "its label). `vesselzip train --data OUT.json` trains on all of them."
        ),
    )
    parser.add_argument("out", type=Path, metavar="OUT.json", help="the dataset.json to write")
    parser.add_argument("sources", nargs="+", metavar="SOURCE[:KEY]", help="dataset.json files")
    parser.add_argument("--name", default="", help="a name for the mixed dataset")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vesselzip.dataset_mix import parse_source, write_mixed_dataset

    sources = [parse_source(text) for text in args.sources]
    target = write_mixed_dataset(sources, args.out, args.name)
    count = json.loads(target.read_text())["numTraining"]
    print(f"wrote {count} volumes from {len(sources)} datasets to {target}")
    return 0
