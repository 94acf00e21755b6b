"""The per-owner index of datasets and sweeps (vesselzip.index): a listing reads the
caller's index entries and what they point at, never another tenant's objects; the
index follows creation and deletion (also a creation that fails halfway); a store
written before the index existed is indexed when the gateway starts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vesselzip.datasets import create_dataset, dataset_id_for, delete_dataset
from vesselzip.errors import StoreUnavailableError
from vesselzip.settings import Settings
from vesselzip.store import LocalStore
from vesselzip.sweeps import SweepCell, SweepSpec, save_sweep
from vesselzip_api.dataset_service import DatasetService
from vesselzip_api.job_service import JobService
from vesselzip_api.sweep_service import SweepService
from vesselzip_queue import queues

from .conftest import make_app

ALICE = "a" * 32  # owner ids are hashes of API keys
BOB = "b" * 32


class CountingStore(LocalStore):
    """A local store that records every key it reads and every prefix it lists."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.touched: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.touched.append(key)
        return super().get_bytes(key)

    def exists(self, key: str) -> bool:
        self.touched.append(key)
        return super().exists(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        self.touched.append(prefix)
        return super().keys(prefix)


def a_sweep(store: LocalStore, owner: str | None, dataset_id: str, number: int) -> SweepSpec:
    spec = SweepSpec(
        id=f"{number:032x}",
        owner=owner,
        dataset_id=dataset_id,
        model="frangi",
        queue="cpu",
        grid=[{"id": "none"}],
        idempotency_key=str(number),
        cells=[SweepCell(volume_id="v", setting=0, job_id=f"{number:031x}j")],
    )
    save_sweep(store, spec)
    return spec


def services(settings: Settings, store: LocalStore) -> tuple[DatasetService, SweepService]:
    connection = queues.connect(settings.redis_url)
    sweeps = SweepService(settings, connection, store, JobService(settings, connection, store))
    return DatasetService(settings, connection, store, sweeps), sweeps


def test_listing_reads_only_the_callers_index(settings, tmp_path):
    store = CountingStore(tmp_path / "store")
    for number in range(300):
        bobs, _ = create_dataset(store, name=None, owner=BOB)
        a_sweep(store, BOB, bobs.id, number)
    mine = [create_dataset(store, name=n, owner=ALICE)[0].id for n in ("first", "second")]
    my_sweep = a_sweep(store, ALICE, mine[0], 1000)
    datasets, sweeps = services(settings.model_copy(update={"api_keys": "k1"}), store)

    def touched_by(call) -> list[str]:
        store.touched.clear()
        call()
        return list(store.touched)

    def alices(key: str) -> bool:
        hers = [ALICE, *mine, my_sweep.id, my_sweep.cells[0].job_id]
        return any(part in key for part in hers)

    listed = datasets.list(ALICE, "http://x")
    assert [d.id for d in listed.datasets] == mine
    touched = touched_by(lambda: datasets.list(ALICE, "http://x"))
    # Her index, then each dataset's entry and its volume folder.
    assert len(touched) == 1 + 2 * 2 and all(map(alices, touched)), touched

    assert [s.id for s in sweeps.list(ALICE, "http://x").sweeps] == [my_sweep.id]
    touched = touched_by(lambda: sweeps.list(ALICE, "http://x"))
    assert len(touched) == 2 and all(map(alices, touched)), touched
    # Deleting a dataset looks only at the sweeps over it (and their jobs).
    touched = touched_by(lambda: sweeps.cancel_dataset_jobs(mine[0], ALICE))
    assert touched[:2] == [f"index/datasets/{mine[0]}/sweeps", f"sweeps/{my_sweep.id}.json"]
    assert all(map(alices, touched)), touched

    # With the API open (no keys) everyone sees everything, as the access rule says.
    open_datasets, open_sweeps = services(settings.model_copy(update={"api_keys": ""}), store)
    assert len(open_datasets.list(None, "http://x").datasets) == 302
    assert len(open_sweeps.list(None, "http://x").sweeps) == 301


def test_the_index_follows_creation_and_deletion(tmp_path):
    store = LocalStore(tmp_path / "store")
    dataset, _ = create_dataset(store, name=None, owner=ALICE)
    a_sweep(store, ALICE, dataset.id, 1)
    marker = f"index/owners/{ALICE}/datasets/{dataset.id}"
    assert store.exists(marker)
    assert list(store.keys(f"index/datasets/{dataset.id}")) == [
        f"index/datasets/{dataset.id}/sweeps/{1:032x}"
    ]
    delete_dataset(store, dataset.id)
    assert not store.exists(marker) and not any(store.keys(f"index/datasets/{dataset.id}"))
    assert store.exists(f"index/owners/{ALICE}/sweeps/{1:032x}")  # the sweep stays

    # A creation the store refuses halfway (its dataset folder cannot be made) leaves
    # no marker behind.
    blocked = dataset_id_for(ALICE, "k")
    (tmp_path / "store" / "datasets" / blocked).write_bytes(b"in the way")
    with pytest.raises(StoreUnavailableError):
        create_dataset(store, name=None, owner=ALICE, idempotency_key="k")
    assert not store.exists(f"index/owners/{ALICE}/datasets/{blocked}")


def test_a_store_from_before_the_index_is_indexed_at_start_up(settings, tmp_path):
    store_dir = tmp_path / "store"
    store = LocalStore(store_dir)
    dataset, _ = create_dataset(store, name="older", owner=None)
    sweep = a_sweep(store, None, dataset.id, 7)
    shutil.rmtree(store_dir / "index")  # as the store was before the index existed
    with TestClient(make_app(settings, store_dir=store_dir)) as client:
        assert [d["id"] for d in client.get("/v1/datasets").json()["datasets"]] == [dataset.id]
        assert [s["id"] for s in client.get("/v1/sweeps").json()["sweeps"]] == [sweep.id]
        deleted = client.delete(f"/v1/datasets/{dataset.id}").json()
        assert deleted["volumes_deleted"] == 0
    assert not any(store.keys("datasets")) and not any(store.keys("index/datasets"))
