"""The HTTP client for the API: jobs, datasets and sweeps. `vesselzip demo`,
`vesselzip sweep`, the benchmarks and anyone scripting against a running service use
it. Every call goes through `request`, the one place errors are handled: an error
answer raises ServiceError with the service's `detail`, an unreachable service a
VesselzipError."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from vesselzip.errors import VesselzipError
from vesselzip.jobs import JobState


class ServiceError(VesselzipError):
    """The service answered with an error (the message is its `detail`)."""

    def __init__(self, status: int, detail: str, *, method: str = "", path: str = ""):
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class VesselzipClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> VesselzipClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """The response to one call. A status >= 400 raises ServiceError with the
        service's `detail`, unless it is in `allow` (then the caller looks at it)."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise VesselzipError(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400 and response.status_code not in allow:
            raise ServiceError(response.status_code, _detail(response), method=method, path=path)
        return response

    def ready(self) -> dict[str, Any]:
        """GET /v1/ready; its body also when the service is not ready (503)."""
        return self.request("GET", "/v1/ready", allow=(503,)).json()

    # -- jobs -----------------------------------------------------------------------
    def post_job(
        self,
        image: Path,
        truth: Path | None = None,
        *,
        codec: str = "none",
        model: str | None = None,
        queue: str | None = None,
        agreement: bool = False,
    ) -> dict[str, Any]:
        form = {"codec": codec}
        if agreement:
            form["agreement"] = "true"
        if model:
            form["model"] = model
        if queue:
            form["queue"] = queue
        with _volume_files(image, truth) as files:
            return self.request("POST", "/v1/jobs", data=form, files=files).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{job_id}").json()

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
            if JobState(job["state"]).ended:
                return job
            if time.monotonic() > deadline:
                raise VesselzipError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(poll_s)

    def mask(self, job_id: str) -> bytes:
        return self.request("GET", f"/v1/jobs/{job_id}/mask").content

    def blob(self, job_id: str) -> bytes:
        return self.request("GET", f"/v1/jobs/{job_id}/blob").content

    def delete(self, job_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/jobs/{job_id}").json()

    # -- datasets -------------------------------------------------------------------
    def create_dataset(
        self, name: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """An empty dataset (add volumes with add_volume); with an idempotency key,
        the dataset that key made, if any."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        form = {"name": name} if name is not None else {}
        return self.request("POST", "/v1/datasets", data=form, headers=headers).json()

    def add_volume(
        self, dataset_id: str, image: Path, truth: Path | None = None, *, name: str | None = None
    ) -> dict[str, Any]:
        form = {"name": name} if name is not None else {}
        with _volume_files(image, truth) as files:
            path = f"/v1/datasets/{dataset_id}/volumes"
            return self.request("POST", path, data=form, files=files).json()

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/datasets/{dataset_id}").json()

    # -- sweeps ---------------------------------------------------------------------
    def submit_sweep(
        self,
        dataset_id: str,
        *,
        grid: list[str] | None = None,
        model: str | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"dataset": dataset_id}
        options = {"grid": grid, "model": model, "queue": queue}
        body |= {key: value for key, value in options.items() if value is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/v1/sweeps", json=body, headers=headers).json()

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/sweeps/{sweep_id}").json()

    def sweep_tables(self, sweep_id: str, format: Literal["json", "csv", "md"] = "json") -> bytes:
        """The per-setting table as the service writes it."""
        path = f"/v1/sweeps/{sweep_id}/tables"
        return self.request("GET", path, params={"format": format}).content

    def sweep_cases(self, sweep_id: str, format: Literal["json", "csv"] = "json") -> bytes:
        """The per-volume results as the service writes them."""
        path = f"/v1/sweeps/{sweep_id}/cases"
        return self.request("GET", path, params={"format": format}).content

    def sweep_figure(self, sweep_id: str, name: str) -> bytes | None:
        """A figure as PNG; None when the grid has no such settings (404) or none of
        them has finished yet (409)."""
        path = f"/v1/sweeps/{sweep_id}/figures/{name}.png"
        response = self.request("GET", path, allow=(404, 409))
        return None if response.status_code >= 400 else response.content

    def picture(self, job_id: str, name: str) -> bytes | None:
        """A finished job's picture (PNG, vesselzip.pictures); None when the job has
        none of that name (a difference picture of an upload, whose original is gone)."""
        response = self.request("GET", f"/ui/jobs/{job_id}/pictures/{name}.png", allow=(404,))
        return None if response.status_code == 404 else response.content

    # -- tunings -------------------------------------------------------------------
    def submit_tuning(
        self,
        dataset_id: str,
        *,
        codec: str,
        max_dice_loss: float,
        coverage: float | None = None,
        score: str | None = None,
        value_range: tuple[float, float] | None = None,
        model: str | None = None,
        queue: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dataset": dataset_id,
            "codec": codec,
            "max_dice_loss": max_dice_loss,
        }
        options = {
            "coverage": coverage,
            "score": score,
            "range": list(value_range) if value_range else None,
            "model": model,
            "queue": queue,
        }
        body |= {key: value for key, value in options.items() if value is not None}
        return self.request("POST", "/v1/tunings", json=body).json()

    def tuning(self, tuning_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/tunings/{tuning_id}").json()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text) if isinstance(body, dict) else response.text)


@contextlib.contextmanager
def _volume_files(image: Path, truth: Path | None) -> Iterator[dict[str, Any]]:
    """The multipart files of an upload: `image` and, when given, `truth`."""
    with contextlib.ExitStack() as stack:
        files = {}
        for field, path in (("image", image), ("truth", truth)):
            if path is not None:
                stream = stack.enter_context(Path(path).open("rb"))
                files[field] = (Path(path).name, stream, "application/octet-stream")
        yield files
