"""Job records: one Redis hash per job with what the client is shown (state, stage,
progress, attempts, notes, the result). RQ keeps its own job data for queueing; this
record is what outlives it, and the result JSON in the store outlives both.

Writers: the gateway (created, cancelled), the worker (running, progress, finished /
failed), and RQ failure handling (a worker died or raised; see tasks.on_job_failure)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from vesselzip.jobs import JobResult, JobSpec

PREFIX = "vesselzip"
TERMINAL_STATES = ("finished", "failed", "cancelled")
# Upper bounds (seconds) of the stage-duration histogram buckets.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


def record_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


STATS_KEY = f"{PREFIX}:stats:jobs"


def stage_stats_key(stage: str) -> str:
    return f"{PREFIX}:stats:stage:{stage}"


@dataclass
class JobRecord:
    job_id: str
    spec: JobSpec
    state: str
    queue: str
    stage: str | None = None
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 1
    queued_at: float | None = None  # the latest time it was put on a queue
    started_at: float | None = None  # the latest attempt's start
    finished_at: float | None = None
    cancel_requested: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    result: JobResult | None = None

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[bytes, bytes]) -> JobRecord:
        get = {k.decode(): v.decode() for k, v in raw.items()}

        def number(name: str) -> float | None:
            return float(get[name]) if get.get(name) else None

        return cls(
            job_id=job_id,
            spec=JobSpec.model_validate_json(get["spec"]),
            state=get.get("state", "queued"),
            queue=get.get("queue", ""),
            stage=get.get("stage") or None,
            progress=float(get.get("progress") or 0.0),
            attempts=int(get.get("attempts") or 0),
            max_attempts=int(get.get("max_attempts") or 1),
            queued_at=number("queued_at"),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            cancel_requested=get.get("cancel") == "1",
            error=get.get("error") or None,
            notes=json.loads(get.get("notes") or "[]"),
            result=JobResult.model_validate_json(get["result"]) if get.get("result") else None,
        )


class JobRecords:
    """Reads and writes job records in one Redis database."""

    def __init__(self, connection: Redis, *, ttl_s: int = 7 * 24 * 3600):
        self.redis = connection
        self.ttl_s = ttl_s

    def create(self, spec: JobSpec, *, queue: str, max_attempts: int) -> None:
        self.redis.hset(
            record_key(spec.job_id),
            mapping={
                "spec": spec.model_dump_json(),
                "state": "queued",
                "queue": queue,
                "stage": "queue_wait",
                "progress": 0.0,
                "attempts": 0,
                "max_attempts": max_attempts,
                "queued_at": time.time(),
                "notes": "[]",
            },
        )
        self.redis.hincrby(STATS_KEY, "created", 1)
        for stage, seconds in spec.stage_seconds.items():
            self.observe_stage(stage, seconds)

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(record_key(job_id))
        if not raw or b"spec" not in raw:
            return None
        return JobRecord.from_hash(job_id, raw)

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(record_key(job_id)))

    def begin_attempt(self, job_id: str) -> JobRecord | None:
        """Mark the job running for one more attempt; None when it was cancelled or
        deleted meanwhile (the worker then skips it)."""
        key = record_key(job_id)
        if self.redis.hget(key, "cancel") == b"1" or not self.redis.exists(key):
            return None
        with self.redis.pipeline() as pipe:
            pipe.hincrby(key, "attempts", 1)
            pipe.hset(
                key,
                mapping={
                    "state": "running",
                    "stage": "model_load",
                    "progress": 0.0,
                    "started_at": time.time(),
                },
            )
            pipe.execute()
        return self.get(job_id)

    # Writes progress only while the record exists and is not cancelled, atomically, so
    # a worker never resurrects a job that was deleted under it.
    _PROGRESS_SCRIPT = """
    if redis.call('exists', KEYS[1]) == 1 and redis.call('hget', KEYS[1], 'cancel') ~= '1' then
        redis.call('hset', KEYS[1], 'stage', ARGV[1], 'progress', ARGV[2])
        return 1
    end
    return 0
    """

    def set_progress(self, job_id: str, stage: str, progress: float) -> bool:
        """Record progress; returns False when the job was cancelled or deleted (stop)."""
        written = self.redis.eval(
            self._PROGRESS_SCRIPT, 1, record_key(job_id), stage, f"{progress:.4f}"
        )
        return bool(written)

    def is_cancelled(self, job_id: str) -> bool:
        key = record_key(job_id)
        return self.redis.hget(key, "cancel") == b"1" or not self.redis.exists(key)

    def add_note(self, job_id: str, note: str) -> None:
        record = self.get(job_id)
        if record is not None:
            notes = [*record.notes, note]
            self.redis.hset(record_key(job_id), mapping={"notes": json.dumps(notes)})

    def requeued(self, job_id: str, note: str) -> None:
        """An attempt ended and RQ put the job back in its queue."""
        self.add_note(job_id, note)
        self.redis.hset(
            record_key(job_id),
            mapping={"state": "queued", "stage": "queue_wait", "queued_at": time.time()},
        )

    def finish(self, result: JobResult) -> bool:
        """Store the final result (finished or failed) and start the record's TTL.
        Returns False (and writes nothing) when the job was cancelled or deleted."""
        key = record_key(result.job_id)
        if self.is_cancelled(result.job_id):
            return False
        mapping: dict[str, Any] = {
            "state": result.state,
            "stage": "",
            "progress": 1.0 if result.state == "finished" else 0.0,
            "finished_at": result.finished_at,
            "result": result.model_dump_json(),
            "error": result.error or "",
            "notes": json.dumps(result.notes),
        }
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, self.ttl_s)
            pipe.hincrby(STATS_KEY, result.state, 1)
            pipe.execute()
        if result.state == "finished":
            for stage, seconds in result.stage_seconds.items():
                if stage not in ("upload", "compress"):  # observed when created
                    self.observe_stage(stage, seconds)
        return True

    def cancel(self, job_id: str) -> None:
        """Leave a short-lived "cancelled" tombstone; the worker stops at its next check."""
        key = record_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "cancel": "1",
                    "state": "cancelled",
                    "stage": "",
                    "finished_at": time.time(),
                },
            )
            pipe.hdel(key, "result")
            pipe.expire(key, 24 * 3600)
            pipe.hincrby(STATS_KEY, "cancelled", 1)
            pipe.execute()

    def delete(self, job_id: str) -> None:
        self.redis.delete(record_key(job_id))

    def job_ids(self) -> list[str]:
        """Every job with a record (for tests and small installations: it scans)."""
        prefix = record_key("")
        return [k.decode()[len(prefix) :] for k in self.redis.scan_iter(match=prefix + "*")]

    # -- statistics for /metrics ------------------------------------------------
    def observe_stage(self, stage: str, seconds: float) -> None:
        key = stage_stats_key(stage)
        with self.redis.pipeline() as pipe:
            for bound in STAGE_BUCKETS:
                if seconds <= bound:
                    pipe.hincrby(key, f"le_{bound}", 1)
            pipe.hincrby(key, "count", 1)
            pipe.hincrbyfloat(key, "sum", float(seconds))
            pipe.execute()

    def stage_stats(self) -> dict[str, dict[str, float]]:
        prefix = stage_stats_key("")
        stats = {}
        for raw_key in self.redis.scan_iter(match=prefix + "*"):
            stage = raw_key.decode()[len(prefix) :]
            stats[stage] = {k.decode(): float(v) for k, v in self.redis.hgetall(raw_key).items()}
        return stats

    def job_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(STATS_KEY).items()}
