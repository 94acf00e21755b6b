"""The column tables of docs/sweeps.md, from vesselzip.sweeps.rows:

python -m vesselzip.sweeps --columns                  # print them
python -m vesselzip.sweeps --update-docs [docs/sweeps.md]   # rewrite them there"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vesselzip.sweeps.report import column_tables, update_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vesselzip.sweeps", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--columns", action="store_true", help="print the column tables")
    action.add_argument(
        "--update-docs",
        nargs="?",
        const=Path("docs/sweeps.md"),
        type=Path,
        metavar="PATH",
        help="rewrite the tables in PATH (default docs/sweeps.md)",
    )
    args = parser.parse_args(argv)
    if args.columns:
        print("\n\n".join(f"{name}:\n{table}" for name, table in column_tables().items()))
    else:
        print(update_docs(args.update_docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
