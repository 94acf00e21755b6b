"""Fixtures for the service tests (see helpers.py for the processes they start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import SMALL_SHAPE, RedisServer, Stack


def base_env(store_dir: Path, redis_url: str) -> dict[str, str]:
    return {
        "VESSELZIP_REDIS_URL": redis_url,
        "VESSELZIP_STORE_DIR": str(store_dir),
        "VESSELZIP_DEFAULT_MODEL": "frangi",
        "VESSELZIP_DEFAULT_QUEUE": "cpu",
        "VESSELZIP_WORKER_QUEUES": "cpu",
        "VESSELZIP_WORKER_HEARTBEAT_S": "0.5",
        "VESSELZIP_REAPER_INTERVAL_S": "0.5",
        "VESSELZIP_MAX_VOXELS": str(64**3),
        "VESSELZIP_MAX_UPLOAD_BYTES": str(4 * 1024**2),
        "VESSELZIP_JOB_RETRIES": "1",
        "VESSELZIP_JOB_RETRY_BACKOFF_S": "0.2",
        "VESSELZIP_API_KEYS": "",
    }


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Stack:
    """One gateway and one worker (queue "cpu" only: jobs sent to "gpu" wait) shared
    by the tests that do not break anything."""
    workdir = tmp_path_factory.mktemp("service")
    server = RedisServer(workdir / "redis")
    server.start()
    stack = Stack(server, workdir, base_env(workdir / "store", server.url))
    try:
        stack.start_gateway()
        stack.start_worker()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
        server.stop()


@pytest.fixture
def private_stack(tmp_path) -> Stack:
    """A Redis, store and (not yet started) processes for one test that kills or
    restarts things."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    stack = Stack(server, tmp_path, base_env(tmp_path / "store", server.url))
    try:
        yield stack
    finally:
        stack.stop()
        server.stop()


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> list[tuple[Path, Path]]:
    """(image, truth) .nii.gz pairs of small phantoms."""
    from vesselzip.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("phantoms")
    dataset = json.loads(write_phantom_dataset(root, 3, seed=7, shape=SMALL_SHAPE).read_text())
    return [(root / e["image"], root / e["label"]) for e in dataset["training"]]


@pytest.fixture(scope="session")
def slow_phantom(tmp_path_factory) -> tuple[Path, Path]:
    """A phantom large enough that its job runs for a few seconds (to kill a worker
    in the middle of it)."""
    from vesselzip.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("slow_phantom")
    dataset = json.loads(write_phantom_dataset(root, 1, seed=3, shape=(64, 64, 64)).read_text())
    entry = dataset["training"][0]
    return root / entry["image"], root / entry["label"]


@pytest.fixture(scope="session")
def large_phantom(tmp_path_factory) -> tuple[Path, Path]:
    """A full-size phantom (128 x 128 x 96): its job takes several seconds on any
    machine, well past a 1 s job timeout. Above the test stacks' default voxel limit."""
    from vesselzip.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("large_phantom")
    dataset = json.loads(write_phantom_dataset(root, 1, seed=4).read_text())
    entry = dataset["training"][0]
    return root / entry["image"], root / entry["label"]
