"""The gateway: a FastAPI app built from settings.

Run it with `vesselzip serve` (embedded Redis and a worker included) or, against an
external Redis, `uvicorn --factory vesselzip_api.main:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vesselzip import __version__, index
from vesselzip.datasets import index_existing_datasets
from vesselzip.errors import QUOTE_LIMIT, VesselzipError, shortened
from vesselzip.settings import Settings, get_settings
from vesselzip.store import open_store
from vesselzip.sweeps import index_existing_sweeps
from vesselzip_api.dataset_service import DatasetService
from vesselzip_api.job_service import JobService
from vesselzip_api.monitoring import Probe, metrics_registry
from vesselzip_api.routers import datasets, health, jobs, metrics, models, sweeps, tunings
from vesselzip_api.sweep_service import SweepService
from vesselzip_api.tuning_service import TuningService
from vesselzip_api.ui import pages
from vesselzip_queue import queues

log = logging.getLogger("vesselzip.api")

DESCRIPTION = """\
Post a 3D angiography volume (NIfTI) with a compression setting; the gateway stores it
ZFP-compressed and queues a segmentation job. Workers decompress it, segment the vessels
and, when a ground-truth mask came with it, score the mask (Dice, IoU, ...).
"""
#: The longest `detail` an error answer carries. Messages quote at most QUOTE_LIMIT
#: characters of an input; this also bounds any that repeat more (a file name, say).
MAX_DETAIL_CHARS = 1000
#: Validation errors one answer lists (a long list may give one per item).
MAX_VALIDATION_ERRORS = 20


class RequestBodyGuard:
    """Bounds what reading a request body may cost.

    Size: a body over `max_bytes` is refused with a JSON 413, at once when the
    Content-Length says so, otherwise as soon as the streamed body crosses the limit
    (nothing beyond the limit is ever spooled to disk). Time: a client that sends
    nothing for `idle_timeout_s` while its body is unfinished is answered 408 and its
    connection closed, so a stalled upload releases what it holds."""

    def __init__(self, app: ASGIApp, max_bytes: int, idle_timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s

    def _too_large(self) -> HTTPException:
        return HTTPException(
            413,
            f"the request body exceeds the upload limit of {self.max_bytes} bytes "
            "(VESSELZIP_MAX_UPLOAD_BYTES)",
        )

    def _stalled(self) -> HTTPException:
        return HTTPException(
            408,
            f"the request body stalled: nothing arrived for {self.idle_timeout_s:g} s "
            "(VESSELZIP_BODY_READ_TIMEOUT_S)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large()
            response = JSONResponse({"detail": error.detail}, status_code=413)
            return await response(scope, receive, send)
        seen = 0
        body_done = False

        async def guarded_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # later reads wait for the disconnect: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout_s)
            except asyncio.TimeoutError:
                raise self._stalled() from None  # FastAPI passes it through form parsing
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, guarded_receive, send)


class RequestTimer:
    """Stamps when a request's first byte arrived, so the upload time can be reported."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["received_at"] = time.time()
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RuntimeError(
            "VESSELZIP_REDIS_URL is not set: use `vesselzip serve` (embedded Redis) "
            "or point the gateway at a Redis server"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        connection = queues.connect(settings.redis_url)
        store = open_store(settings.store_location)
        problem = await run_in_threadpool(store.problem)
        if problem:  # served anyway: /v1/ready keeps saying why until it is fixed
            log.error("the store is not usable: %s", problem)
        app.state.settings = settings
        app.state.job_service = JobService(settings, connection, store)
        app.state.sweep_service = SweepService(settings, connection, store, app.state.job_service)
        app.state.dataset_service = DatasetService(
            settings, connection, store, app.state.sweep_service
        )
        app.state.tuning_service = TuningService(settings, connection, store, app.state.job_service)
        app.state.probe = Probe(settings, connection, store)
        app.state.metrics_registry = metrics_registry(settings, connection)
        # Import the codec stack now rather than during the first upload.
        await run_in_threadpool(_import_codecs)
        # A store from before the owner index: index it once (a scan of the store).
        if not problem:
            await run_in_threadpool(
                index.build_once, store, index_existing_datasets, index_existing_sweeps
            )
        background = [
            asyncio.create_task(
                _every(settings.reaper_interval_s, "reaper", queues.maintain, connection)
            ),
            asyncio.create_task(
                _every(
                    settings.tuning_interval_s, "tunings", app.state.tuning_service.advance_active
                )
            ),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            connection.close()

    app = FastAPI(
        title="vesselzip",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_middleware(
        RequestBodyGuard,
        max_bytes=settings.max_upload_bytes,
        idle_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(RequestTimer)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(sweeps.router)
    app.include_router(tunings.router)
    app.include_router(pages.router)
    app.mount("/ui/static", StaticFiles(directory=pages.STATIC_DIR), name="ui-static")
    app.add_exception_handler(pages.SignInRequired, pages.sign_in_redirect)  # type: ignore[arg-type]
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(metrics.router)

    @app.exception_handler(VesselzipError)
    async def vesselzip_error(request: Request, exc: VesselzipError) -> JSONResponse:
        detail = shortened(str(exc), MAX_DETAIL_CHARS)
        return JSONResponse({"detail": detail}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's list shape, but what the caller sent is only quoted in part: a
        # 100 kB field must not come back whole.
        errors = [_bounded_error(error) for error in exc.errors()[:MAX_VALIDATION_ERRORS]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # A defect, not the request's fault; still a JSON body, and no internals in it.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "internal error; the gateway's log has the details"}, status_code=500
        )

    @app.exception_handler(redis.exceptions.LockError)
    async def busy(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "another request with the same idempotency key, or on the same "
                "dataset, is still running; try again when it has finished"
            },
            status_code=409,
        )

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unreachable: %s", exc)
        return JSONResponse(
            {"detail": "the job queue (Redis) is unreachable; try again shortly"},
            status_code=503,
        )

    return app


def _bounded_error(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error (loc, msg, type, input, ctx) with every text in it cut to
    QUOTE_LIMIT characters and its `input` to as much JSON."""
    bounded = _bounded_texts(jsonable_encoder({k: v for k, v in error.items() if k != "input"}))
    if "input" in error:
        sent = jsonable_encoder(error["input"])
        text = sent if isinstance(sent, str) else json.dumps(sent)
        bounded["input"] = sent if len(text) <= QUOTE_LIMIT else shortened(text, QUOTE_LIMIT)
    return bounded


def _bounded_texts(value: Any) -> Any:
    if isinstance(value, str):
        return shortened(value, QUOTE_LIMIT)
    if isinstance(value, list):
        return [_bounded_texts(item) for item in value]
    if isinstance(value, dict):
        return {_bounded_texts(k): _bounded_texts(v) for k, v in value.items()}
    return value


def _import_codecs() -> None:
    import vesselzip.container  # noqa: F401
    import vesselzip.metrics.compression  # noqa: F401


async def _every(interval_s: float, name: str, work, *args) -> None:
    """Run `work` every `interval_s` off the event loop: RQ's upkeep (queues.maintain:
    jobs whose worker died are found even when no worker is left to do it, expired
    registry entries go) and the next steps of running tunings."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(work, *args)
        except Exception as exc:  # Redis down: try again next round
            log.warning("%s: %s", name, exc)
