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

Retries wait (VESSELZIP_JOB_RETRY_BACKOFF_S): RQ parks them in its scheduled registry
and the workers run RQ's scheduler, a small process forked from one of them, which
puts them back in their queue when due."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import redis
from rq import Queue, worker_registration
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, WorkerStatus

from vesselzip.jobs import delete_job_data
from vesselzip.settings import Settings, get_settings
from vesselzip.store import open_store
from vesselzip_queue.queues import RQ_RESULT_TTL_S, announce_models, connect, get_queue
from vesselzip_queue.records import JobRecords, unreadable_reason
from vesselzip_worker.tasks import fail_unreadable_job

log = logging.getLogger("vesselzip.worker")

#: Exit status of a worker that exited to end a cancelled job (EX_TEMPFAIL: start again).
CANCEL_EXIT_CODE = 75
#: Seconds a cancelled job has to stop by itself before its worker exits.
CANCEL_GRACE_S = 3.0


class WorkerScheduler(RQScheduler):
    """RQ's scheduler, which also stops when its worker died without stopping it (SIGKILL,
    the OOM killer) instead of outliving it with the scheduler lock."""

    def start(self):
        self._worker_pid = os.getpid()
        return super().start()

    def heartbeat(self):
        if os.getppid() != self._worker_pid:
            self.log.warning("scheduler: worker %d is gone; stopping", self._worker_pid)
            self.request_stop()
        super().heartbeat()


class WarmWorker(SimpleWorker):
    """Executes jobs in-process; a heartbeat thread keeps the worker and its job alive
    and ends a cancelled job that does not stop."""

    def __init__(
        self,
        *args,
        heartbeat_s: float = 5.0,
        liveness_s: int = 20,
        model_names: list[str] | None = None,
        cancel_grace_s: float = CANCEL_GRACE_S,
        **kwargs,
    ):
        self.heartbeat_s = heartbeat_s
        self.liveness_s = liveness_s
        self.model_names = model_names or []
        self.cancel_grace_s = cancel_grace_s
        # RQ beats once per dequeue wait of (worker_ttl - 15) s; make that one beat.
        kwargs.setdefault("worker_ttl", max(1, int(round(heartbeat_s))) + 15)
        super().__init__(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:  # from the main loop, between jobs
            self._register_again_if_lost()
            self._schedule_if_nobody_does()

    def _schedule_if_nobody_does(self) -> None:
        """Start the scheduler when the lock is free (its worker died), at each beat
        rather than at RQ's maintenance only (30 s or more), so that retries whose
        backoff has passed do not wait for it."""
        scheduler = self.scheduler
        if not isinstance(scheduler, WorkerScheduler):  # burst mode, or not started yet
            return
        if scheduler._process is None or not scheduler._process.is_alive():
            scheduler.acquire_locks(auto_start=True)

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
        announce_models(self.connection, self.model_names)

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
        records = JobRecords(self.connection)
        next_beat = time.monotonic() + self.heartbeat_s
        end_at: float | None = None
        while not done.wait(min(1.0, max(0.0, next_beat - time.monotonic()))):
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_s
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # a Redis blip must not end the job; the next beat retries
                    log.warning("heartbeat for job %s failed", job.id, exc_info=True)
            if end_at is None:
                try:
                    if records.cancel_requested(job.id):
                        end_at = now + self.cancel_grace_s
                        log.info("job %s cancelled; waiting for it to stop", job.id)
                except redis.exceptions.RedisError:
                    pass
            elif now >= end_at and not done.is_set():
                self._end_cancelled_job(job, execution)

    def _end_cancelled_job(self, job: Job, execution) -> None:
        """Clean up what the cancelled job leaves (as the worker's own cancel path does),
        then exit the process: the only way to stop a call that never returns to Python
        code. Runs on the heartbeat thread while the job's call goes on."""
        log.error(
            "job %s is still running %.0f s after it was cancelled (a long call without "
            "progress reports); worker %s exits with status %d to stop it",
            job.id,
            self.cancel_grace_s,
            self.name,
            CANCEL_EXIT_CODE,
        )
        for what, step in (
            ("its queue entry", lambda: self._cancel_rq_job(job, execution)),
            ("its stored data", lambda: self._delete_job_data(job.id)),
            ("the scheduler", self._stop_scheduler_now),
            ("this worker's registration", self.register_death),
        ):
            try:
                step()
            except Exception:
                log.warning("job %s: could not clean up %s", job.id, what, exc_info=True)
        logging.shutdown()  # flush the log
        os._exit(CANCEL_EXIT_CODE)

    def _cancel_rq_job(self, job: Job, execution) -> None:
        """Out of the started registry and marked canceled: never reaped, never retried."""
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()
        job.cancel()

    def _delete_job_data(self, job_id: str) -> None:
        record = JobRecords(self.connection).get(job_id)
        keys = list(record.spec.owned_keys) if record is not None else []
        delete_job_data(open_store(get_settings().store_dir), keys, job_id)

    def _stop_scheduler_now(self) -> None:
        """Stop the scheduler process (it releases its lock, for the next worker's)."""
        process = self.scheduler._process if self.scheduler is not None else None
        if process is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
            process.join(timeout=5)

    def _start_scheduler(self, burst=False, logging_level="INFO", *args, **kwargs) -> None:
        if burst:  # RQ's own: enqueues what is due once, starts no process
            super()._start_scheduler(burst, logging_level, *args, **kwargs)
            return
        self.scheduler = WorkerScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer,
        )
        # One scheduler per queue runs (a lock in Redis); the other workers try again
        # between jobs (_schedule_if_nobody_does), so one takes over when it is gone.
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            self.scheduler.start()

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """RQ's, except that a job whose queue entry RQ cannot load (written by another
        RQ version, or damaged) fails with the reason instead of ending the worker."""
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except (ValueError, KeyError, TypeError, DeserializationError) as exc:
                job_id = getattr(exc, "job_id", None)  # set by RQ when a fetch failed
                if job_id is None:
                    raise
                self._fail_unloadable_job(job_id, getattr(exc, "queue", None), exc)

    def _fail_unloadable_job(self, job_id: str, queue: Queue | None, exc: Exception) -> None:
        reason = unreadable_reason("its queue entry", exc)
        log.error("job %s: %s", job_id, reason)
        records = JobRecords(self.connection, ttl_s=get_settings().record_ttl_s)
        fail_unreadable_job(records, job_id, reason)
        with self.connection.pipeline() as pipe:
            if queue is not None:  # a single-queue worker dequeues through this list
                pipe.lrem(queue.intermediate_queue_key, 1, job_id)
            pipe.expire(Job.key_for(job_id), RQ_RESULT_TTL_S)  # kept a while to look at
            pipe.execute()


