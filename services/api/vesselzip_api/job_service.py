"""What the job routes do: turn an upload into a stored blob and a queued job, show a
job, hand out its files, delete it. Routes only parse the request and call this."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from redis import Redis

from vesselzip.errors import (
    InvalidCodecConfigError,
    InvalidVolumeError,
    ModelNotAvailableError,
    NotFoundError,
    quoted,
)
from vesselzip.jobs import (
    ImageInfo,
    JobOutcome,
    JobResult,
    JobSpec,
    JobState,
    blob_key,
    compress_upload,
    delete_job_data,
    difference_key,
    mask_key,
    new_job_id,
    prepare_truth,
    truth_key,
)
from vesselzip.model_info import ModelInfo
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip.weights import model_identity, model_name
from vesselzip_api.access import check_access
from vesselzip_api.downloads import Download, download_of
from vesselzip_api.errors import JobNotReadyError
from vesselzip_api.schemas import (
    JobCreated,
    JobDeleted,
    JobLinks,
    JobStatus,
    ModelList,
    StageSeconds,
)
from vesselzip_queue import queues
from vesselzip_queue.catalog import offered_models
from vesselzip_queue.state import QueuedJob, find_job


@dataclass
class Upload:
    """One uploaded file as the route received it: the web server has already spooled
    it (in memory when small, else to a temp file), so it is read from there, never
    copied again."""

    stream: BinaryIO
    filename: str | None

    @property
    def given(self) -> bool:
        # Browsers send an empty part without a filename for an unused file input.
        return bool(self.filename) or _has_data(self.stream)

    def rewound(self) -> BinaryIO:
        """The file, positioned at its start."""
        self.stream.seek(0)
        return self.stream


def codec_config(codec: str, mode: str | None, value: str | None) -> dict[str, Any]:
    """The codec config for the form fields: either a spec (`zfp:rate=2`) in `codec`,
    or `codec` + `mode` (+ `value`), the latter handed to the codec as its options
    directly (no spec text in between)."""
    from vesselzip.codecs import codec_config_from_options, parse_codec_spec

    codec = codec.strip()
    if ":" in codec:
        if mode or value:
            raise InvalidCodecConfigError(
                "give the codec either as one spec (codec=zfp:rate=2) or as codec, mode "
                "and value, not both"
            )
        return parse_codec_spec(codec)
    if value and not mode:
        raise InvalidCodecConfigError(
            f"a value ({quoted(value)}) needs a mode (e.g. rate, tolerance)"
        )
    options = {mode.strip(): value.strip() if value else None} if mode else {}
    return codec_config_from_options(codec, options)


class JobService:
    def __init__(self, settings: Settings, connection: Redis, store: BlobStore):
        self.settings = settings
        self.redis = connection
        self.store = store
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
        agreement: bool = False,
    ) -> JobCreated:
        """Validate and compress the upload, store blob and truth, queue the job.
        Nothing is stored unless every check passed.

        With `agreement`, a reference job segments the uncompressed volume first and
        this job's mask is compared with its mask (not for codec `none`, which is the
        uncompressed volume already)."""
        model = model_name(model or self.settings.default_model)
        offered = self.check_model(model)
        queue = queue or self.settings.default_queue
        job_id = new_job_id()
        stored: list[str] = []
        try:
            upload_s = time.time() - received_at

            t0 = time.perf_counter()
            with self._compress_slots:
                # Read where the web server spooled the upload: no copy of it is made.
                compressed = compress_upload(
                    image.rewound(),
                    codec,
                    filename=_display_name(image.filename),
                    max_voxels=self.settings.max_voxels,
                    max_volume_bytes=self.settings.max_volume_bytes,
                )
                name = compressed.image.filename
                check_input(offered, compressed.image, f"image ({name})" if name else "image")
                truth_bytes = None
                if truth is not None and truth.given:
                    truth_bytes = prepare_truth(
                        truth.rewound(),
                        compressed.shape,
                        compressed.affine,
                        max_voxels=self.settings.max_voxels,
                        max_volume_bytes=self.settings.max_volume_bytes,
                    )

            self.store.put_bytes(blob_key(job_id), compressed.blob)
            stored.append(blob_key(job_id))
            if compressed.difference is not None:
                self.store.put_bytes(difference_key(job_id), compressed.difference)
                stored.append(difference_key(job_id))
            if truth_bytes is not None:
                self.store.put_bytes(truth_key(job_id), truth_bytes)
                stored.append(truth_key(job_id))
            reference = None
            if agreement and codec.get("id") != "none":
                reference = self._reference_job(
                    image, job_id, compressed.image, truth_bytes is not None, model, owner
                )
                stored.extend(reference.owned_keys)
            compress_s = time.perf_counter() - t0

            spec = JobSpec(
                job_id=job_id,
                blob_key=blob_key(job_id),
                truth_key=truth_key(job_id) if truth_bytes is not None else None,
                model=model,
                codec=codec,
                image=compressed.image.model_dump(),
                owner=owner,
                owned_keys=[
                    k for k in stored if reference is None or k not in reference.owned_keys
                ],
                owned_jobs=[reference.job_id] if reference is not None else [],
                reference_job_id=reference.job_id if reference is not None else None,
                compression=compressed.compression,
                stage_seconds={"upload": upload_s, "compress": compress_s},
            )
            self.submit([spec] if reference is None else [reference, spec], queue)
        except BaseException:
            for key in stored:
                self.store.delete(key)
            raise
        return JobCreated(
            id=job_id,
            url=_job_url(base_url, job_id),
            state="queued",
            queue=queue,
            links=_links(base_url, job_id),
        )

    def _reference_job(
        self,
        image: Upload,
        job_id: str,
        info: ImageInfo,
        has_truth: bool,
        model: str,
        owner: str | None,
    ) -> JobSpec:
        """The job segmenting the upload uncompressed (codec `none`), stored and ready
        to queue; it shares the truth of job `job_id`, which owns it."""
        reference_id = new_job_id()
        with self._compress_slots:
            uncompressed = compress_upload(image.rewound(), {"id": "none"}, filename=info.filename)
        self.store.put_bytes(blob_key(reference_id), uncompressed.blob)
        return JobSpec(
            job_id=reference_id,
            blob_key=blob_key(reference_id),
            truth_key=truth_key(job_id) if has_truth else None,
            model=model,
            codec={"id": "none"},
            image=info.model_dump(),
            owner=owner,
            owned_keys=[blob_key(reference_id)],
            compression=uncompressed.compression,
            stage_seconds={"compress": sum(uncompressed.seconds.values())},
        )

    def check_model(self, name: str) -> ModelInfo | None:
        """What the workers say of model `name`; ModelNotAvailableError when none offers
        it (each worker offers only what it loaded). While no worker offers anything,
        every name is accepted (None): the job waits for a worker, which fails it at
        once with the reason if it cannot take it."""
        offered = offered_models(self.redis)
        if offered and name not in offered:
            raise ModelNotAvailableError(
                f"unknown model {quoted(name)}: no worker offers it; available: "
                f"{', '.join(sorted(offered))}"
            )
        return offered.get(name)

    def model_for_volumes(
        self, requested: str | None, images: list[tuple[str, ImageInfo]]
    ) -> tuple[str, str]:
        """The model's name (the default when none is asked for) and identity (its
        weights), once it is known to take every (name, image): for sweeps and tunings."""
        model = model_name(requested or self.settings.default_model)
        offered = self.check_model(model)
        for what, image in images:
            check_input(offered, image, what)
        return model, model_identity(model, self.settings.checkpoint)

    def models(self) -> ModelList:
        offered = offered_models(self.redis)
        return ModelList(models=[offered[name] for name in sorted(offered)])

    def submit(self, specs: list[JobSpec], queue: str) -> None:
        """Queue jobs whose inputs are already in the store (an upload's, a sweep's over
        a stored dataset: both end here)."""
        queues.enqueue(specs, queue=queue, connection=self.redis, settings=self.settings)

    # -- read -------------------------------------------------------------------
    def status(self, job_id: str, owner: str | None, base_url: str) -> JobStatus:
        outcome, queued = self._find(job_id, owner)
        if queued is None or outcome.result is not None:
            return self._view_of_result(_result(outcome), base_url, queued=queued)
        return self._view_of_queued(queued, outcome, base_url)

    def mask_download(self, job_id: str, owner: str | None) -> Download:
        outcome, _ = self._find(job_id, owner)
        if outcome.state != JobState.FINISHED:
            reason = f": {outcome.error}" if outcome.error else ""
            raise JobNotReadyError(f"job {job_id} is {outcome.state}{reason}; it has no mask yet")
        return download_of(
            self.store, self.settings, mask_key(job_id), f"{job_id}_mask.nii.gz", "application/gzip"
        )

    def blob_download(self, job_id: str, owner: str | None) -> Download:
        _, _, spec = self._find_with_spec(job_id, owner)
        if not spec.blob_key or not self.store.exists(spec.blob_key):
            raise NotFoundError(f"job {job_id} has no stored blob")
        return download_of(
            self.store, self.settings, spec.blob_key, f"{job_id}.vz", "application/octet-stream"
        )

    # -- delete -----------------------------------------------------------------
    def delete(self, job_id: str, owner: str | None) -> JobDeleted:
        outcome, _, spec = self._find_with_spec(job_id, owner)
        if outcome.state == JobState.CANCELLED:
            raise NotFoundError(f"job {job_id} was already cancelled")
        running = not outcome.ended
        if running:
            queues.cancel(job_id, self.redis)  # a running job stops at its next report
        else:
            queues.delete(job_id, self.redis)
        delete_job_data(self.store, list(spec.owned_keys), job_id)
        for owned in spec.owned_jobs:  # its reference job, made for it alone
            try:
                self.delete(owned, owner)
            except NotFoundError:  # deleted already, or gone with Redis
                pass
        return JobDeleted(id=job_id, previous_state=outcome.state, cancelled=running)

    # -- helpers ----------------------------------------------------------------
    def _find(self, job_id: str, caller: str | None) -> tuple[JobOutcome, QueuedJob | None]:
        """The job wherever it is (state.find_job), if `caller` may see it."""
        outcome, queued = find_job(job_id, self.redis, self.store)
        owned_by = queued.spec.owner if queued is not None else _result(outcome).owner
        check_access(self.settings, owned_by, caller, "this job")
        return outcome, queued

    def _find_with_spec(
        self, job_id: str, caller: str | None
    ) -> tuple[JobOutcome, QueuedJob | None, JobSpec | JobResult]:
        """As _find, plus what names the job's stored keys: its spec, else its result."""
        outcome, queued = self._find(job_id, caller)
        return outcome, queued, queued.spec if queued is not None else _result(outcome)

    def _view_of_queued(self, queued: QueuedJob, state: JobOutcome, base_url: str) -> JobStatus:
        spec = queued.spec
        seconds = dict(spec.stage_seconds)
        now = time.time()
        if state.state == JobState.QUEUED and queued.queued_at:
            seconds["queue_wait"] = now - queued.queued_at
        elif queued.started_at and queued.queued_at:
            seconds["queue_wait"] = max(0.0, queued.started_at - queued.queued_at)
        return JobStatus(
            id=spec.job_id,
            url=_job_url(base_url, spec.job_id),
            state=state.state,
            queue=queued.queue,
            position=state.position,
            progress=queued.progress if state.state == JobState.RUNNING else 0.0,
            stage=queued.stage if not state.ended else None,
            attempts=queued.attempts,
            max_attempts=queued.max_attempts,
            model=spec.model,
            codec=spec.codec,
            image=spec.image.model_dump(),
            has_truth=spec.truth_key is not None,
            created_at=_when(spec.created_at),
            started_at=_when(queued.started_at),
            finished_at=_when(queued.finished_at),
            stage_seconds=StageSeconds(**seconds),
            compression=spec.compression,
            reference_job=spec.reference_job_id,
            error=state.error,
            notes=queued.notes,
            links=_links(base_url, spec.job_id, spec.reference_job_id),
        )

    def _view_of_result(
        self, result: JobResult, base_url: str, queued: QueuedJob | None = None
    ) -> JobStatus:
        return JobStatus(
            id=result.job_id,
            url=_job_url(base_url, result.job_id),
            state=result.state,
            queue=queued.queue if queued else None,
            progress=1.0 if result.state == JobState.FINISHED else 0.0,
            attempts=result.attempts,
            max_attempts=queued.max_attempts if queued else result.attempts,
            model=result.model,
            model_answers=result.model_answers,
            codec=result.codec,
            image=result.image.model_dump(),
            has_truth=result.has_truth,
            created_at=_when(result.created_at),
            started_at=_when(queued.started_at) if queued else None,
            finished_at=_when(result.finished_at),
            stage_seconds=StageSeconds(**result.stage_seconds),
            compression=result.compression,
            segmentation=result.segmentation,
            reference_job=result.reference_job_id,
            agreement=result.agreement,
            error=result.error,
            notes=result.notes,
            links=_links(base_url, result.job_id, result.reference_job_id),
        )


def check_input(model: ModelInfo | None, image: ImageInfo, what: str) -> None:
    """Refuse a volume the model cannot take, before anything is stored or queued."""
    refusal = model.refusal(image.shape, image.spacing) if model is not None else None
    if refusal is not None:
        raise InvalidVolumeError(f"{what}: {refusal}")


def _result(outcome: JobOutcome) -> JobResult:
    if outcome.result is None:  # find_job gives a result whenever RQ has not the job
        raise NotFoundError("the job has neither a queue entry nor a result")
    return outcome.result


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


def _links(base_url: str, job_id: str, reference_job_id: str | None = None) -> JobLinks:
    url = _job_url(base_url, job_id)
    reference = _job_url(base_url, reference_job_id) if reference_job_id else None
    return JobLinks(self=url, mask=f"{url}/mask", blob=f"{url}/blob", reference=reference)


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=timezone.utc) if epoch else None
