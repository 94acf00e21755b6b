"""Shared test fixtures, and the two tiers:

* fast (`pytest -m "not service"`): unit tests and the gateway in this process
  (tests/api/: FastAPI's TestClient on an embedded Redis, no worker);
* service (`tests/service/`, marked `service`): real processes talking HTTP: uvicorn,
  workers, Redis servers, kills and restarts. Their fixtures live in
  tests/service/conftest.py.

`make test` runs both."""

import os
from pathlib import Path

import numpy as np
import pytest

# Keep torch and BLAS from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SERVICE_TIER = Path(__file__).parent / "service"


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVICE_TIER in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.service)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A local S3 server (moto) for the whole session; AWS_* point boto3 at it."""
    from tests.s3_server import s3_server

    with s3_server() as endpoint:
        yield endpoint
