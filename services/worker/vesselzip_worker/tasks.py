"""The functions RQ calls: the job itself and its failure callback.

The job body is `vesselzip.jobs.run_job`; this module adds what only a queued job has:
attempts, progress and cancellation through RQ's job (vesselzip_queue.meta), the
result JSON, and the split between faults worth retrying and everything else.

Only a fault of the machine is retried: the store or Redis unreachable, an I/O or
memory error, a worker that died. Anything else the job raises is the input's (or the
code's) doing and would happen again with the same input: it fails at once, with its
reason."""

from __future__ import annotations

import logging
import time

import redis
from rq import get_current_job
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from vesselzip.errors import StoreUnavailableError, VesselzipError
from vesselzip.jobs import JobResult, JobSpec, JobState, delete_job_data, run_job, save_result
from vesselzip.settings import get_settings
from vesselzip.store import BlobStore, open_store
from vesselzip_queue.meta import JobMeta, Write, is_cancelled
from vesselzip_queue.state import job_spec, unreadable_reason
from vesselzip_queue.stats import JobStats

log = logging.getLogger("vesselzip.worker")

#: Faults of the machine, not of the input: worth another attempt after a backoff.
TRANSIENT_FAULTS: tuple[type[BaseException], ...] = (
    StoreUnavailableError,
    OSError,
    MemoryError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class JobCancelled(Exception):
    """The client deleted the job while it ran."""


class ProgressReporter:
    """Writes (stage, progress) into the job's meta, at most a few times a second, and
    stops the job when it was cancelled."""

    def __init__(self, meta: JobMeta, min_interval_s: float = 0.25):
        self.meta = meta
        self.min_interval_s = min_interval_s
        self.stage = ""
        self._last_write = 0.0

    def __call__(self, stage: str, progress: float) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self._last_write < self.min_interval_s:
            return
        self.stage = stage
        self._last_write = now
        try:
            written = self.meta.progress(stage, progress)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            log.warning("job %s: could not record progress (Redis unreachable)", self.meta.job.id)
            return
        if written == Write.CANCELLED:
            raise JobCancelled(self.meta.job.id)


def run_segmentation_job(spec: dict) -> dict:
    """Run one attempt; return the job's result (RQ keeps it as the return value).
    Raises only for a transient fault, which RQ retries."""
    from vesselzip.model import load_segmenter

    settings = get_settings()
    rq_job = get_current_job()
    if rq_job is None:
        raise RuntimeError("run_segmentation_job runs as an RQ job, inside a worker")
    try:
        job_spec_ = JobSpec.model_validate(spec)
    except ValueError as exc:  # queued by another version, or damaged: retrying cannot help
        return {"state": JobState.FAILED.value, "error": unreadable_reason("its spec", exc)}
    store = open_store(settings.store_location)
    meta = JobMeta(rq_job)
    if is_cancelled(rq_job) or meta.begin_attempt() == Write.CANCELLED:
        return _cancelled(store, job_spec_)

    reporter = ProgressReporter(meta)
    try:
        reporter("model_load", 0.0)
        t0 = time.perf_counter()
        segmenter = load_segmenter(
            job_spec_.model, checkpoint=settings.checkpoint, device=settings.device
        )
        model_load_s = time.perf_counter() - t0
        result = run_job(job_spec_, store, segmenter, reporter)
        result.stage_seconds["model_load"] = model_load_s
    except JobCancelled:
        return _cancelled(store, job_spec_)
    except TRANSIENT_FAULTS:
        raise
    except VesselzipError as exc:  # bad input, said in its own words
        result = JobResult.failed(job_spec_, f"{reporter.stage} failed: {exc}")
    except JobTimeoutException:  # the same input would time out again
        result = JobResult.failed(
            job_spec_,
            f"timed out after {rq_job.timeout} s during {reporter.stage} "
            "(VESSELZIP_JOB_TIMEOUT_S); not retried",
        )
    except Exception as exc:  # the same input would fail the same way again
        # One line for the operator; the traceback at debug level (a defect shows there).
        log.warning("job %s failed for good during %s: %r", rq_job.id, reporter.stage, exc)
        log.debug("job %s: the failure's traceback", rq_job.id, exc_info=True)
        result = JobResult.failed(
            job_spec_,
            f"{reporter.stage} failed: {type(exc).__name__}: {exc}; not retried "
            "(the same input would fail again)",
        )

    started = rq_job.started_at.timestamp() if rq_job.started_at else None
    queued = rq_job.enqueued_at.timestamp() if rq_job.enqueued_at else None
    if started and queued:
        result.stage_seconds["queue_wait"] = max(0.0, started - queued)
    result.attempts = max(meta.attempts, 1)
    result.notes = [*meta.notes, *result.notes]
    _store_result(store, result)
    # Deleted while the result was being written? The delete may have run before the
    # write: check after it, so nothing of a deleted job is left behind.
    if is_cancelled(rq_job):
        return _cancelled(store, job_spec_)
    _count_end(rq_job, result)
    return result.model_dump(mode="json")


def _cancelled(store: BlobStore, spec: JobSpec) -> dict:
    delete_job_data(store, spec.owned_keys, spec.job_id)
    return {"state": JobState.CANCELLED.value}


def _store_result(store: BlobStore, result: JobResult) -> None:
    """Write the result JSON to the store. A store that refuses it does not lose the
    outcome: RQ keeps it (the return value, the meta), with a note why the store has
    no copy."""
    try:
        save_result(store, result)
    except Exception as exc:  # a full, read-only or vanished store
        log.warning("job %s: its result could not be written to the store: %s", result.job_id, exc)
        detail = exc if isinstance(exc, VesselzipError) else f"{type(exc).__name__}: {exc}"
        result.notes = [*result.notes, f"the result could not be written to the store: {detail}"]


def _count_end(rq_job: Job, result: JobResult) -> None:
    stats = JobStats(rq_job.connection)
    stats.count(result.state.value)
    if result.state == JobState.FINISHED:
        # Upload and compress were observed when the job was created.
        stats.observe_stages(
            {k: v for k, v in result.stage_seconds.items() if k not in ("upload", "compress")}
        )


def on_job_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ calls this when an attempt raised (a transient fault) or its worker died
    (AbandonedJobError), before it decides whether to retry. Record why; store the
    failed result when no attempt is left. Never raises: what it cannot record it logs."""
    try:
        _record_failure(job, exc_type, exc_value)
    except Exception:
        log.exception("job %s: could not record its failure", job.id)


def _record_failure(job: Job, exc_type, exc_value) -> None:
    store = open_store(get_settings().store_location)
    try:
        spec = job_spec(job)
    except ValueError as exc:
        job.retries_left = 0  # RQ decides whether to retry after this, on this object
        JobMeta(job).failed(unreadable_reason("its spec", exc))
        return
    if exc_type is not None and issubclass(exc_type, DeserializationError):
        # RQ cannot decode the payload (not this version's JSON): the same bytes again
        # would fail again.
        job.retries_left = 0
        JobMeta(job).failed(unreadable_reason("its queue entry", exc_value or exc_type()))
        return
    if is_cancelled(job):  # a cancelled job is never run again
        job.retries_left = 0
        delete_job_data(store, spec.owned_keys, spec.job_id)
        return
    meta = JobMeta(job)
    attempt = f"attempt {max(meta.attempts, 1)}/{job.meta.get('max_attempts', 1)}"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        reason = f"the worker stopped responding during {meta.stage} ({attempt})"
    else:
        name = exc_type.__name__ if exc_type is not None else "error"
        reason = f"{meta.stage} failed: {name}: {exc_value} ({attempt})"
    if job.retries_left:
        meta.add_note(f"{reason}; retried")
        return
    result = JobResult.failed(spec, reason, attempts=meta.attempts, notes=meta.notes)
    _store_result(store, result)
    meta.failed(reason, note=None if result.notes == meta.notes else result.notes[-1])
    _count_end(job, result)
