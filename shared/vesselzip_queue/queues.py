"""RQ glue shared by the gateway and the workers: connections, queues, enqueueing,
cancelling, and the upkeep RQ leaves to its users (where a job stands is read in
`vesselzip_queue.state`).

A job's state has one home while it lives, RQ's own job (status, times, `meta` for
stage, progress, attempts and notes, the return value for the result), and one after
it ended, its result JSON in the store. The RQ job id is the vesselzip job id; its only
argument is the JobSpec as a dict (JSON-serialised), so a job is plain data."""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import cast

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import BaseWorker, Worker

from vesselzip.jobs import JobSpec, JobState
from vesselzip.settings import QUEUE_NAMES, Settings
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
    job's data `record_ttl_s` after it ends (the result JSON in the store stays).

    A job with a reference job (its mask is compared with that one's) that has not
    ended yet waits for it (RQ's dependencies; RQ queues the jobs without one first),
    and runs whether it finished or failed."""
    rq_queue = get_queue(queue, connection)
    retry = retry_policy(settings)
    unended = _unended(
        {spec.reference_job_id for spec in specs if spec.reference_job_id}, specs, connection
    )
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
                depends_on=(
                    Dependency(jobs=[spec.reference_job_id], allow_failure=True)
                    if spec.reference_job_id in unended
                    else None
                ),
            )
            for spec in specs
        ]
    )
    stats = JobStats(connection)
    stats.count("created", len(specs))
    stats.observe_stages(*(spec.stage_seconds for spec in specs))


_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}


def _unended(job_ids: set[str], batch: list[JobSpec], connection: Redis) -> set[str]:
    """Those of `job_ids` queued in this batch or held by RQ and not ended: the ones a
    job can wait for. (A dependency on a job RQ no longer has would never be met.)"""
    in_batch = {spec.job_id for spec in batch}
    others = sorted(job_ids - in_batch)
    with connection.pipeline(transaction=False) as pipe:
        for job_id in others:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
    waiting = {
        job_id
        for job_id, status in zip(others, statuses, strict=True)
        if status is not None and status.decode() not in _ENDED
    }
    return (job_ids & in_batch) | waiting


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
    _release_dependents(rq_job, connection)


def _release_dependents(rq_job: Job, connection: Redis) -> None:
    """Queue the jobs waiting for a cancelled job: RQ holds them back for good (it lets
    a dependent run after a failure, not after a cancellation). They run without it."""
    for raw in cast("set[bytes]", connection.smembers(rq_job.dependents_key)):
        try:
            dependent = fetch_rq_job(raw.decode(), connection)
        except (ValueError, DeserializationError):
            continue
        if dependent is None or dependent.get_status() != JobStatus.DEFERRED:
            continue
        DeferredJobRegistry(dependent.origin, connection=connection).remove(dependent)
        connection.delete(dependent.dependencies_key)
        dependent._dependency_ids = []  # nothing left to wait for
        dependent.set_status(JobStatus.QUEUED)  # enqueue_job leaves a deferred job be
        get_queue(dependent.origin, connection).enqueue_job(dependent)


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
