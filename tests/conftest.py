"""Shared test fixtures. Service tests (real Redis, uvicorn, worker processes) keep
their fixtures in tests/service/conftest.py."""

import os

import numpy as np
import pytest

# Keep torch and BLAS from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
