"""The worker process: RQ's loop with the model kept warm.

RQ's default worker forks a child per job: the child would load the model again each
time, and CUDA cannot be initialised in a forked child. `WarmWorker` runs each job in
its own process (like rq.SimpleWorker) and sends heartbeats from a thread while a job
runs, so a worker that dies mid-job is noticed within `worker_liveness_s` seconds and
its job retried or failed, never left "running"."""

from __future__ import annotations

import logging
import threading

from rq import Queue, worker_registration
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, WorkerStatus
from vesselzip.settings import Settings
from vesselzip_worker.queues import announce_models, connect, get_queue

log = logging.getLogger("vesselzip.worker")


class WarmWorker(SimpleWorker):
    """Executes jobs in-process; a heartbeat thread keeps the worker and its job alive."""

    def __init__(
        self,
        *args,
        heartbeat_s: float = 5.0,
        liveness_s: int = 20,
        model_names: list[str] | None = None,
        **kwargs,
    ):
        self.heartbeat_s = heartbeat_s
        self.liveness_s = liveness_s
        self.model_names = model_names or []
        # RQ beats once per dequeue wait of (worker_ttl - 15) s; make that one beat.
        kwargs.setdefault("worker_ttl", max(1, int(round(heartbeat_s))) + 15)
        super().__init__(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:
            self._register_again_if_lost()

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
        while not done.wait(self.heartbeat_s):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a Redis blip must not end the job; the next beat retries
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)


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
    return worker.work(burst=burst, logging_level="INFO")


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
