"""RQ glue shared by the gateway and the workers: connections, queues, enqueueing,
where a job stands, cancelling, and the upkeep RQ leaves to its users.

A job's state has one home while it lives, RQ's own job (status, times, `meta` for
stage, progress, attempts and notes, the return value for the result), and one after
it ended, its result JSON in the store. The RQ job id is the vesselzip job id; its only
argument is the JobSpec as a dict (JSON-serialised), so a job is plain data."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import BaseWorker, Worker

from vesselzip.errors import NotFoundError, StoreUnavailableError
from vesselzip.jobs import LOST, ImageInfo, JobOutcome, JobResult, JobSpec, JobState, load_result
from vesselzip.settings import QUEUE_NAMES, Settings
from vesselzip.store import BlobStore
from vesselzip_queue.stats import JobStats

log = logging.getLogger("vesselzip.queues")

TASK = "vesselzip_worker.tasks.run_segmentation_job"
ON_FAILURE = "vesselzip_worker.tasks.on_job_failure"
# The longest wait before a retry, however many attempts came before.
MAX_RETRY_BACKOFF_S = 300.0
# How long a cancelled job still reads "cancelled" before it is gone.
CANCELLED_KEPT_S = 24 * 3600


def connect(url: str) -> Redis:
    """A Redis client for a redis://, rediss:// or unix:// URL."""
    return Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5)


