"""/v1/models: the segmenters the workers offer now, and what each can take."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vesselzip_api.schemas import ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Models the workers offer, by name")
def list_models(request: Request) -> ModelList:
    return request.app.state.job_service.models()
