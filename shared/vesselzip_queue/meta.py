"""What a job's attempts write into RQ's own job, in its `meta`: the stage and progress
of the running attempt, how many attempts ran, the notes earlier attempts left and the
reason of a failure. RQ keeps the rest (status, queue, times, return value).

Every write checks first, in one Lua call, that the job is still running and not
cancelled: a worker never brings back a job that was deleted under it, and it learns
of a cancel at its next progress report."""

from __future__ import annotations

from enum import Enum
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry

# KEYS: the job's hash, its queue's canceled registry. ARGV: the job id, the meta JSON.
_GUARDED_WRITE = f"""
if redis.call('zscore', KEYS[2], ARGV[1]) then return 0 end
if redis.call('hget', KEYS[1], 'status') ~= '{JobStatus.STARTED.value}' then return -1 end
redis.call('hset', KEYS[1], 'meta', ARGV[2])
return 1
"""


class Write(Enum):
    WRITTEN = 1
    CANCELLED = 0  # the job was cancelled: stop
    GONE = -1  # not running any more, or its data is gone (Redis flushed): nothing written


def canceled_registry(job: Job) -> CanceledJobRegistry:
    return CanceledJobRegistry(job.origin, connection=job.connection, serializer=job.serializer)


def is_cancelled(job: Job) -> bool:
    """Whether the job was cancelled (RQ's canceled registry holds it). The registry,
    not the status, because a worker that dequeued the job just before the cancel
    overwrites the status with "started"."""
    return job.id in canceled_registry(job)


class JobMeta:
    """The meta of the job an attempt runs (or of the attempt that just failed)."""

    def __init__(self, job: Job):
        self.job = job
        self.meta: dict[str, Any] = job.meta

    @property
    def attempts(self) -> int:
        return int(self.meta.get("attempts", 0))

    @property
    def notes(self) -> list[str]:
        return list(self.meta.get("notes", []))

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage") or "queue_wait")

    def update(self, **changes: Any) -> Write:
        self.meta.update(changes)
        connection: Redis = self.job.connection
        written = connection.eval(
            _GUARDED_WRITE,
            2,
            self.job.key,
            canceled_registry(self.job).key,
            self.job.id,
            self.job.serializer.dumps(self.meta),
        )
        return Write(int(written))

    def begin_attempt(self) -> Write:
        return self.update(attempts=self.attempts + 1, stage="model_load", progress=0.0)

    def progress(self, stage: str, fraction: float) -> Write:
        return self.update(stage=stage, progress=round(fraction, 4))

    def add_note(self, note: str) -> Write:
        return self.update(notes=[*self.notes, note], stage="queue_wait", progress=0.0)

    def failed(self, error: str, note: str | None = None) -> Write:
        notes = [*self.notes, note] if note else self.notes
        return self.update(error=error, notes=notes, progress=0.0)