def get_queue(name: str, connection: Redis) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues: {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue(specs: list[JobSpec], *, queue: str, connection: Redis, settings: Settings) -> None:
    """Put the jobs on `queue`, in one pipeline (a sweep queues thousands). RQ keeps a
    job's data `record_ttl_s` after it ends (the result JSON in the store stays)."""
    rq_queue = get_queue(queue, connection)
    retry = retry_policy(settings)
    rq_queue.enqueue_many(
        [
            Queue.prepare_data(
                TASK,
                args=(spec.model_dump(mode="json"),),
                job_id=spec.job_id,
                timeout=settings.job_timeout_s,
                result_ttl=settings.record_ttl_s,
                failure_ttl=settings.record_ttl_s,
                retry=retry,
                on_failure=Callback(ON_FAILURE),
                meta={"attempts": 0, "max_attempts": settings.job_retries + 1, "notes": []},
                description=f"segment {spec.image.filename or spec.job_id} with {spec.model}",
            )
            for spec in specs
        ]
    )
    stats = JobStats(connection)
    stats.count("created", len(specs))
    stats.observe_stages(*(spec.stage_seconds for spec in specs))


def retry_policy(settings: Settings) -> Retry | None:
    """Retries after a backoff that doubles per attempt. RQ puts a job to retry in its
    scheduled registry; the workers' scheduler moves it back to its queue when due. RQ
    schedules in whole seconds, so a wait may come out up to a second shorter or longer."""
    if not settings.job_retries:
        return None
    waits = [
        math.ceil(min(settings.job_retry_backoff_s * 2**n, MAX_RETRY_BACKOFF_S))
        for n in range(settings.job_retries)
    ]
    return Retry(max=settings.job_retries, interval=waits)


def fetch_rq_job(job_id: str, connection: Redis) -> Job | None:
    """RQ's job, or None. Raises ValueError / DeserializationError for an entry this
    version of RQ cannot read."""
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


# -- where a job stands ---------------------------------------------------------------


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
    return outcome, _queued_job(rq_job, spec)


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


# -- ending jobs ----------------------------------------------------------------------


def cancel(job_id: str, connection: Redis) -> None:
    """Cancel a job that has not ended: the one way. RQ takes it out of its queue (or
    its retry schedule) and marks it canceled; a worker running it sees that at its
    next progress report and stops (the heartbeat thread ends it when it does not, see
    WarmWorker). It reads "cancelled" for CANCELLED_KEPT_S, then RQ's data is gone."""
    try:
        rq_job = fetch_rq_job(job_id, connection)
    except (ValueError, DeserializationError):  # unreadable: nothing of RQ's to stop
        delete(job_id, connection)
        return
    if rq_job is None:
        return
    try:
        rq_job.cancel()
    except InvalidJobOperation:  # cancelled already
        return
    connection.expire(rq_job.key, CANCELLED_KEPT_S)
    JobStats(connection).count(JobState.CANCELLED.value)


def delete(job_id: str, connection: Redis) -> None:
    """Remove what RQ keeps of a job (its hash, results and registry entries), for an
    ended job that is deleted, or one about to be queued again under its id."""
    try:
        rq_job = fetch_rq_job(job_id, connection)
    except (ValueError, DeserializationError):
        rq_job = None
    if rq_job is not None:
        rq_job.delete(remove_from_queue=True)
    # What RQ's delete cannot reach when it cannot read the job, or never removes.
    with connection.pipeline() as pipe:
        pipe.delete(Job.key_for(job_id), Result.get_key(job_id))
        for name in QUEUE_NAMES:
            queue = get_queue(name, connection)
            pipe.lrem(queue.key, 0, job_id)
            pipe.zrem(CanceledJobRegistry(name, connection=connection).key, job_id)
        pipe.execute()


def maintain(connection: Redis) -> None:
    """The upkeep of RQ's registries, for every queue, under RQ's maintenance lock:
    jobs whose worker stopped sending heartbeats go back to RQ (retried when they have
    attempts left, failed with the reason otherwise), expired entries of the finished
    and failed registries go, and so do canceled-registry entries whose job RQ no
    longer has (RQ itself never removes those).

    Workers do this too as maintenance; the gateway also does it so that a job never
    looks "running" forever when every worker is gone."""
    for name in QUEUE_NAMES:
        queue = get_queue(name, connection)
        if not queue.acquire_maintenance_lock():
            continue
        try:
            StartedJobRegistry(
                name,
                connection=connection,
                serializer=JSONSerializer,
                # Runs outside the main thread: signal-based timeouts are unavailable.
                death_penalty_class=TimerDeathPenalty,
            ).cleanup()
            FinishedJobRegistry(name, connection=connection, serializer=JSONSerializer).cleanup()
            FailedJobRegistry(name, connection=connection, serializer=JSONSerializer).cleanup()
            _prune_canceled(CanceledJobRegistry(name, connection=connection), connection)
        finally:
            queue.release_maintenance_lock()


def _prune_canceled(registry: CanceledJobRegistry, connection: Redis) -> None:
    job_ids = [i.decode() for i in cast("list[bytes]", connection.zrange(registry.key, 0, -1))]
    if not job_ids:
        return
    with connection.pipeline() as pipe:
        for job_id in job_ids:
            pipe.exists(Job.key_for(job_id))
        present = pipe.execute()
    gone = [job_id for job_id, there in zip(job_ids, present, strict=True) if not there]
    if gone:
        connection.zrem(registry.key, *gone)


# -- workers and queues ---------------------------------------------------------------


def live_workers(connection: Redis, settings: Settings) -> list[BaseWorker]:
    """Workers whose last heartbeat is recent (a killed worker's key lingers a while)."""
    now = datetime.now(timezone.utc)
    alive = []
    for worker in Worker.all(connection=connection, serializer=JSONSerializer):
        beat = worker.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=timezone.utc)
        if beat is not None and (now - beat).total_seconds() <= settings.worker_liveness_s:
            alive.append(worker)
    return alive


def queue_depths(connection: Redis) -> dict[str, int]:
    return {name: get_queue(name, connection).count for name in QUEUE_NAMES}


def running_counts(connection: Redis) -> dict[str, int]:
    return {
        name: StartedJobRegistry(name, connection=connection, serializer=JSONSerializer).count
        for name in QUEUE_NAMES
    }


def rq_keys_of(job_id: str, connection: Redis) -> dict[str, float]:
    """Everything RQ holds for a job, with how long it lasts in seconds (-1: for good):
    its own keys by their TTL, its entries in sorted sets (registries) by their score,
    its entries in lists (queues) as -1. What the soak bench and the tests measure."""
    found: dict[str, float] = {}
    now = time.time()
    for raw in connection.scan_iter(match="rq:*", count=1000):
        key = raw.decode()
        if job_id in key:
            found[key] = float(cast(int, connection.ttl(key)))
            continue
        kind = cast(bytes, connection.type(key)).decode()
        if kind == "zset":
            for _, score in connection.zscan_iter(key, match=f"*{job_id}*"):
                found[f"{key} entry"] = -1.0 if math.isinf(score) else max(0.0, score - now)
        elif kind == "list" and connection.lpos(key, job_id) is not None:
            found[f"{key} entry"] = -1.0
    return found
