"""/v1/sweeps: a dataset x a grid of compression settings x a model, as a batch of
jobs, with the paper's tables and figures for the results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from vesselzip.sweeps import CASE_COLUMNS, SETTING_COLUMNS, to_csv
from vesselzip_api.deps import BaseURL, Owner
from vesselzip_api.schemas import ErrorBody
from vesselzip_api.sweep_schemas import (
    ID_PATTERN,
    SweepCases,
    SweepCreated,
    SweepList,
    SweepRequest,
    SweepStatus,
    SweepTables,
)
from vesselzip_api.sweep_service import SweepService

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


def get_sweep_service(request: Request) -> SweepService:
    return request.app.state.sweep_service


Sweeps = Annotated[SweepService, Depends(get_sweep_service)]
SweepId = Annotated[str, Path(pattern=ID_PATTERN, description="The id POST returned.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The sweep belongs to another API key."},
    404: {"model": ErrorBody, "description": "No such sweep."},
}
_CSV = "text/csv; charset=utf-8"
_MARKDOWN = "text/markdown; charset=utf-8"


@router.post(
    "",
    status_code=202,
    response_model=SweepCreated,
    summary="Run every setting of a grid on every volume of a dataset",
    responses={
        200: {"model": SweepCreated, "description": "The sweep existed; failed jobs rerun."},
        401: _ERRORS[401],
        403: {"model": ErrorBody, "description": "The dataset belongs to another API key."},
        404: {"model": ErrorBody, "description": "No such dataset."},
        409: {"model": ErrorBody, "description": "Idempotency-Key used for another sweep."},
        422: {
            "model": ErrorBody,
            "description": "A bad codec spec or model, no volumes, or more jobs than "
            "VESSELZIP_MAX_SWEEP_JOBS.",
        },
        503: {"model": ErrorBody, "description": "The queue (Redis) is unreachable."},
    },
)
def create_sweep(
    request: SweepRequest,
    sweeps: Sweeps,
    owner: Owner,
    base_url: BaseURL,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The same key returns the same sweep; without one, the same "
            "dataset, grid and model do.",
        ),
    ] = None,
) -> SweepCreated:
    created = sweeps.create(
        request, owner=owner, idempotency_key=idempotency_key, base_url=base_url
    )
    if not created.created:
        response.status_code = 200
    return created


@router.get("", response_model=SweepList, summary="Your sweeps", responses={401: _ERRORS[401]})
def list_sweeps(sweeps: Sweeps, owner: Owner, base_url: BaseURL) -> SweepList:
    return sweeps.list(owner, base_url)


@router.get(
    "/{sweep_id}",
    response_model=SweepStatus,
    summary="Progress, ETA and the per-setting table so far",
    responses=_ERRORS,
)
def get_sweep(sweep_id: SweepId, sweeps: Sweeps, owner: Owner, base_url: BaseURL) -> SweepStatus:
    return sweeps.status(sweep_id, owner, base_url)


@router.get(
    "/{sweep_id}/tables",
    response_model=SweepTables,
    summary="The per-setting table (the paper's Tables 1-4) as JSON, CSV or Markdown",
    responses={
        200: {
            "content": {
                _CSV: {"schema": {"type": "string"}},
                _MARKDOWN: {"schema": {"type": "string"}},
            },
            "description": "JSON (default), CSV (one row per setting) or Markdown.",
        },
        **_ERRORS,
    },
)
def get_tables(
    sweep_id: SweepId,
    sweeps: Sweeps,
    owner: Owner,
    format: Annotated[Literal["json", "csv", "md"], Query()] = "json",
):
    if format == "md":
        return Response(sweeps.markdown(sweep_id, owner), media_type=_MARKDOWN)
    tables = sweeps.tables(sweep_id, owner)
    if format == "csv":
        return Response(to_csv(tables.settings, SETTING_COLUMNS), media_type=_CSV)
    return tables


@router.get(
    "/{sweep_id}/cases",
    response_model=SweepCases,
    summary="Per-volume results of every setting, as JSON or CSV",
    responses={
        200: {
            "content": {_CSV: {"schema": {"type": "string"}}},
            "description": "JSON (default) or CSV (one row per volume and setting).",
        },
        **_ERRORS,
    },
)
def get_cases(
    sweep_id: SweepId,
    sweeps: Sweeps,
    owner: Owner,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
):
    cases = sweeps.summary(sweep_id, owner).cases
    if format == "csv":
        return Response(to_csv(cases, CASE_COLUMNS), media_type=_CSV)
    return SweepCases(sweep_id=sweep_id, cases=cases)


@router.get(
    "/{sweep_id}/figures/{name}.png",
    response_class=Response,
    summary="A figure: fixed_rate (paper Fig. 2), tolerance (Fig. 3), dice_vs_cr or psnr_vs_bpv",
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **_ERRORS,
        409: {"model": ErrorBody, "description": "No job for this figure has finished yet."},
        501: {"model": ErrorBody, "description": "This gateway was installed without figures."},
    },
)
def get_figure(
    sweep_id: SweepId,
    name: Literal["fixed_rate", "tolerance", "dice_vs_cr", "psnr_vs_bpv"],
    sweeps: Sweeps,
    owner: Owner,
) -> Response:
    return Response(sweeps.figure(sweep_id, owner, name), media_type="image/png")
