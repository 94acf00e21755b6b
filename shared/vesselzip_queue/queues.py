"""RQ glue shared by the gateway and the workers: connections, queues, enqueueing,
the state a client sees, cancelling, and reaping jobs whose worker died.

The RQ job id is the vesselzip job id; its only argument is the JobSpec as a dict
(JSON-serialised), so a job is plain data that any worker version can read."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import cast

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import BaseWorker, Worker

from vesselzip.jobs import JobOutcome, JobSpec, JobState, load_result
from vesselzip.settings import QUEUE_NAMES, Settings
from vesselzip.store import BlobStore
from vesselzip_queue.records import JobRecord, JobRecords, unreadable_reason

log = logging.getLogger("vesselzip.queues")

TASK = "vesselzip_worker.tasks.run_segmentation_job"
ON_FAILURE = "vesselzip_worker.tasks.on_job_failure"
# RQ's own data for a job only needs to outlive the job briefly: our record has the result.
RQ_RESULT_TTL_S = 3600
# The longest wait before a retry, however many attempts came before.
MAX_RETRY_BACKOFF_S = 300.0


def connect(url: str) -> Redis:
    """A Redis client for a redis://, rediss:// or unix:// URL."""
    return Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5)


def get_queue(name: str, connection: Redis) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues: {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue(spec: JobSpec, *, queue: str, connection: Redis, settings: Settings) -> None:
    """Create the job record and put the job on `queue`."""
    records = JobRecords(connection, ttl_s=settings.record_ttl_s)
    records.create(spec, queue=queue, max_attempts=settings.job_retries + 1)
    try:
        get_queue(queue, connection).enqueue_call(
            TASK,
            args=(spec.model_dump(mode="json"),),
            job_id=spec.job_id,
            timeout=settings.job_timeout_s,
            result_ttl=RQ_RESULT_TTL_S,
            retry=retry_policy(settings),
            on_failure=Callback(ON_FAILURE),
            description=f"segment {spec.image.filename or spec.job_id} with {spec.model}",
        )
    except BaseException:
        records.delete(spec.job_id)
        raise


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


MODELS_KEY = "vesselzip:models"


def announce_models(connection: Redis, names: list[str]) -> None:
    """Workers publish the segmenters they can load, so the gateway can refuse an
    unknown model name without importing the model code itself."""
    if names:
        connection.sadd(MODELS_KEY, *names)


def known_models(connection: Redis) -> set[str]:
    # Replies are bytes: this package's clients never set decode_responses.
    return {name.decode() for name in cast("set[bytes]", connection.smembers(MODELS_KEY))}


def fetch_rq_job(job_id: str, connection: Redis) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


_WAITING = (
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.SCHEDULED,
    JobStatus.DEFERRED,
    JobStatus.RATE_LIMITED,
    JobStatus.READY_TO_ENQUEUE,
)


def job_state(record: JobRecord, connection: Redis) -> JobOutcome:
    """Combine our record with RQ's view (RQ knows queue positions and retries)."""
    if record.result is not None:
        return JobOutcome(state=record.result.state, result=record.result, error=record.error)
    if JobState(record.state).ended:
        return JobOutcome(state=record.state, error=record.error)
    if record.unreadable:
        return JobOutcome(state=JobState.FAILED, error=record.unreadable)
    try:
        rq_job = fetch_rq_job(record.job_id, connection)
    except (ValueError, DeserializationError) as exc:  # written by another RQ, or damaged
        return JobOutcome(state=JobState.FAILED, error=unreadable_reason("its queue entry", exc))
    status = rq_job.get_status(refresh=False) if rq_job else None
    if status in _WAITING:
        position = rq_job.get_position() if rq_job and status == JobStatus.QUEUED else None
        return JobOutcome(state=JobState.QUEUED, position=position)
    if status == JobStatus.STARTED:
        return JobOutcome(state=JobState.RUNNING)
    if status in (JobStatus.STOPPED, JobStatus.CANCELED):
        return JobOutcome(state=JobState.CANCELLED)
    if status == JobStatus.FAILED:
        # The failure callback records the reason; this covers the moment before it lands.
        return JobOutcome(state=JobState.FAILED, error=record.error or "the job failed")
    # FINISHED without a terminal record, or RQ lost the job (its data expired or Redis
    # was flushed between the record and the queue).
    return JobOutcome(state=JobState.FAILED, error="the job ended without a result; post it again")


def find_job(
    job_id: str, connection: Redis, store: BlobStore
) -> tuple[JobOutcome, JobRecord | None]:
    """What is known of job `job_id`: its Redis record combined with RQ's view, else
    (after the record expired or Redis was flushed) its result in the store. The one
    place that answers it; NotFoundError when there is neither."""
    record = JobRecords(connection).get(job_id)
    if record is not None:
        return job_state(record, connection), record
    result = load_result(store, job_id)  # NotFoundError: "no job <id>"
    return JobOutcome(state=result.state, result=result, error=result.error), None


def cancel(job_id: str, connection: Redis) -> None:
    """Take a queued job (or one waiting for a retry) out of its queue. A running job
    stops at its next progress check (the record's cancel flag); one that makes none
    within seconds is ended by its worker, which exits (see WarmWorker)."""
    try:
        rq_job = fetch_rq_job(job_id, connection)
    except (ValueError, DeserializationError):  # unreadable: the worker fails it, cancelled
        return
    if rq_job is None:
        return
    if rq_job.get_status(refresh=False) == JobStatus.STARTED:
        return
    try:
        rq_job.delete(remove_from_queue=True)
    except NoSuchJobError:
        pass


def reap_abandoned_jobs(connection: Redis) -> None:
    """Hand jobs whose worker stopped sending heartbeats back to RQ: retried when they
    have attempts left, failed (with the reason in our record) otherwise.

    Workers do this too as maintenance; the gateway also does it so that a job never
    looks "running" forever when every worker is gone. RQ's maintenance lock keeps the
    two from handling the same job twice."""
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
        finally:
            queue.release_maintenance_lock()


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
