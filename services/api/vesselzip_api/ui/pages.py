"""/ui/: pages for a person: an index of the caller's sweeps, tunings and recent jobs,
and a page per sweep, tuning and job. Every number comes from the same service call
the JSON API makes; pages only lay it out.

Access is the API's: with API keys set, a person signs in at /ui/login with a key,
which is kept in an HttpOnly cookie (never in a URL) and checked like the X-API-Key
header on every request."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from vesselzip.errors import NotFoundError, VesselzipError
from vesselzip.jobs import JobState
from vesselzip.pictures import PICTURES, VIEWS
from vesselzip.settings import Settings
from vesselzip.sweeps import CASE_COLUMNS, SETTING_COLUMNS, to_csv
from vesselzip.sweeps.report import paper_tables
from vesselzip_api.access import sees_everything
from vesselzip_api.deps import API_KEY_HEADER, get_settings, owner_for_key
from vesselzip_api.downloads import download_response
from vesselzip_api.errors import UnauthorizedError
from vesselzip_api.sweep_schemas import ID_PATTERN
from vesselzip_queue.state import find_job, recent_jobs

from .pictures import picture_facts, picture_png

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=FilePath(__file__).parent / "templates")
STATIC_DIR = FilePath(__file__).parent / "static"
#: The cookie that holds a signed-in person's API key (HttpOnly: scripts never see it).
KEY_COOKIE = "vesselzip_key"

ItemId = Annotated[str, Path(pattern=ID_PATTERN)]


class SignInRequired(Exception):
    """A page asked for without a valid key while keys are set: go to /ui/login."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def ui_owner(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str | None:
    """The caller's owner id from the sign-in cookie (or the API's header)."""
    key = request.cookies.get(KEY_COOKIE) or request.headers.get(API_KEY_HEADER)
    try:
        return owner_for_key(settings, key)
    except UnauthorizedError:
        raise SignInRequired(request.url.path) from None


Owner = Annotated["str | None", Depends(ui_owner)]


def sign_in_redirect(request: Request, exc: SignInRequired) -> Response:
    return RedirectResponse(f"/ui/login?next={quote(exc.next_path)}", status_code=303)


def _number(value: Any, digits: int = 6) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


templates.env.filters["num"] = _number


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    context.setdefault("signed_in", bool(request.cookies.get(KEY_COOKIE)))
    context.setdefault("keys_required", bool(settings.api_key_set))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _error_page(request: Request, exc: VesselzipError) -> HTMLResponse:
    return _page(request, "error.html", status_code=exc.http_status, message=str(exc))


# -- signing in -----------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/ui/") -> HTMLResponse:
    return _page(request, "login.html", next=_safe_next(next), failed=False)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=500)] = "/ui/",
) -> Response:
    settings: Settings = request.app.state.settings
    try:
        owner_for_key(settings, api_key)
    except UnauthorizedError:
        return _page(request, "login.html", status_code=401, next=_safe_next(next), failed=True)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        KEY_COOKIE,
        api_key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/ui")
    return response


def _safe_next(path: str) -> str:
    """Only a page of this site (no scheme or host: no redirect elsewhere)."""
    return path if path.startswith("/ui/") and not path.startswith("//") else "/ui/"


# -- the index ------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request, owner: Owner) -> HTMLResponse:
    state = request.app.state
    base = str(request.base_url)
    everyone = sees_everything(state.settings)
    return _page(
        request,
        "index.html",
        sweeps=state.sweep_service.list(owner, base).sweeps,
        tunings=state.tuning_service.list(owner, base).tunings,
        jobs=recent_jobs(state.job_service.redis, owner, everyone=everyone),
    )


# -- jobs -----------------------------------------------------------------------------
@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: ItemId, owner: Owner) -> HTMLResponse:
    jobs = request.app.state.job_service
    try:
        job = jobs.status(job_id, owner, str(request.base_url))
        facts = None
        if job.state == JobState.FINISHED:
            facts = picture_facts(jobs.store, _result_of(request, job_id))
    except VesselzipError as exc:
        return _error_page(request, exc)
    return _page(
        request, "job.html", job=job, facts=facts, views=list(VIEWS), ended=job.state.ended
    )


@router.get("/jobs/{job_id}/progress")
def job_progress(request: Request, job_id: ItemId, owner: Owner) -> JSONResponse:
    job = request.app.state.job_service.status(job_id, owner, str(request.base_url))
    return JSONResponse(
        {
            "state": str(job.state),
            "ended": job.state.ended,
            "fraction": job.progress,
            "text": f"{job.state} {job.stage or ''} {job.progress:.0%}".replace("  ", " "),
        }
    )


@router.get("/jobs/{job_id}/pictures/{name}.png")
def job_picture(request: Request, job_id: ItemId, name: str, owner: Owner) -> Response:
    jobs = request.app.state.job_service
    jobs.status(job_id, owner, str(request.base_url))  # the access check
    if name not in PICTURES:
        raise NotFoundError(f"no picture {name!r}")
    return Response(
        picture_png(jobs.store, _result_of(request, job_id), name), media_type="image/png"
    )


