"""A small HTTP client for the API, used by `vesselzip demo`, the load benchmark and
anyone scripting against a running service."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from vesselzip.errors import VesselzipError

TERMINAL = ("finished", "failed", "cancelled")


class ServiceError(VesselzipError):
    """The service answered with an error (the message is its `detail`)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class VesselzipClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> VesselzipClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(response.status_code, str(detail))
        return response

    def ready(self) -> dict[str, Any]:
        return self.http.get("/v1/ready").json()

    def post_job(
        self,
        image: Path,
        truth: Path | None = None,
        *,
        codec: str = "none",
        model: str | None = None,
        queue: str | None = None,
    ) -> dict[str, Any]:
        form = {"codec": codec}
        if model:
            form["model"] = model
        if queue:
            form["queue"] = queue
        with Path(image).open("rb") as image_file:
            files = {"image": (Path(image).name, image_file, "application/octet-stream")}
            if truth is None:
                return self._check(self.http.post("/v1/jobs", data=form, files=files)).json()
            with Path(truth).open("rb") as truth_file:
                files["truth"] = (Path(truth).name, truth_file, "application/octet-stream")
                return self._check(self.http.post("/v1/jobs", data=form, files=files)).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/jobs/{job_id}")).json()

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 3600,
        poll_s: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["state"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise VesselzipError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def mask(self, job_id: str) -> bytes:
        return self._check(self.http.get(f"/v1/jobs/{job_id}/mask")).content

    def blob(self, job_id: str) -> bytes:
        return self._check(self.http.get(f"/v1/jobs/{job_id}/blob")).content

    def delete(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.delete(f"/v1/jobs/{job_id}")).json()
