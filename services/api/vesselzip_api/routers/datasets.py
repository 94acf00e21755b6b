"""/v1/datasets: upload volumes with their truths once, reference them by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Path, Request, Response, UploadFile

from vesselzip_api.dataset_service import DatasetService
from vesselzip_api.deps import BaseURL, Owner
from vesselzip_api.job_service import Upload
from vesselzip_api.schemas import ErrorBody
from vesselzip_api.sweep_schemas import (
    ID_PATTERN,
    DatasetDeleted,
    DatasetInfo,
    DatasetList,
    VolumeInfo,
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def get_dataset_service(request: Request) -> DatasetService:
    return request.app.state.dataset_service


Datasets = Annotated[DatasetService, Depends(get_dataset_service)]
DatasetId = Annotated[str, Path(pattern=ID_PATTERN, description="The id POST returned.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The dataset belongs to another API key."},
    404: {"model": ErrorBody, "description": "No such dataset."},
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A malformed request."},
    413: {"model": ErrorBody, "description": "Body or volume beyond the configured limits."},
    422: {
        "model": ErrorBody,
        "description": "Not a usable volume, a truth off its grid, or more volumes than "
        "VESSELZIP_MAX_DATASET_VOLUMES.",
    },
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetInfo,
    summary="Create a dataset, optionally with its volumes in the same request",
    responses={
        200: {"model": DatasetInfo, "description": "The dataset this Idempotency-Key made."},
        **_UPLOAD_ERRORS,
        401: _ERRORS[401],
    },
)
def create_dataset(
    datasets: Datasets,
    owner: Owner,
    base_url: BaseURL,
    response: Response,
    name: Annotated[str | None, Form(max_length=200, description="A label for people.")] = None,
    images: Annotated[
        list[UploadFile] | None,
        File(description="Volumes (NIfTI-1, 3D); each one's id is its file name sans .nii(.gz)."),
    ] = None,
    truths: Annotated[
        list[UploadFile] | None,
        File(description="Truth masks, one per image in the same order (or none)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The same key returns the dataset it created (status 200) "
            "without reading the files again.",
        ),
    ] = None,
) -> DatasetInfo:
    info, created = datasets.create(
        name=name,
        images=[Upload(f.file, f.filename) for f in images or []],
        truths=[Upload(f.file, f.filename) for f in truths or []],
        owner=owner,
        idempotency_key=idempotency_key,
        base_url=base_url,
    )
    if not created:
        response.status_code = 200
    return info


@router.get("", response_model=DatasetList, summary="Your datasets", responses={401: _ERRORS[401]})
def list_datasets(datasets: Datasets, owner: Owner, base_url: BaseURL) -> DatasetList:
    return datasets.list(owner, base_url)


@router.get(
    "/{dataset_id}",
    response_model=DatasetInfo,
    summary="A dataset and its volumes",
    responses=_ERRORS,
)
def get_dataset(
    dataset_id: DatasetId, datasets: Datasets, owner: Owner, base_url: BaseURL
) -> DatasetInfo:
    return datasets.get(dataset_id, owner, base_url)


@router.post(
    "/{dataset_id}/volumes",
    status_code=201,
    response_model=VolumeInfo,
    summary="Add a volume (and its truth mask) to a dataset",
    responses={
        **_ERRORS,
        **_UPLOAD_ERRORS,
        409: {"model": ErrorBody, "description": "The dataset has a volume of that name."},
    },
)
def add_volume(
    dataset_id: DatasetId,
    datasets: Datasets,
    owner: Owner,
    image: Annotated[UploadFile, File(description="The volume: NIfTI-1 (.nii or .nii.gz), 3D.")],
    truth: Annotated[
        UploadFile | None, File(description="Its ground-truth vessel mask, same grid.")
    ] = None,
    name: Annotated[
        str | None,
        Form(max_length=100, description="Volume id; default: the file name sans .nii(.gz)."),
    ] = None,
) -> VolumeInfo:
    return datasets.add(
        dataset_id,
        image=Upload(image.file, image.filename),
        truth=Upload(truth.file, truth.filename) if truth is not None else None,
        name=name,
        owner=owner,
    )


@router.delete(
    "/{dataset_id}",
    response_model=DatasetDeleted,
    summary="Delete a dataset (unfinished sweep jobs over it are cancelled)",
    responses=_ERRORS,
)
def delete_dataset(dataset_id: DatasetId, datasets: Datasets, owner: Owner) -> DatasetDeleted:
    return datasets.delete(dataset_id, owner)
