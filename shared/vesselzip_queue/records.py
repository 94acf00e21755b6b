"""Job records: one Redis hash per job with what the client is shown (state, stage,
progress, attempts, notes, the result). RQ keeps its own job data for queueing; this
record is what outlives it, and the result JSON in the store outlives both.

Writers: the gateway (created, cancelled), the worker (running, progress, finished /
failed), and RQ failure handling (a worker died or raised; see tasks.on_job_failure)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from vesselzip.jobs import ImageInfo, JobResult, JobSpec, JobState

PREFIX = "vesselzip"
# Upper bounds (seconds) of the stage-duration histogram buckets.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


def _hash(connection: Redis, key: str | bytes) -> dict[bytes, bytes]:
    """HGETALL. redis-py types replies as bytes | str; this package's clients never set
    decode_responses, so they are bytes."""
    return cast("dict[bytes, bytes]", connection.hgetall(key))


def record_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


STATS_KEY = f"{PREFIX}:stats:jobs"


def stage_stats_key(stage: str) -> str:
    return f"{PREFIX}:stats:stage:{stage}"


@dataclass
class JobRecord:
    job_id: str
    spec: JobSpec
    state: JobState
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
    # Why this version cannot read the record (e.g. a spec another version wrote); such
    # a record reads as failed with this reason, and `spec` keeps only its owner and keys.
    unreadable: str | None = None

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[bytes, bytes]) -> JobRecord:
        get = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        try:
            return cls._parse(job_id, get)
        except ValueError as exc:  # pydantic's ValidationError and JSON errors among them
            reason = unreadable_reason("its record", exc)
            try:
                spec = JobSpec.model_validate_json(get["spec"])
            except ValueError:
                spec = _readable_part_of_spec(job_id, get["spec"], get.get("queued_at"))
            return cls(
                job_id=job_id,
                spec=spec,
                state=JobState.CANCELLED if get.get("cancel") == "1" else JobState.FAILED,
                queue=get.get("queue", ""),
                cancel_requested=get.get("cancel") == "1",
                error=reason,
                unreadable=reason,
            )

    @classmethod
    def _parse(cls, job_id: str, get: dict[str, str]) -> JobRecord:
        def number(name: str) -> float | None:
            return float(get[name]) if get.get(name) else None

        return cls(
            job_id=job_id,
            spec=JobSpec.model_validate_json(get["spec"]),
            state=JobState(get.get("state") or JobState.QUEUED),
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


def unreadable_reason(what: str, exc: Exception) -> str:
    """Why a job failed that this version cannot read, for its record."""
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


def _readable_part_of_spec(job_id: str, raw: str, queued_at: str | None) -> JobSpec:
    """A stand-in for a spec that does not validate: its owner (access checks) and the
    store keys it owns (DELETE removes them) when those can be read, nothing else."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    data = data if isinstance(data, dict) else {}
    owner = data.get("owner")
    owned = data.get("owned_keys")
    created_at = data.get("created_at")
    if not isinstance(created_at, int | float) or created_at <= 0:
        try:
            created_at = float(queued_at or "")
        except ValueError:
            created_at = time.time()
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
        created_at=created_at,
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
                "state": JobState.QUEUED.value,
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
        raw = _hash(self.redis, record_key(job_id))
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
                    "state": JobState.RUNNING.value,
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

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a client cancelled the job (a record that is merely gone, e.g. after a
        Redis flush, is not a cancel request)."""
        return self.redis.hget(record_key(job_id), "cancel") == b"1"

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
            mapping={
                "state": JobState.QUEUED.value,
                "stage": "queue_wait",
                "queued_at": time.time(),
            },
        )

    def finish(self, result: JobResult) -> bool:
        """Store the final result (finished or failed) and start the record's TTL.
        Returns False (and writes nothing) when the job was cancelled or deleted."""
        ended = self._end(
            result.job_id,
            result.state,
            {
                "progress": 1.0 if result.state == JobState.FINISHED else 0.0,
                "finished_at": result.finished_at,
                "result": result.model_dump_json(),
                "error": result.error or "",
                "notes": json.dumps(result.notes),
            },
        )
        if ended and result.state == JobState.FINISHED:
            for stage, seconds in result.stage_seconds.items():
                if stage not in ("upload", "compress"):  # observed when created
                    self.observe_stage(stage, seconds)
        return ended

    def fail(self, job_id: str, error: str) -> bool:
        """Record a failure that has no JobResult (the job cannot be read) and start the
        record's TTL. Returns False (and writes nothing) when it was cancelled or deleted."""
        return self._end(
            job_id, JobState.FAILED, {"progress": 0.0, "finished_at": time.time(), "error": error}
        )

    def _end(self, job_id: str, state: JobState, fields: dict[FieldT, EncodableT]) -> bool:
        if self.is_cancelled(job_id):
            return False
        key = record_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"state": state.value, "stage": "", **fields})
            pipe.expire(key, self.ttl_s)
            pipe.hincrby(STATS_KEY, state.value, 1)
            pipe.execute()
        return True

    def cancel(self, job_id: str) -> None:
        """Leave a short-lived "cancelled" tombstone; the worker stops at its next check."""
        key = record_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "cancel": "1",
                    "state": JobState.CANCELLED.value,
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
            stats[stage] = {k.decode(): float(v) for k, v in _hash(self.redis, raw_key).items()}
        return stats

    def job_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in _hash(self.redis, STATS_KEY).items()}
