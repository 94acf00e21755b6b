"""The fast tier: the gateway app in this process (FastAPI's TestClient), on an
embedded Redis and a store in a temp folder, with no worker. For what the gateway
alone decides: access, validation, error shapes, the OpenAPI contract. What needs
real processes (workers, kills, Redis loss, uvicorn) is in tests/service/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vesselzip.model_info import ModelInfo
from vesselzip.redis_embedded import EmbeddedRedis
from vesselzip.settings import Settings
from vesselzip_api.main import create_app
from vesselzip_queue import queues
from vesselzip_queue.catalog import announce_models

KEYS = "key-alice, key-bob"
ALICE = {"X-API-Key": "key-alice"}
BOB = {"X-API-Key": "key-bob"}


OFFERED = [
    ModelInfo(name="frangi"),
    ModelInfo(name="mvn-arteries", min_side=4),
    ModelInfo(name="mvn-vessels", min_side=4),
]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        # What a worker offers when it starts (its model list, here for the whole
        # session); with no worker, no job runs.
        with queues.connect(server.url) as connection:
            announce_models(connection, "api-tests", OFFERED, ttl_s=24 * 3600)
        yield server.url


@pytest.fixture(scope="session")
def settings(redis_url, tmp_path_factory) -> Settings:
    return Settings(
        redis_url=redis_url,
        store_dir=tmp_path_factory.mktemp("store"),
        default_model="frangi",
        max_voxels=64**3,
        max_upload_bytes=4 * 1024**2,
        api_keys="",
    )


def make_app(settings: Settings, **changes) -> FastAPI:
    return create_app(settings.model_copy(update=changes))


@pytest.fixture(scope="session")
def client(settings) -> Iterator[TestClient]:
    """The open gateway (no API keys)."""
    with TestClient(make_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def keyed(settings) -> Iterator[TestClient]:
    """A gateway with API keys on the same Redis and store."""
    with TestClient(make_app(settings, api_keys=KEYS)) as client:
        yield client
