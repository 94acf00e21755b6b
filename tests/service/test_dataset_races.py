"""Datasets under racing requests and against their caps, through HTTP on a running
gateway: two adds under one volume name, a deletion during an add (and the dataset's
idempotency key used again afterwards), the volume and sweep-job caps, and adds
racing for the last place under the volume cap."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from .hostile import nifti
from .test_datasets_sweeps import create_dataset


def race(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released at the same moment; their answers in order."""
    start = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def volume_64(seed: int) -> bytes:
    """A 64^3 int16 volume (.nii.gz) of noise: large enough that its upload and checks
    take a while, so that racing requests overlap."""
    data = np.random.default_rng(seed).integers(0, 2000, (64, 64, 64), dtype=np.int16)
    return nifti(data)


def add(dataset_url: str, image: bytes, name: str) -> Callable[[], httpx.Response]:
    def post() -> httpx.Response:
        files = {"image": (f"{name}.nii.gz", image)}
        return httpx.post(f"{dataset_url}/volumes", files=files, data={"name": name}, timeout=60)

    return post


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_two_adds_under_one_volume_name_give_one_201_and_one_409(service):
    volumes = [volume_64(1), volume_64(2)]
    for _ in range(5):
        dataset = httpx.post(f"{service.base_url}/v1/datasets", timeout=30).json()
        answers = race(*(add(dataset["url"], image, "same") for image in volumes))
        statuses = [a.status_code for a in answers]
        assert sorted(statuses) == [201, 409], [a.text for a in answers]
        winner = volumes[statuses.index(201)]
        shown = httpx.get(dataset["url"], timeout=10).json()["volumes"]
        assert [v["id"] for v in shown] == ["same"]
        assert shown[0]["image_sha256"] == sha256(winner)
        # The loser wrote none of the winner's files and left none of its own.
        images = list((service.store_dir / "datasets" / dataset["id"] / "images").iterdir())
        assert len(images) == 1 and sha256(images[0].read_bytes()) == sha256(winner)
        assert httpx.delete(dataset["url"], timeout=30).status_code == 200


def test_a_dataset_deleted_during_adds_leaves_nothing_and_its_key_brings_nothing_back(
    service,
):
    image = volume_64(3)
    key = {"Idempotency-Key": f"deleted-during-adds-{time.time_ns()}"}
    # Four adds at once (two are validated at a time, the others wait, authorized, for
    # their turn) and a deletion a little later, so it lands at every stage of an add.
    for delay_s in (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1):
        created = httpx.post(f"{service.base_url}/v1/datasets", headers=key, timeout=30)
        # Each round's deletion freed the key: a new, empty dataset (under the same id).
        assert created.status_code == 201 and created.json()["n_volumes"] == 0, created.text
        dataset = created.json()

        def delete(delay_s: float = delay_s, url: str = dataset["url"]) -> httpx.Response:
            time.sleep(delay_s)
            return httpx.delete(url, timeout=30)

        *adds, deleted = race(*(add(dataset["url"], image, f"v{i}") for i in range(4)), delete)
        assert deleted.status_code == 200, deleted.text
        statuses = [a.status_code for a in adds]
        # An add that came first is deleted with the dataset; a later one is a 404.
        assert set(statuses) <= {201, 404}, [a.text for a in adds]
        assert deleted.json()["volumes_deleted"] == statuses.count(201), statuses
        assert not (service.store_dir / "datasets" / dataset["id"]).exists()
        assert not any((service.store_dir / "index").rglob(f"*{dataset['id']}*"))


def test_a_key_used_again_after_a_deletion_cut_short_brings_nothing_back(service):
    key = {"Idempotency-Key": f"cut-short-{time.time_ns()}"}
    dataset = httpx.post(f"{service.base_url}/v1/datasets", headers=key, timeout=30).json()
    assert add(dataset["url"], volume_64(4), "v")().status_code == 201
    folder = service.store_dir / "datasets" / dataset["id"]
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert httpx.delete(dataset["url"], timeout=30).status_code == 200
    # As if the gateway died mid-deletion: dataset.json gone, the volume's files not.
    for path, data in files.items():
        if path.name != "dataset.json":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    again = httpx.post(f"{service.base_url}/v1/datasets", headers=key, timeout=30)
    assert again.status_code == 201 and again.json()["id"] == dataset["id"]
    assert again.json()["n_volumes"] == 0
    assert [p.name for p in folder.rglob("*") if p.is_file()] == ["dataset.json"]
    assert httpx.delete(dataset["url"], timeout=30).status_code == 200


@pytest.fixture(scope="module")
def capped_gateway(service) -> str:
    return service.start_gateway(
        {"VESSELZIP_MAX_DATASET_VOLUMES": "2", "VESSELZIP_MAX_SWEEP_JOBS": "4"}
    )


def test_volume_and_sweep_job_caps_are_422s_that_name_the_limit(capped_gateway, phantoms):
    base = capped_gateway

    def listed() -> set[str]:
        return {d["id"] for d in httpx.get(f"{base}/v1/datasets", timeout=10).json()["datasets"]}

    before = listed()
    refused = create_dataset(base, phantoms)  # three volumes, the cap is two
    assert refused.status_code == 422, refused.text
    assert "VESSELZIP_MAX_DATASET_VOLUMES" in refused.json()["detail"]
    assert listed() == before

    dataset = create_dataset(base, phantoms[:2]).json()
    image = phantoms[2][0]
    third = httpx.post(
        f"{dataset['url']}/volumes", files={"image": (image.name, image.read_bytes())}
    )
    assert third.status_code == 422 and "VESSELZIP_MAX_DATASET_VOLUMES" in third.json()["detail"]
    assert httpx.get(dataset["url"], timeout=10).json()["n_volumes"] == 2

    sweeps = f"{base}/v1/sweeps"
    body = {"dataset": dataset["id"], "model": "frangi"}
    over = httpx.post(sweeps, json={**body, "grid": ["zfp:rate=4", "zfp:rate=8"]}, timeout=30)
    assert over.status_code == 422, over.text  # 2 volumes x 3 settings: 6 jobs
    assert "VESSELZIP_MAX_SWEEP_JOBS" in over.json()["detail"] and "6 jobs" in over.json()["detail"]
    at_cap = httpx.post(sweeps, json={**body, "grid": ["zfp:rate=4"]}, timeout=30)
    assert at_cap.status_code == 202 and at_cap.json()["total_jobs"] == 4, at_cap.text
    listed_sweeps = httpx.get(sweeps, timeout=10).json()["sweeps"]
    assert [s["total_jobs"] for s in listed_sweeps if s["dataset"] == dataset["id"]] == [4]
    assert httpx.delete(dataset["url"], timeout=30).status_code == 200


def test_adds_racing_for_the_last_place_never_pass_the_volume_cap(capped_gateway, phantoms):
    dataset = create_dataset(capped_gateway, phantoms[:1]).json()
    answers = race(*(add(dataset["url"], volume_64(10 + i), f"v{i}") for i in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 422, 422, 422], [a.text for a in answers]
    assert httpx.get(dataset["url"], timeout=10).json()["n_volumes"] == 2
    assert httpx.delete(dataset["url"], timeout=30).status_code == 200
