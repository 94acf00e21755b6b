"""vesselzip_api.client.VesselzipClient, the one HTTP client (`vesselzip demo`,
`vesselzip sweep`, the benchmarks), against a fake service: every error answer becomes
a VesselzipError carrying the service's `detail`."""

from __future__ import annotations

import json

import httpx
import pytest

from vesselzip.errors import VesselzipError
from vesselzip_api.client import ServiceError, VesselzipClient


def client_for(handler) -> VesselzipClient:
    return VesselzipClient(
        "http://vesselzip.test/", api_key="k1", transport=httpx.MockTransport(handler)
    )


def test_an_error_answer_raises_with_the_services_detail():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tables"):
            return httpx.Response(502, text="Bad Gateway")
        return httpx.Response(404, json={"detail": f"no sweep {request.url.path[11:]}"})

    with client_for(handler) as client:
        with pytest.raises(ServiceError) as raised:
            client.sweep("abc")
        assert isinstance(raised.value, VesselzipError)
        assert (raised.value.status, raised.value.detail) == (404, "no sweep abc")
        assert str(raised.value) == "GET /v1/sweeps/abc: HTTP 404: no sweep abc"
        with pytest.raises(ServiceError, match="HTTP 502: Bad Gateway"):
            client.sweep_tables("abc", "csv")


def test_an_unreachable_service_is_a_vesselzip_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with client_for(handler) as client, pytest.raises(VesselzipError, match="cannot reach"):
        client.job("0" * 32)


def test_answers_the_caller_expects_are_returned():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/ready":
            return httpx.Response(503, json={"ready": False})
        name = request.url.path.rsplit("/", 1)[1]
        status = {"fixed_rate.png": 200, "tolerance.png": 404, "psnr_vs_bpv.png": 409}
        if name not in status:
            return httpx.Response(500, json={"detail": "boom"})
        return httpx.Response(status[name], content=b"png" if status[name] == 200 else b"{}")

    with client_for(handler) as client:
        assert client.ready() == {"ready": False}
        assert client.sweep_figure("s", "fixed_rate") == b"png"
        assert client.sweep_figure("s", "tolerance") is None  # no such settings
        assert client.sweep_figure("s", "psnr_vs_bpv") is None  # none finished yet
        with pytest.raises(ServiceError, match="HTTP 500: boom"):
            client.sweep_figure("s", "other")


def test_requests_carry_the_key_the_options_given_and_the_files(tmp_path):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "x"})

    image, truth = tmp_path / "a.nii.gz", tmp_path / "a_truth.nii.gz"
    image.write_bytes(b"image bytes")
    truth.write_bytes(b"truth bytes")
    with client_for(handler) as client:
        client.submit_sweep("d" * 32, model="frangi", idempotency_key="study-1")
        client.add_volume("d" * 32, image, truth, name="first")
        client.post_job(image, codec="zfp:rate=4")

    sweep, volume, job = seen
    assert sweep.headers["X-API-Key"] == "k1" and sweep.headers["Idempotency-Key"] == "study-1"
    assert json.loads(sweep.content) == {"dataset": "d" * 32, "model": "frangi"}
    assert volume.url.path == f"/v1/datasets/{'d' * 32}/volumes"
    body = volume.read()
    assert b"image bytes" in body and b"truth bytes" in body and b'name="name"' in body
    assert b'filename="a_truth.nii.gz"' in body
    assert b"image bytes" in job.read() and b"truth bytes" not in job.content