def run_worker(
    settings: Settings,
    queue_names: list[str] | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
    warm: bool = True,
) -> bool:
    """Run one worker until stopped (SIGTERM: finish the current job, then exit).
    Returns whether it ran any job."""
    if not settings.redis_url:
        raise ValueError("a worker needs VESSELZIP_REDIS_URL (the gateway's Redis)")
    connection = connect(settings.redis_url)
    queues = [get_queue(q, connection) for q in (queue_names or settings.worker_queue_list)]
    if warm:
        warm_up(settings)
    from vesselzip.model import available_segmenters

    model_names = available_segmenters()
    announce_models(connection, model_names)
    worker = WarmWorker(
        queues,
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        heartbeat_s=settings.worker_heartbeat_s,
        liveness_s=settings.worker_liveness_s,
        model_names=model_names,
        # The gateway reaps dead workers' jobs every reaper_interval_s; workers also
        # do, less often, for deployments where no gateway is running.
        maintenance_interval=max(30, 2 * settings.worker_liveness_s),
    )
    # The scheduler moves retries back to their queue once their backoff has passed.
    return worker.work(burst=burst, logging_level="INFO", with_scheduler=True)


def warm_up(settings: Settings) -> None:
    """Load the default model before taking jobs, so the first job does not pay for it."""
    from vesselzip.model import load_segmenter

    try:
        load_segmenter(
            settings.default_model, checkpoint=settings.checkpoint, device=settings.device
        )
        log.info("model %s loaded", settings.default_model)
    except Exception as exc:  # jobs that need it will fail with the reason
        log.warning("could not preload model %s: %s", settings.default_model, exc)
