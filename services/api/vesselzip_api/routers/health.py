"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vesselzip import __version__
from vesselzip_api.schemas import Health, Readiness

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=Health, summary="The gateway process is up")
def health() -> Health:
    return Health(version=__version__)


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Redis reachable, store writable, at least one worker alive",
    responses={503: {"model": Readiness, "description": "Not ready; the body says why."}},
)
def ready(request: Request) -> JSONResponse:
    readiness = request.app.state.probe.readiness()
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)
