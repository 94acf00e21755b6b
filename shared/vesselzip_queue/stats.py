"""Job counters and stage-duration histograms for /metrics: a few fixed-size hashes in
Redis (their size does not grow with the number of jobs), written by whoever sees a
job start or end, so any number of gateways report the same numbers."""

from __future__ import annotations

from typing import cast

from redis import Redis

PREFIX = "vesselzip:stats"
COUNTS_KEY = f"{PREFIX}:jobs"
# Upper bounds (seconds) of the stage-duration histogram buckets.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


def stage_key(stage: str) -> str:
    return f"{PREFIX}:stage:{stage}"


def _hash(connection: Redis, key: str | bytes) -> dict[bytes, bytes]:
    # This package's clients never set decode_responses: replies are bytes.
    return cast("dict[bytes, bytes]", connection.hgetall(key))


class JobStats:
    def __init__(self, connection: Redis):
        self.redis = connection

    def count(self, event: str, n: int = 1) -> None:
        """`n` more jobs `event`: created, finished, failed or cancelled."""
        self.redis.hincrby(COUNTS_KEY, event, n)

    def observe_stages(self, *jobs: dict[str, float]) -> None:
        """Each job's seconds per stage, into the histograms."""
        with self.redis.pipeline() as pipe:
            for seconds in jobs:
                for stage, value in seconds.items():
                    key = stage_key(stage)
                    for bound in STAGE_BUCKETS:
                        if value <= bound:
                            pipe.hincrby(key, f"le_{bound}", 1)
                    pipe.hincrby(key, "count", 1)
                    pipe.hincrbyfloat(key, "sum", float(value))
            pipe.execute()

    def job_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in _hash(self.redis, COUNTS_KEY).items()}

    def stage_stats(self) -> dict[str, dict[str, float]]:
        prefix = stage_key("")
        stats = {}
        for raw_key in self.redis.scan_iter(match=prefix + "*"):
            stage = raw_key.decode()[len(prefix) :]
            stats[stage] = {k.decode(): float(v) for k, v in _hash(self.redis, raw_key).items()}
        return stats
