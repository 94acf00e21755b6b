"""API keys: 401 without a valid key, 403 for another key's job; probes stay open."""

from __future__ import annotations

import httpx
import pytest

from .helpers import post_job, wait_for_job


@pytest.fixture(scope="module")
def keyed_gateway(service) -> str:
    """A second gateway on the session's Redis and store, with two API keys."""
    return service.start_gateway({"VESSELZIP_API_KEYS": "key-alice, key-bob"})


def test_api_keys(keyed_gateway, phantoms):
    image, truth = phantoms[0]
    alice = {"X-API-Key": "key-alice"}
    bob = {"X-API-Key": "key-bob"}

    for headers in (None, {"X-API-Key": "key-mallory"}, {"X-API-Key": ""}):
        response = post_job(keyed_gateway, image, truth, headers=headers)
        assert response.status_code == 401
        assert "API key" in response.json()["detail"]

    created = post_job(keyed_gateway, image, truth, headers=alice)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    url = f"{keyed_gateway}/v1/jobs/{job_id}"
    job = wait_for_job(keyed_gateway, job_id, headers=alice)
    assert job["state"] == "finished"

    for suffix in ("", "/mask", "/blob"):
        assert httpx.get(url + suffix, timeout=10).status_code == 401
        assert httpx.get(url + suffix, headers=bob, timeout=10).status_code == 403
        assert httpx.get(url + suffix, headers=alice, timeout=10).status_code == 200
    assert httpx.delete(url, headers=bob, timeout=10).status_code == 403

    for path in ("/v1/health", "/v1/ready", "/metrics", "/openapi.json"):
        assert httpx.get(keyed_gateway + path, timeout=10).status_code == 200, path

    assert httpx.delete(url, headers=alice, timeout=10).status_code == 200
