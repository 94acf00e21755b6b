"""/v1/jobs: post a volume, follow the job, fetch its mask and blob, delete it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, UploadFile, status
from fastapi.responses import Response

from vesselzip_api.deps import BaseURL, Jobs, Owner, ReceivedAt
from vesselzip_api.downloads import download_response
from vesselzip_api.job_service import Upload, codec_config
from vesselzip_api.schemas import ErrorBody, JobCreated, JobDeleted, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The id POST returned.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The job belongs to another API key."},
    404: {"model": ErrorBody, "description": "No such job."},
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    summary="Compress a volume and queue its segmentation",
    responses={
        400: {"model": ErrorBody, "description": "A malformed request."},
        401: _ERRORS[401],
        413: {"model": ErrorBody, "description": "Body or volume beyond the configured limits."},
        422: {"model": ErrorBody, "description": "Not a usable volume, codec or model."},
        503: {"model": ErrorBody, "description": "The queue (Redis) is unreachable."},
    },
)
def create_job(
    jobs: Jobs,
    owner: Owner,
    base_url: BaseURL,
    received_at: ReceivedAt,
    image: Annotated[UploadFile, File(description="The volume: NIfTI-1 (.nii or .nii.gz), 3D.")],
    truth: Annotated[
        UploadFile | None,
        File(description="Optional ground-truth vessel mask on the image's grid."),
    ] = None,
    codec: Annotated[
        str,
        Form(
            description='Codec id ("zfp", "none") or a whole spec such as "zfp:rate=2" '
            'or "zfp:tolerance=500".'
        ),
    ] = "none",
    mode: Annotated[
        str | None,
        Form(description="ZFP mode: rate, tolerance, relative_tolerance, precision, reversible."),
    ] = None,
    value: Annotated[
        str | None, Form(description="The mode's parameter (bits/voxel, tolerance, ...).")
    ] = None,
    model: Annotated[
        str | None, Form(description="Segmenter name; the server's default when omitted.")
    ] = None,
    queue: Annotated[
        Literal["gpu", "cpu"] | None,
        Form(description="Worker queue; the server's default when omitted."),
    ] = None,
    agreement: Annotated[
        bool,
        Form(
            description="Also segment the uncompressed volume (a reference job, run "
            "first) and score this job's mask against it: `agreement` in the status, "
            "with or without a truth. Doubles the inference."
        ),
    ] = False,
) -> JobCreated:
    # A plain `def`: FastAPI runs it in a worker thread, off the event loop.
    return jobs.create_from_upload(
        image=Upload(image.file, image.filename),
        truth=Upload(truth.file, truth.filename) if truth is not None else None,
        codec=codec_config(codec, mode, value),
        model=model,
        queue=queue,
        owner=owner,
        received_at=received_at,
        base_url=base_url,
        agreement=agreement,
    )


@router.get(
    "/{job_id}",
    response_model=JobStatus,
    summary="State, progress, timings and metrics of a job",
    responses=_ERRORS,
)
def get_job(job_id: JobId, jobs: Jobs, owner: Owner, base_url: BaseURL) -> JobStatus:
    return jobs.status(job_id, owner, base_url)


@router.get(
    "/{job_id}/mask",
    response_class=Response,
    summary="The predicted vessel mask (NIfTI, the upload's affine)",
    responses={
        200: {"content": {"application/gzip": _BINARY}, "description": "mask.nii.gz"},
        307: {"description": "Fetch it from the store (VESSELZIP_PRESIGN_DOWNLOADS)."},
        **_ERRORS,
        409: {"model": ErrorBody, "description": "The job has not finished (or failed)."},
    },
)
def get_mask(job_id: JobId, jobs: Jobs, owner: Owner) -> Response:
    return download_response(jobs.mask_download(job_id, owner))


@router.get(
    "/{job_id}/blob",
    response_class=Response,
    summary="The compressed volume (.vz); `vesselzip decompress` decodes it",
    responses={
        200: {"content": {"application/octet-stream": _BINARY}, "description": "blob.vz"},
        307: {"description": "Fetch it from the store (VESSELZIP_PRESIGN_DOWNLOADS)."},
        **_ERRORS,
    },
)
def get_blob(job_id: JobId, jobs: Jobs, owner: Owner) -> Response:
    return download_response(jobs.blob_download(job_id, owner))


@router.delete(
    "/{job_id}",
    response_model=JobDeleted,
    summary="Cancel a job (if it has not finished) and remove everything it stored",
    responses=_ERRORS,
)
def delete_job(job_id: JobId, jobs: Jobs, owner: Owner) -> JobDeleted:
    return jobs.delete(job_id, owner)
