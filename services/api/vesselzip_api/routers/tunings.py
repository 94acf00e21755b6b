"""/v1/tunings: the strongest setting of one codec mode that keeps segmentation
within a Dice budget, per volume and for a dataset."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from vesselzip_api.deps import BaseURL, Owner
from vesselzip_api.schemas import ErrorBody
from vesselzip_api.sweep_schemas import ID_PATTERN
from vesselzip_api.tuning_schemas import TuningCreated, TuningList, TuningRequest, TuningStatus
from vesselzip_api.tuning_service import TuningService

router = APIRouter(prefix="/v1/tunings", tags=["tunings"])


def get_tuning_service(request: Request) -> TuningService:
    return request.app.state.tuning_service


Tunings = Annotated[TuningService, Depends(get_tuning_service)]
TuningId = Annotated[str, Path(pattern=ID_PATTERN, description="The id POST returned.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The tuning belongs to another API key."},
    404: {"model": ErrorBody, "description": "No such tuning."},
}


@router.post(
    "",
    status_code=202,
    response_model=TuningCreated,
    summary="Search the strongest setting within a Dice budget, per volume and for the dataset",
    responses={
        200: {"model": TuningCreated, "description": "The tuning existed; failed jobs rerun."},
        401: _ERRORS[401],
        403: {"model": ErrorBody, "description": "The dataset belongs to another API key."},
        404: {"model": ErrorBody, "description": "No such dataset."},
        409: {"model": ErrorBody, "description": "Idempotency-Key used for another tuning."},
        422: {
            "model": ErrorBody,
            "description": "A codec or mode that cannot be tuned, a bad range, score=truth "
            "without truths, no volumes, or too many jobs.",
        },
        503: {"model": ErrorBody, "description": "The queue (Redis) is unreachable."},
    },
)
def create_tuning(
    request: TuningRequest,
    tunings: Tunings,
    owner: Owner,
    base_url: BaseURL,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The same key returns the same tuning; without one, the same "
            "volumes, codec mode, range, budget, coverage, score and model do.",
        ),
    ] = None,
) -> TuningCreated:
    created = tunings.create(
        request, owner=owner, idempotency_key=idempotency_key, base_url=base_url
    )
    if not created.created:
        response.status_code = 200
    return created


@router.get("", response_model=TuningList, summary="Your tunings", responses={401: _ERRORS[401]})
def list_tunings(tunings: Tunings, owner: Owner, base_url: BaseURL) -> TuningList:
    return tunings.list(owner, base_url)


@router.get(
    "/{tuning_id}",
    response_model=TuningStatus,
    summary="Progress, each volume's search path and the dataset-level answer",
    responses=_ERRORS,
)
def get_tuning(
    tuning_id: TuningId, tunings: Tunings, owner: Owner, base_url: BaseURL
) -> TuningStatus:
    return tunings.status(tuning_id, owner, base_url)
