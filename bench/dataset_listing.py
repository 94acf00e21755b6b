"""How long `GET /v1/datasets` and `GET /v1/sweeps` take for a caller with 2 datasets
and 2 sweeps while another API key has many of each (the gateway in this process on an
embedded Redis, a store in a temp folder).

    python bench/dataset_listing.py --others 0 1500 --repeat 20

Reports the median and the 90th percentile per listing. The other key's datasets and
sweeps are written with the library (as the gateway writes them), so the bench also
runs against an earlier commit: from a worktree of it, with
PYTHONPATH=shared:services/api:services/worker (absolute paths) pointing into it."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from vesselzip.datasets import create_dataset
from vesselzip.redis_embedded import EmbeddedRedis
from vesselzip.settings import Settings
from vesselzip.store import LocalStore
from vesselzip.sweeps import SweepCell, SweepSpec, save_sweep
from vesselzip_api.deps import owner_of
from vesselzip_api.main import create_app


def fill(store: LocalStore, owner: str, n: int, first: int) -> None:
    """`n` datasets of `owner`, each with one sweep over it."""
    for number in range(first, first + n):
        dataset, _ = create_dataset(store, name=f"d{number}", owner=owner)
        save_sweep(
            store,
            SweepSpec(
                id=f"{number:032x}",
                owner=owner,
                dataset_id=dataset.id,
                model="frangi",
                queue="cpu",
                grid=[{"id": "none"}],
                idempotency_key=str(number),
                cells=[SweepCell(volume_id="v", setting=0, job_id=f"{number:031x}j")],
            ),
        )


def timed(client: TestClient, path: str, headers: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--others", type=int, nargs="+", default=[0, 1500])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    alice = {"X-API-Key": "key-alice"}
    print("| other key's datasets (and sweeps) | listing | median ms | p90 ms |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        store_dir = Path(tmp) / "store"
        store = LocalStore(store_dir)
        fill(store, owner_of("key-alice"), 2, first=0)
        have = 0
        for others in sorted(args.others):
            fill(store, owner_of("key-bob"), others - have, first=1000 + have)
            have = others
            settings = Settings(
                redis_url=redis.url, store_dir=store_dir, api_keys="key-alice,key-bob"
            )
            with TestClient(create_app(settings)) as client:
                for path in ("/v1/datasets", "/v1/sweeps"):
                    timed(client, path, alice, 2)  # warm up
                    times = sorted(timed(client, path, alice, args.repeat))
                    p90 = times[int(0.9 * (len(times) - 1))]
                    print(
                        f"| {others} | `GET {path}` | {statistics.median(times):.1f} | {p90:.1f} |"
                    )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
