"""Where a job stands, read from RQ's own job while RQ holds it (status, times, `meta`,
the return value) and from its result JSON in the store afterwards; for one job with
what it was queued with (the job routes), or for thousands at once (a sweep's cells)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from redis import Redis
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from vesselzip.errors import NotFoundError, StoreUnavailableError
from vesselzip.jobs import LOST, ImageInfo, JobOutcome, JobResult, JobSpec, JobState, load_result
from vesselzip.store import BlobStore
from vesselzip_queue.queues import fetch_rq_job


@dataclass
class QueuedJob:
    """A job while RQ holds it: its spec, its queue and what its attempts wrote."""

    job_id: str
    spec: JobSpec
    queue: str
    stage: str | None = None
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 1
    notes: list[str] = field(default_factory=list)
    queued_at: float | None = None  # the latest time it was put on its queue
    started_at: float | None = None  # the latest attempt's start
    finished_at: float | None = None


_WAITING = (
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.SCHEDULED,
    JobStatus.DEFERRED,
    JobStatus.RATE_LIMITED,
    JobStatus.READY_TO_ENQUEUE,
)


def unreadable_reason(what: str, exc: Exception) -> str:
    """Why a job failed that this version cannot read."""
    errors = getattr(exc, "errors", None)  # pydantic: say which field, not how many
    if callable(errors) and errors():
        first = errors()[0]
        detail = f"{'.'.join(map(str, first['loc'])) or 'value'}: {first['msg']}"
    else:
        detail = str(exc) or str(exc.__cause__ or "") or type(exc).__name__
    return (
        f"the job cannot be read by this version of vesselzip ({what}: {detail}); "
        "not retried, post it again"
    )


def job_spec(rq_job: Job) -> JobSpec:
    """The JobSpec a job was queued with (ValueError when this version cannot read it)."""
    try:
        args = rq_job.args
    except DeserializationError as exc:
        raise ValueError(str(exc)) from exc
    if len(args) != 1 or not isinstance(args[0], dict):
        raise ValueError("its argument is not one job spec")
    return JobSpec.model_validate(args[0])


def _readable_part_of_spec(job_id: str, data: Any, created_at: float | None) -> JobSpec:
    """A stand-in for a spec that does not validate: its owner (access checks) and the
    store keys it owns (DELETE removes them) when those can be read, nothing else."""
    data = data if isinstance(data, dict) else {}
    owner, owned = data.get("owner"), data.get("owned_keys")
    return JobSpec.model_construct(
        job_id=job_id,
        blob_key=str(data.get("blob_key") or ""),
        truth_key=None,
        model=str(data.get("model") or "unknown"),
        codec={},
        image=ImageInfo(shape=(0, 0, 0), dtype="unknown", spacing=(0.0, 0.0, 0.0)),
        owner=owner if isinstance(owner, str) else None,
        owned_keys=[k for k in owned if isinstance(k, str)] if isinstance(owned, list) else [],
        source_key=None,
        compression={},
        stage_seconds={},
        created_at=created_at or time.time(),
    )


def _spec_data(rq_job: Job) -> Any:
    try:
        return rq_job.args[0] if rq_job.args else None
    except (DeserializationError, TypeError, ValueError):
        return None


def _epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _queued_job(rq_job: Job, spec: JobSpec) -> QueuedJob:
    meta = rq_job.meta
    return QueuedJob(
        job_id=rq_job.id,
        spec=spec,
        queue=rq_job.origin,
        stage=meta.get("stage") or "queue_wait",
        progress=float(meta.get("progress", 0.0)),
        attempts=int(meta.get("attempts", 0)),
        max_attempts=int(meta.get("max_attempts", 1)),
        notes=list(meta.get("notes", [])),
        queued_at=_epoch(rq_job.enqueued_at),
        started_at=_epoch(rq_job.started_at),
        finished_at=_epoch(rq_job.ended_at),
    )


def _outcome_of_return_value(value: Any) -> JobOutcome:
    """A finished RQ job's return value: the job's result, or what the job said when
    it could not make one (cancelled, or a spec it could not read)."""
    if not isinstance(value, dict):
        return JobOutcome(state=JobState.FAILED, error="the job ended without a result")
    if value.get("state") == JobState.CANCELLED.value:
        return JobOutcome(state=JobState.CANCELLED)
    try:
        result = JobResult.model_validate(value)
    except ValueError:
        return JobOutcome(state=JobState.FAILED, error=str(value.get("error") or "no result"))
    return JobOutcome(state=result.state, result=result, error=result.error)


def _outcome_of_status(
    job_id: str,
    status: str | None,
    meta: dict[str, Any],
    store: BlobStore,
    return_value: Any = None,
) -> JobOutcome:
    """Where a job stands by RQ's status: the return value once it finished; for a
    failure that raised, its result in the store (the failure callback wrote it), else
    the reason in its meta."""
    if status in (JobStatus.CANCELED, JobStatus.STOPPED):
        return JobOutcome(state=JobState.CANCELLED)
    if status in _WAITING:
        return JobOutcome(state=JobState.QUEUED)
    if status == JobStatus.STARTED:
        return JobOutcome(state=JobState.RUNNING)
    if status == JobStatus.FINISHED and return_value is not None:
        return _outcome_of_return_value(return_value)
    try:
        result = load_result(store, job_id)
        return JobOutcome(state=result.state, result=result, error=result.error)
    except (NotFoundError, StoreUnavailableError):  # not written: the meta has the reason
        error = meta.get("error") or "the job ended without a result; post it again"
        return JobOutcome(state=JobState.FAILED, error=error)


def job_outcome(rq_job: Job, store: BlobStore) -> tuple[JobOutcome, QueuedJob]:
    """Where a job RQ holds stands, with what it was queued with and its position."""
    try:
        spec = job_spec(rq_job)
    except ValueError as exc:  # queued by another version, or damaged
        failed = JobOutcome(state=JobState.FAILED, error=unreadable_reason("its spec", exc))
        stand_in = _readable_part_of_spec(rq_job.id, _spec_data(rq_job), _epoch(rq_job.created_at))
        return failed, _queued_job(rq_job, stand_in)
    status = rq_job.get_status(refresh=False)
    value = rq_job.return_value() if status == JobStatus.FINISHED else None
    outcome = _outcome_of_status(rq_job.id, status, rq_job.meta, store, value)
    if status == JobStatus.QUEUED:
        outcome.position = rq_job.get_position()
    queued = _queued_job(rq_job, spec)
    if status == JobStatus.DEFERRED:  # held back until its reference job ended
        queued.stage = "waiting_for_reference"
    return outcome, queued


def find_job(
    job_id: str, connection: Redis, store: BlobStore
) -> tuple[JobOutcome, QueuedJob | None]:
    """What is known of job `job_id`: RQ's job while RQ holds it, else (after RQ's data
    expired or Redis was flushed) its result in the store. NotFoundError when neither."""
    try:
        rq_job = fetch_rq_job(job_id, connection)
    except (ValueError, DeserializationError) as exc:  # written by another RQ, or damaged
        failed = JobOutcome(state=JobState.FAILED, error=unreadable_reason("its queue entry", exc))
        return failed, QueuedJob(job_id, _readable_part_of_spec(job_id, None, None), queue="")
    if rq_job is not None:
        return job_outcome(rq_job, store)
    result = load_result(store, job_id)  # NotFoundError: "no job <id>"
    return JobOutcome(state=result.state, result=result, error=result.error), None


def find_jobs(job_ids: list[str], connection: Redis, store: BlobStore) -> dict[str, JobOutcome]:
    """find_job's outcome for many jobs (a sweep's cells) in two round trips: each job's
    status and meta (not its whole hash), then the latest result of the finished ones;
    the store only for the rest. A job found nowhere is LOST."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), "status", "meta")
        fields = cast("list[list[bytes | None]]", pipe.execute())
    statuses = {
        job_id: (raw_status.decode() if raw_status else None, raw_meta)
        for job_id, (raw_status, raw_meta) in zip(job_ids, fields, strict=True)
    }
    finished = [job_id for job_id, (status, _) in statuses.items() if status == "finished"]
    with connection.pipeline(transaction=False) as pipe:
        for job_id in finished:
            pipe.xrevrange(Result.get_key(job_id), "+", "-", count=1)
        latest = cast("list[list[tuple[bytes, dict]]]", pipe.execute())
    values = {}
    for job_id, entries in zip(finished, latest, strict=True):
        if entries:
            result_id, payload = entries[0]
            restored = Result.restore(
                job_id, result_id.decode(), payload, connection, JSONSerializer
            )
            values[job_id] = restored.return_value
    outcomes = {}
    for job_id, (status, raw_meta) in statuses.items():
        if status is None:  # RQ has it not (any more)
            outcomes[job_id] = _find_or_lost(job_id, connection, store)
        elif status not in _KNOWN_STATUSES:  # written by another RQ, or damaged
            outcomes[job_id] = _find_or_lost(job_id, connection, store)
        else:
            meta = _loads_meta(raw_meta)
            outcomes[job_id] = _outcome_of_status(job_id, status, meta, store, values.get(job_id))
    return outcomes


