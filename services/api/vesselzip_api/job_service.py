"""What the job routes do: turn an upload into a stored blob and a queued job, show a
job, hand out its files, delete it. Routes only parse the request and call this."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from redis import Redis

from vesselzip.errors import InvalidCodecConfigError, ModelNotAvailableError, NotFoundError
from vesselzip.jobs import (
    JobResult,
    JobSpec,
    blob_key,
    compress_upload,
    delete_job_data,
    load_result,
    mask_key,
    new_job_id,
    prepare_truth,
    truth_key,
)
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip_api.access import check_access
from vesselzip_api.errors import JobNotReadyError
from vesselzip_api.schemas import JobCreated, JobDeleted, JobLinks, JobStatus, StageSeconds
from vesselzip_queue import queues
from vesselzip_queue.records import JobRecord, JobRecords

_COPY_CHUNK = 1024 * 1024


@dataclass
class Upload:
    """One uploaded file as the route received it (already spooled by the server)."""

    stream: BinaryIO
    filename: str | None

    @property
    def given(self) -> bool:
        # Browsers send an empty part without a filename for an unused file input.
        return bool(self.filename) or _has_data(self.stream)


def codec_config(codec: str, mode: str | None, value: str | None) -> dict[str, Any]:
    """The codec config for the form fields: either a spec (`zfp:rate=2`) in `codec`,
    or `codec` + `mode` (+ `value`)."""
    from vesselzip.codecs import parse_codec_spec

    codec = codec.strip()
    if ":" in codec:
        if mode or value:
            raise InvalidCodecConfigError(
                "give the codec either as one spec (codec=zfp:rate=2) or as codec, mode "
                "and value, not both"
            )
        return parse_codec_spec(codec)
    if value and not mode:
        raise InvalidCodecConfigError(f"a value ({value}) needs a mode (e.g. rate, tolerance)")
    spec = codec if not mode else f"{codec}:{mode}" + (f"={value}" if value else "")
    return parse_codec_spec(spec)


class JobService:
    def __init__(self, settings: Settings, connection: Redis, store: BlobStore):
        self.settings = settings
        self.redis = connection
        self.store = store
        self.records = JobRecords(connection, ttl_s=settings.record_ttl_s)
        # Compressing holds a few copies of a volume in memory: bound how many at once.
        self._compress_slots = threading.BoundedSemaphore(settings.upload_concurrency)

    # -- create -----------------------------------------------------------------
    def create_from_upload(
        self,
        *,
        image: Upload,
        truth: Upload | None,
        codec: dict[str, Any],
        model: str | None,
        queue: str | None,
        owner: str | None,
        received_at: float,
        base_url: str,
    ) -> JobCreated:
        """Validate and compress the upload, store blob and truth, queue the job.
        Nothing is stored unless every check passed."""
        model = self.check_model(model or self.settings.default_model)
        queue = queue or self.settings.default_queue
        job_id = new_job_id()
        temp_paths: list[Path] = []
        stored: list[str] = []
        try:
            image_path = self._spool(image, temp_paths)
            truth_path = self._spool(truth, temp_paths) if truth and truth.given else None
            upload_s = time.time() - received_at

            t0 = time.perf_counter()
            with self._compress_slots:
                compressed = compress_upload(
                    image_path,
                    codec,
                    filename=_display_name(image.filename),
                    max_voxels=self.settings.max_voxels,
                    max_volume_bytes=self.settings.max_volume_bytes,
                )
                truth_bytes = None
                if truth_path is not None:
                    truth_bytes = prepare_truth(
                        truth_path,
                        compressed.shape,
                        compressed.affine,
                        max_voxels=self.settings.max_voxels,
                        max_volume_bytes=self.settings.max_volume_bytes,
                    )
            for path in temp_paths:
                path.unlink(missing_ok=True)

            self.store.put_bytes(blob_key(job_id), compressed.blob)
            stored.append(blob_key(job_id))
            if truth_bytes is not None:
                self.store.put_bytes(truth_key(job_id), truth_bytes)
                stored.append(truth_key(job_id))
            compress_s = time.perf_counter() - t0

            spec = JobSpec(
                job_id=job_id,
                blob_key=blob_key(job_id),
                truth_key=truth_key(job_id) if truth_bytes is not None else None,
                model=model,
                codec=codec,
                image=compressed.image.model_dump(),
                owner=owner,
                owned_keys=list(stored),
                compression=compressed.compression,
                stage_seconds={"upload": upload_s, "compress": compress_s},
            )
            self.submit(spec, queue)
        except BaseException:
            for key in stored:
                self.store.delete(key)
            raise
        finally:
            for path in temp_paths:
                path.unlink(missing_ok=True)
        return JobCreated(
            id=job_id,
            url=_job_url(base_url, job_id),
            state="queued",
            queue=queue,
            links=_links(base_url, job_id),
        )

    def check_model(self, name: str) -> str:
        """Refuse a model no worker offers. Before any worker has announced its models
        every name is accepted; a worker then fails the job with the reason."""
        names = queues.known_models(self.redis)
        if names and name not in names:
            raise ModelNotAvailableError(
                f"unknown model {name!r}; available: {', '.join(sorted(names))}"
            )
        return name

    def submit(self, spec: JobSpec, queue: str) -> None:
        """Queue a job whose inputs are already in the store (uploads, and later sweeps
        over stored datasets, both end here)."""
        queues.enqueue(spec, queue=queue, connection=self.redis, settings=self.settings)

    def _spool(self, upload: Upload, temp_paths: list[Path]) -> Path:
        """Copy an upload into the store's temp directory in chunks (never whole in memory)."""
        suffix = ".nii.gz" if (upload.filename or "").endswith(".gz") else ".nii"
        out, path = self.store.temp_file(suffix)
        temp_paths.append(path)
        with out:
            upload.stream.seek(0)
            shutil.copyfileobj(upload.stream, out, _COPY_CHUNK)
        return path

    # -- read -------------------------------------------------------------------
    def status(self, job_id: str, owner: str | None, base_url: str) -> JobStatus:
        record = self.records.get(job_id)
        if record is not None:
            self._authorize(record.spec.owner, owner)
            return self._view_of_record(record, base_url)
        result = load_result(self.store, job_id)  # after a Redis flush or record expiry
        self._authorize(result.owner, owner)
        return self._view_of_result(result, base_url)

    def mask_path(self, job_id: str, owner: str | None) -> Path:
        view = self.status(job_id, owner, base_url="/")
        if view.state != "finished":
            reason = f": {view.error}" if view.error else ""
            raise JobNotReadyError(f"job {job_id} is {view.state}{reason}; it has no mask yet")
        return self.store.local_path(mask_key(job_id))

    def blob_path(self, job_id: str, owner: str | None) -> Path:
        record = self.records.get(job_id)
        key: str | None
        if record is not None:
            self._authorize(record.spec.owner, owner)
            key = record.spec.blob_key
        else:
            result = load_result(self.store, job_id)
            self._authorize(result.owner, owner)
            key = result.blob_key
        if not key or not self.store.exists(key):
            raise NotFoundError(f"job {job_id} has no stored blob")
        return self.store.local_path(key)

    # -- delete -----------------------------------------------------------------
    def delete(self, job_id: str, owner: str | None) -> JobDeleted:
        view = self.status(job_id, owner, base_url="/")
        record = self.records.get(job_id)
        if view.state == "cancelled":
            raise NotFoundError(f"job {job_id} was already cancelled")
        running = view.state in ("queued", "running")
        keys: list[str] = []
        if record is not None:
            keys = list(record.spec.owned_keys)
        else:
            keys = list(load_result(self.store, job_id).owned_keys)
        if running:
            self.records.cancel(job_id)  # the worker sees this at its next progress report
            queues.cancel(job_id, self.redis)
        else:
            self.records.delete(job_id)
        delete_job_data(self.store, keys, job_id)
        return JobDeleted(id=job_id, previous_state=view.state, cancelled=running)

    # -- helpers ----------------------------------------------------------------
    def _authorize(self, job_owner: str | None, caller: str | None) -> None:
        check_access(self.settings, job_owner, caller, "this job")

    def _view_of_record(self, record: JobRecord, base_url: str) -> JobStatus:
        spec = record.spec
        state = queues.job_state(record, self.redis)
        if record.result is not None:
            return self._view_of_result(record.result, base_url, record=record)
        seconds = dict(spec.stage_seconds)
        now = time.time()
        if state.state == "queued" and record.queued_at:
            seconds["queue_wait"] = now - record.queued_at
        elif record.started_at and record.queued_at:
            seconds["queue_wait"] = max(0.0, record.started_at - record.queued_at)
        return JobStatus(
            id=spec.job_id,
            url=_job_url(base_url, spec.job_id),
            state=state.state,
            queue=record.queue,
            position=state.position,
            progress=record.progress if state.state == "running" else 0.0,
            stage=record.stage if state.state in ("queued", "running") else None,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            model=spec.model,
            codec=spec.codec,
            image=spec.image.model_dump(),
            has_truth=spec.truth_key is not None,
            created_at=_when(spec.created_at),
            started_at=_when(record.started_at),
            finished_at=_when(record.finished_at),
            stage_seconds=StageSeconds(**seconds),
            compression=spec.compression,
            error=state.error,
            notes=record.notes,
            links=_links(base_url, spec.job_id),
        )

    def _view_of_result(
        self, result: JobResult, base_url: str, record: JobRecord | None = None
    ) -> JobStatus:
        return JobStatus(
            id=result.job_id,
            url=_job_url(base_url, result.job_id),
            state=result.state,
            queue=record.queue if record else None,
            progress=1.0 if result.state == "finished" else 0.0,
            attempts=result.attempts,
            max_attempts=record.max_attempts if record else result.attempts,
            model=result.model,
            codec=result.codec,
            image=result.image.model_dump(),
            has_truth=result.has_truth,
            created_at=_when(result.created_at),
            started_at=_when(record.started_at) if record else None,
            finished_at=_when(result.finished_at),
            stage_seconds=StageSeconds(**result.stage_seconds),
            compression=result.compression,
            segmentation=result.segmentation,
            error=result.error,
            notes=result.notes,
            links=_links(base_url, result.job_id),
        )


def _has_data(stream: BinaryIO) -> bool:
    stream.seek(0)
    has = bool(stream.read(1))
    stream.seek(0)
    return has


def _display_name(filename: str | None) -> str | None:
    # Shown back to the client only; never used as a path.
    return Path(filename).name[:200] if filename else None


def _job_url(base_url: str, job_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/jobs/{job_id}"


def _links(base_url: str, job_id: str) -> JobLinks:
    url = _job_url(base_url, job_id)
    return JobLinks(self=url, mask=f"{url}/mask", blob=f"{url}/blob")


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=timezone.utc) if epoch else None
