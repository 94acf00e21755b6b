"""The worker process: RQ's loop with the model kept warm.

RQ's default worker forks a child per job: the child would load the model again each
time, and CUDA cannot be initialised in a forked child. `WarmWorker` runs each job in
its own process (like rq.SimpleWorker) and sends heartbeats from a thread while a job
runs, so a worker that dies mid-job is noticed within `worker_liveness_s` seconds and
its job retried or failed, never left "running".

The same thread ends cancelled jobs. A cancelled job stops at its next progress report
(tasks.ProgressReporter); one still running `cancel_grace_s` later is inside a long
call that reports nothing (a filter over a huge volume), and a thread cannot be stopped
from outside: the worker then cleans up after the job and exits with CANCEL_EXIT_CODE,
and its supervisor (`vesselzip serve`, compose's restart policy) starts a fresh one.

Retries wait (VESSELZIP_JOB_RETRY_BACKOFF_S): RQ parks them in its scheduled registry,
and a thread of each worker (RetryScheduler) puts them back in their queue when due,
one worker at a time."""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from rq import Queue, worker_registration
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, WorkerStatus

from vesselzip.jobs import delete_job_data
from vesselzip.model_info import ModelInfo
from vesselzip.settings import Settings, get_settings
from vesselzip.store import open_store
from vesselzip_queue.catalog import announce_models, renew_models
from vesselzip_queue.meta import is_cancelled
from vesselzip_queue.queues import connect, get_queue
from vesselzip_queue.state import job_spec

log = logging.getLogger("vesselzip.worker")

#: Exit status of a worker that exited to end a cancelled job (EX_TEMPFAIL: start again).
CANCEL_EXIT_CODE = 75
#: Seconds a cancelled job has to stop by itself before its worker exits.
CANCEL_GRACE_S = 3.0


class RetryScheduler:
    """Moves jobs whose retry backoff has passed back to their queue, with RQ's
    scheduler (its lock per queue, its `enqueue_scheduled_jobs`), run on a thread of
    the worker instead of a forked process: it stops with its worker, and its lock
    lives `lock_ttl_s`, so another worker takes over within that after a SIGKILL."""

    def __init__(self, queues: list[Queue], connection: redis.Redis, owner: str, lock_ttl_s: int):
        self.scheduler = RQScheduler(queues, connection=connection, serializer=JSONSerializer)
        self.connection = connection
        self.queue_names = [q.name for q in queues]
        self.owner = owner
        self.lock_ttl_s = lock_ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retry-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for name in self.queue_names:
            release_lock(self.connection, RQScheduler.get_locking_key(name), self.owner)

    def run_once(self) -> list[str]:
        """Take (or keep) the lock of each queue nobody else schedules, and enqueue the
        jobs due there. Returns the queues this worker schedules now."""
        held = [
            name
            for name in self.queue_names
            if acquire_or_refresh_lock(
                self.connection, RQScheduler.get_locking_key(name), self.owner, self.lock_ttl_s
            )
            != "taken"
        ]
        if held:
            self.scheduler.prepare_registries(held)
            self.scheduler.enqueue_scheduled_jobs()
        return held

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.run_once()
            except redis.exceptions.RedisError as exc:  # a Redis blip: next second
                log.warning("retry scheduler: %s", exc)


