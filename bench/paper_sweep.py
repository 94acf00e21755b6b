"""The paper's study (Tables 1-4, Figures 2-3) on phantoms, run by a service over HTTP.

    vesselzip serve --workers 2 &          # or a compose deployment
    python bench/paper_sweep.py --url http://127.0.0.1:8000 --n 8 --seed 5000 \\
        --model mvn-small --out docs/results

Writes the phantom dataset unless DATASET_DIR already has a dataset.json, then runs
`vesselzip sweep` (default grid: ZFP fixed rate 16, 8, 4, 2 bits/voxel and tolerance
500, 1000, 1500, plus the uncompressed baseline) and writes run.json next to the
tables: the command, the wall time and what the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from vesselzip import __version__
from vesselzip.cli import main as vesselzip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("var/paper-phantoms"))
    parser.add_argument("--n", type=int, default=8, help="phantoms to write (default 8)")
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key")
    parser.add_argument("--model", help="segmenter (default: the service's default)")
    parser.add_argument("--grid", help="codec specs (default: the paper's grid)")
    parser.add_argument("--out", type=Path, default=Path("paper-sweep"))
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    started = time.time()
    if not (args.dataset / "dataset.json").is_file():
        phantom = ["phantom", str(args.dataset), "--n", str(args.n), "--seed", str(args.seed)]
        status = vesselzip([*phantom, "--shape", *map(str, args.shape)])
        if status:
            return status
    sweep = ["sweep", str(args.dataset), "--url", args.url, "--out", str(args.out)]
    for flag, value in (
        ("--api-key", args.api_key),
        ("--model", args.model),
        ("--grid", args.grid),
    ):
        if value:
            sweep += [flag, value]
    sweep_started = time.time()
    status = vesselzip(sweep)
    finished = time.time()

    shown = ["vesselzip", *sweep]
    if args.api_key:  # never written to the record
        shown[shown.index("--api-key") + 1] = "***"
    record = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "sweep_command": shlex.join(shown),
        "exit_status": status,
        "wall_time_s": round(finished - started, 1),
        "sweep_wall_time_s": round(finished - sweep_started, 1),
        "dataset": json.loads((args.dataset / "dataset.json").read_text()).get("generator"),
        "vesselzip_version": __version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()}",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wall time {record['wall_time_s']} s; run record in {args.out / 'run.json'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
