"""The functions RQ calls: the job itself and its failure callback.

The job body is `vesselzip.jobs.run_job`; this module adds what only a queued job has:
attempts, progress and cancellation through the Redis record, the result JSON, and
the split between faults worth retrying and bad input that is not."""

from __future__ import annotations

import logging
import time

import redis
from rq import get_current_job
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.timeouts import JobTimeoutException

from vesselzip.errors import StoreUnavailableError, VesselzipError
from vesselzip.jobs import JobResult, JobSpec, delete_job_data, run_job, save_result
from vesselzip.settings import get_settings
from vesselzip.store import open_store
from vesselzip_queue.records import JobRecords, unreadable_reason

log = logging.getLogger("vesselzip.worker")


class JobCancelled(Exception):
    """The client deleted the job while it ran."""


class ProgressReporter:
    """Writes (stage, progress) to the job record, at most a few times a second, and
    stops the job when its record says it was cancelled."""

    def __init__(self, records: JobRecords, job_id: str, min_interval_s: float = 0.25):
        self.records = records
        self.job_id = job_id
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
            still_wanted = self.records.set_progress(self.job_id, stage, progress)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            log.warning("job %s: could not record progress (Redis unreachable)", self.job_id)
            return
        if not still_wanted:
            raise JobCancelled(self.job_id)


def run_segmentation_job(spec: dict) -> dict:
    """Run one job; RQ retries it when this raises (transient faults only)."""
    from vesselzip.model import load_segmenter

    settings = get_settings()
    rq_job = get_current_job()
    if rq_job is None:
        raise RuntimeError("run_segmentation_job runs as an RQ job, inside a worker")
    records = JobRecords(rq_job.connection, ttl_s=settings.record_ttl_s)
    try:
        job_spec = JobSpec.model_validate(spec)
    except ValueError as exc:  # queued by another version, or damaged: retrying cannot help
        fail_unreadable_job(records, rq_job.id, unreadable_reason("its spec", exc))
        return {"state": "failed"}
    store = open_store(settings.store_dir)
    record = records.begin_attempt(job_spec.job_id)
    if record is None:  # cancelled while it waited
        delete_job_data(store, job_spec.owned_keys, job_spec.job_id)
        return {"state": "cancelled"}

    reporter = ProgressReporter(records, job_spec.job_id)
    try:
        reporter("model_load", 0.0)
        t0 = time.perf_counter()
        segmenter = load_segmenter(
            job_spec.model, checkpoint=settings.checkpoint, device=settings.device
        )
        model_load_s = time.perf_counter() - t0
        result = run_job(job_spec, store, segmenter, reporter)
        result.stage_seconds["model_load"] = model_load_s
    except JobCancelled:
        delete_job_data(store, job_spec.owned_keys, job_spec.job_id)
        return {"state": "cancelled"}
    except StoreUnavailableError:  # the store's fault, not the input's: worth retrying
        raise
    except VesselzipError as exc:  # bad input: retrying cannot help
        result = JobResult.failed(job_spec, f"{reporter.stage} failed: {exc}")
    except JobTimeoutException:  # a deterministic job would time out again
        result = JobResult.failed(
            job_spec,
            f"timed out after {rq_job.timeout} s during {reporter.stage} "
            "(VESSELZIP_JOB_TIMEOUT_S); not retried",
        )

    if record.started_at and record.queued_at:
        result.stage_seconds["queue_wait"] = max(0.0, record.started_at - record.queued_at)
    result.attempts = record.attempts
    result.notes = record.notes
    if not record_result(records, result, settings.store_dir):  # deleted while it ran
        delete_job_data(store, job_spec.owned_keys, job_spec.job_id)
        return {"state": "cancelled"}
    return {"state": result.state}


def record_result(records: JobRecords, result: JobResult, store_dir) -> bool:
    """Write the result JSON to the store, then record the outcome in Redis. A store
    that refuses the JSON does not lose the outcome: Redis gets it, with a note why the
    store has no copy. Returns False when the job was cancelled or deleted meanwhile."""
    try:
        save_result(open_store(store_dir), result)
    except Exception as exc:  # a full, read-only or vanished store
        log.warning("job %s: its result could not be written to the store: %s", result.job_id, exc)
        detail = exc if isinstance(exc, VesselzipError) else f"{type(exc).__name__}: {exc}"
        result.notes = [*result.notes, f"the result could not be written to the store: {detail}"]
    return records.finish(result)


def fail_unreadable_job(records: JobRecords, job_id: str, reason: str) -> None:
    """Fail a job this version cannot read, not to be retried: with a result (also in
    the store) when its record can be read, in the record alone when it cannot."""
    record = records.get(job_id)
    if record is None or record.unreadable is not None:
        records.fail(job_id, reason)
        return
    result = JobResult.failed(record.spec, reason, attempts=record.attempts, notes=record.notes)
    record_result(records, result, get_settings().store_dir)


def on_job_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ calls this when an attempt raised or its worker died (AbandonedJobError),
    before it decides whether to retry. Record why; finalise when no attempt is left.
    Never raises: what it cannot record it logs."""
    try:
        _record_failure(job, connection, exc_type, exc_value)
    except Exception:
        log.exception("job %s: could not record its failure", job.id)


def _record_failure(job, connection, exc_type, exc_value) -> None:
    settings = get_settings()
    records = JobRecords(connection, ttl_s=settings.record_ttl_s)
    record = records.get(job.id)
    if record is None:
        return
    unreadable = record.unreadable
    if unreadable is None and exc_type is not None and issubclass(exc_type, DeserializationError):
        # RQ cannot decode the payload (not this version's JSON): the same bytes again
        # would fail again.
        unreadable = unreadable_reason("its queue entry", exc_value or exc_type())
    if unreadable is not None:
        job.retries_left = 0  # RQ decides whether to retry after this, on this object
        fail_unreadable_job(records, job.id, unreadable)
        return
    if record.state.ended:
        return
    stage = record.stage or "queue_wait"
    attempt = f"attempt {max(record.attempts, 1)}/{record.max_attempts}"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        reason = f"the worker stopped responding during {stage} ({attempt})"
    else:
        name = exc_type.__name__ if exc_type is not None else "error"
        reason = f"{stage} failed: {name}: {exc_value} ({attempt})"
    if job.retries_left:
        records.requeued(job.id, f"{reason}; retried")
        return
    result = JobResult.failed(record.spec, reason, attempts=record.attempts, notes=record.notes)
    record_result(records, result, settings.store_dir)