class WarmWorker(SimpleWorker):
    """Executes jobs in-process; a heartbeat thread keeps the worker and its job alive
    and ends a cancelled job that does not stop."""

    def __init__(
        self,
        *args,
        heartbeat_s: float = 5.0,
        liveness_s: int = 20,
        models: list[ModelInfo] | None = None,
        cancel_grace_s: float = CANCEL_GRACE_S,
        **kwargs,
    ):
        self.heartbeat_s = heartbeat_s
        self.liveness_s = liveness_s
        self.models = models or []
        self.cancel_grace_s = cancel_grace_s
        # RQ beats once per dequeue wait of (worker_ttl - 15) s; make that one beat.
        kwargs.setdefault("worker_ttl", max(1, int(round(heartbeat_s))) + 15)
        super().__init__(*args, **kwargs)

    @property
    def models_ttl_s(self) -> int:
        return self.worker_ttl + 60

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:  # from the main loop, between jobs
            self._register_again_if_lost()
            renew_models(self.connection, self.name, self.models, self.models_ttl_s)

    def _register_again_if_lost(self) -> None:
        """After a Redis flush (or a restart without persistence) the worker's hash and
        its entry in the worker set are gone; write them again so that readiness checks
        and reapers keep seeing this worker."""
        if self.connection.hexists(self.key, "birth") or self.birth_date is None:
            return
        log.warning("worker %s: registration lost (Redis flushed?); registering again", self.name)
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()
        announce_models(self.connection, self.name, self.models, self.models_ttl_s)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # How long the job's entry in the started registry lives without a heartbeat:
        # short, so that a dead worker's job is reaped soon (the job timeout is separate).
        return self.liveness_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()
        beats = threading.Thread(
            target=self._beat_until, args=(done, job, execution), name="heartbeat", daemon=True
        )
        beats.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beats.join()
        self.set_state(WorkerStatus.IDLE)

    def _beat_until(self, done: threading.Event, job: Job, execution) -> None:
        """Beat every heartbeat_s; check every second (at most) whether the job was
        cancelled, and end it if it is still running cancel_grace_s after that."""
        next_beat = time.monotonic() + self.heartbeat_s
        end_at: float | None = None
        while not done.wait(min(1.0, max(0.0, next_beat - time.monotonic()))):
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_s
                try:
                    self.maintain_heartbeats(job, execution)
                    renew_models(self.connection, self.name, self.models, self.models_ttl_s)
                except Exception:  # a Redis blip must not end the job; the next beat retries
                    log.warning("heartbeat for job %s failed", job.id, exc_info=True)
            if end_at is None:
                try:
                    if is_cancelled(job):
                        end_at = now + self.cancel_grace_s
                        log.info("job %s cancelled; waiting for it to stop", job.id)
                except redis.exceptions.RedisError:
                    pass
            elif now >= end_at and not done.is_set():
                self._end_cancelled_job(job, execution)

    def _end_cancelled_job(self, job: Job, execution) -> None:
        """Clean up what the cancelled job leaves, then exit the process: the only way
        to stop a call that never returns to Python code. Runs on the heartbeat thread
        while the job's call goes on."""
        log.error(
            "job %s is still running %.0f s after it was cancelled (a long call without "
            "progress reports); worker %s exits with status %d to stop it",
            job.id,
            self.cancel_grace_s,
            self.name,
            CANCEL_EXIT_CODE,
        )
        for what, step in (
            ("its execution", lambda: self._end_execution(job, execution)),
            ("its stored data", lambda: self._delete_job_data(job)),
            ("this worker's registration", self.register_death),
        ):
            try:
                step()
            except Exception:
                log.warning("job %s: could not clean up %s", job.id, what, exc_info=True)
        logging.shutdown()  # flush the log
        os._exit(CANCEL_EXIT_CODE)

    def _end_execution(self, job: Job, execution) -> None:
        """Out of the started registry: never reaped, never retried (RQ's cancel has
        already taken it out of its queue and marked it canceled)."""
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()

    def _delete_job_data(self, job: Job) -> None:
        spec = job_spec(job)
        delete_job_data(open_store(get_settings().store_location), spec.owned_keys, spec.job_id)


def run_worker(
    settings: Settings,
    queue_names: list[str] | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
) -> bool:
    """Run one worker until stopped (SIGTERM: finish the current job, then exit).
    Returns whether it ran any job."""
    if not settings.redis_url:
        raise ValueError("a worker needs VESSELZIP_REDIS_URL (the gateway's Redis)")
    connection = connect(settings.redis_url)
    queues = [get_queue(q, connection) for q in (queue_names or settings.worker_queue_list)]
    models = offered_models(settings)
    worker = WarmWorker(
        queues,
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        heartbeat_s=settings.worker_heartbeat_s,
        liveness_s=settings.worker_liveness_s,
        models=models,
        # The gateway reaps dead workers' jobs every reaper_interval_s; workers also
        # do, less often, for deployments where no gateway is running.
        maintenance_interval=max(30, 2 * settings.worker_liveness_s),
    )
    announce_models(connection, worker.name, models, worker.models_ttl_s)
    scheduler = RetryScheduler(
        queues, connection, owner=worker.name, lock_ttl_s=settings.worker_liveness_s
    )
    if burst:  # what is due now, then the queues' jobs: no thread
        scheduler.run_once()
        return worker.work(burst=True, logging_level="INFO")
    scheduler.start()
    try:
        return worker.work(logging_level="INFO")
    finally:
        scheduler.stop()


def offered_models(settings: Settings) -> list[ModelInfo]:
    """Load every model this worker can (the default first), so that the first job does
    not pay for it and the gateway is told only what really loads."""
    from vesselzip.model import loadable_models

    infos = loadable_models(checkpoint=settings.checkpoint, device=settings.device)
    log.info("models offered: %s", ", ".join(i.name for i in infos) or "none")
    return infos