_KNOWN_STATUSES = {status.value for status in JobStatus}


def _loads_meta(raw: bytes | None) -> dict[str, Any]:
    try:
        meta = JSONSerializer.loads(raw) if raw else {}
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _find_or_lost(job_id: str, connection: Redis, store: BlobStore) -> JobOutcome:
    try:
        outcome, _ = find_job(job_id, connection, store)
    except NotFoundError:  # neither RQ nor the store has it
        return JobOutcome(state=LOST, error="the job is gone (Redis was reset?)")
    return outcome


def recent_jobs(
    connection: Redis, owner: str | None, *, everyone: bool, limit: int = 50
) -> list[QueuedJob]:
    """The jobs RQ still holds (waiting, running, or ended within its record TTL) that
    `owner` made (everyone's with `everyone`), newest first: what "recent" means here."""
    from rq import Queue
    from rq.registry import (
        DeferredJobRegistry,
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    from vesselzip.settings import QUEUE_NAMES

    job_ids: set[str] = set()
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection, serializer=JSONSerializer)
        job_ids.update(queue.get_job_ids())
        for registry in (
            StartedJobRegistry,
            FinishedJobRegistry,
            FailedJobRegistry,
            DeferredJobRegistry,
            ScheduledJobRegistry,
        ):
            job_ids.update(registry(name, connection=connection).get_job_ids())
    found = []
    for rq_job in Job.fetch_many(sorted(job_ids), connection=connection, serializer=JSONSerializer):
        if rq_job is None:
            continue
        try:
            spec = job_spec(rq_job)
        except ValueError:
            continue
        if everyone or spec.owner == owner:
            found.append(_queued_job(rq_job, spec))
    found.sort(key=lambda job: job.spec.created_at, reverse=True)
    return found[:limit]