@router.get("/jobs/{job_id}/mask")
def job_mask(request: Request, job_id: ItemId, owner: Owner) -> Response:
    return download_response(request.app.state.job_service.mask_download(job_id, owner))


@router.get("/jobs/{job_id}/blob")
def job_blob(request: Request, job_id: ItemId, owner: Owner) -> Response:
    return download_response(request.app.state.job_service.blob_download(job_id, owner))


@router.get("/jobs/{job_id}/metrics.csv")
def job_csv(request: Request, job_id: ItemId, owner: Owner) -> Response:
    """One row: the job's state, timings and every metric, flattened."""
    job = request.app.state.job_service.status(job_id, owner, str(request.base_url))
    row: dict[str, Any] = {"id": job.id, "state": str(job.state), "model": job.model}
    row["codec"] = job.compression.codec
    for prefix, part in (
        ("seconds", job.stage_seconds),
        ("compression", job.compression),
        ("segmentation", job.segmentation),
        ("agreement", job.agreement),
    ):
        for key, value in (part.model_dump() if part is not None else {}).items():
            row[f"{prefix}.{key}"] = value
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(row)
    writer.writerow(
        ["" if v is None else repr(v) if isinstance(v, float) else v for v in row.values()]
    )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )


def _result_of(request: Request, job_id: str):
    outcome, _ = find_job(
        job_id, request.app.state.job_service.redis, request.app.state.job_service.store
    )
    if outcome.result is None:
        raise NotFoundError(f"job {job_id} has no result yet")
    return outcome.result


# -- sweeps ---------------------------------------------------------------------------
@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: ItemId, owner: Owner) -> HTMLResponse:
    sweeps = request.app.state.sweep_service
    try:
        status = sweeps.status(sweep_id, owner, str(request.base_url))
        summary = sweeps.summary(sweep_id, owner)
    except VesselzipError as exc:
        return _error_page(request, exc)
    return _page(
        request,
        "sweep.html",
        sweep=status,
        summary=summary,
        tables=paper_tables(summary),
        figures=_figures(summary),
        figures_installed=importlib.util.find_spec("matplotlib") is not None,
    )


def _figures(summary) -> list[str]:
    """The figures the sweep has something for so far."""
    finished = {row.group for row in summary.settings if row.n_finished and row.group != "baseline"}
    names = [name for name in ("fixed_rate", "tolerance") if name in finished]
    return names + (["dice_vs_cr", "psnr_vs_bpv"] if finished else [])


@router.get("/sweeps/{sweep_id}/progress")
def sweep_progress(request: Request, sweep_id: ItemId, owner: Owner) -> JSONResponse:
    progress = request.app.state.sweep_service.status(
        sweep_id, owner, str(request.base_url)
    ).progress
    return JSONResponse({**progress.model_dump(), "ended": progress.done == progress.total})


@router.get("/sweeps/{sweep_id}/figures/{name}.png")
def sweep_figure(request: Request, sweep_id: ItemId, name: str, owner: Owner) -> Response:
    png = request.app.state.sweep_service.figure(sweep_id, owner, name)
    return Response(png, media_type="image/png")


@router.get("/sweeps/{sweep_id}/tables.csv")
def sweep_tables_csv(request: Request, sweep_id: ItemId, owner: Owner) -> Response:
    rows = request.app.state.sweep_service.tables(sweep_id, owner).settings
    return Response(to_csv(rows, SETTING_COLUMNS), media_type="text/csv; charset=utf-8")


@router.get("/sweeps/{sweep_id}/cases.csv")
def sweep_cases_csv(request: Request, sweep_id: ItemId, owner: Owner) -> Response:
    cases = request.app.state.sweep_service.summary(sweep_id, owner).cases
    return Response(to_csv(cases, CASE_COLUMNS), media_type="text/csv; charset=utf-8")


# -- tunings --------------------------------------------------------------------------
@router.get("/tunings/{tuning_id}", response_class=HTMLResponse)
def tuning_page(request: Request, tuning_id: ItemId, owner: Owner) -> HTMLResponse:
    try:
        tuning = request.app.state.tuning_service.status(tuning_id, owner, str(request.base_url))
    except VesselzipError as exc:
        return _error_page(request, exc)
    return _page(request, "tuning.html", tuning=tuning)


@router.get("/tunings/{tuning_id}/progress")
def tuning_progress(request: Request, tuning_id: ItemId, owner: Owner) -> JSONResponse:
    tuning = request.app.state.tuning_service.status(tuning_id, owner, str(request.base_url))
    progress = tuning.progress
    return JSONResponse(
        {**progress.model_dump(), "ended": progress.state in ("finished", "failed")}
    )
