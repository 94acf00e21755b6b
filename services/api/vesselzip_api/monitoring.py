"""Readiness checks and the Prometheus collector. Both read Redis at request time, so
any number of gateway processes report the same numbers (no multiprocess registry)."""

from __future__ import annotations

import logging

import redis
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from redis import Redis

from vesselzip.jobs import JobState
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip_api.schemas import Readiness
from vesselzip_queue import queues
from vesselzip_queue.stats import STAGE_BUCKETS, JobStats

log = logging.getLogger("vesselzip.api")


class Probe:
    def __init__(self, settings: Settings, connection: Redis, store: BlobStore):
        self.settings = settings
        self.redis = connection
        self.store = store

    def readiness(self) -> Readiness:
        problems = []
        try:
            redis_ok = bool(self.redis.ping())
        except redis.exceptions.RedisError as exc:
            redis_ok = False
            problems.append(f"Redis unreachable: {exc}")
        store_problem = self.store.problem()
        store_ok = store_problem is None
        if store_problem:
            problems.append(store_problem)
        workers = 0
        if redis_ok:
            workers = len(queues.live_workers(self.redis, self.settings))
            if not workers:
                problems.append("no worker has sent a heartbeat recently")
        return Readiness(
            ready=redis_ok and store_ok and workers > 0,
            redis=redis_ok,
            store=store_ok,
            workers=workers,
            detail="; ".join(problems) or None,
        )


class JobsCollector:
    """vesselzip_jobs{state}, vesselzip_jobs_ended_total{state}, vesselzip_queue_depth{queue},
    vesselzip_workers, vesselzip_stage_seconds{stage} (histogram)."""

    def __init__(self, settings: Settings, connection: Redis):
        self.settings = settings
        self.redis = connection

    def collect(self):
        try:
            depths = queues.queue_depths(self.redis)
            running = queues.running_counts(self.redis)
            stats = JobStats(self.redis)
            counts = stats.job_counts()
            stages = stats.stage_stats()
            workers = len(queues.live_workers(self.redis, self.settings))
        except redis.exceptions.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            up = GaugeMetricFamily("vesselzip_redis_up", "Whether Redis answered this scrape.")
            up.add_metric([], 0)
            yield up
            return

        up = GaugeMetricFamily("vesselzip_redis_up", "Whether Redis answered this scrape.")
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily("vesselzip_jobs", "Jobs waiting or running now.", labels=["state"])
        jobs.add_metric([JobState.QUEUED.value], sum(depths.values()))
        jobs.add_metric([JobState.RUNNING.value], sum(running.values()))
        yield jobs

        created = CounterMetricFamily("vesselzip_jobs_created", "Jobs accepted.")
        created.add_metric([], counts.get("created", 0))
        yield created

        ended = CounterMetricFamily(
            "vesselzip_jobs_ended", "Jobs that ended, by final state.", labels=["state"]
        )
        for state in (JobState.FINISHED.value, JobState.FAILED.value, JobState.CANCELLED.value):
            ended.add_metric([state], counts.get(state, 0))
        yield ended

        depth = GaugeMetricFamily(
            "vesselzip_queue_depth", "Jobs waiting per queue.", labels=["queue"]
        )
        for name, n in depths.items():
            depth.add_metric([name], n)
        yield depth

        alive = GaugeMetricFamily("vesselzip_workers", "Workers with a recent heartbeat.")
        alive.add_metric([], workers)
        yield alive

        hist = HistogramMetricFamily(
            "vesselzip_stage_seconds", "Seconds spent per job stage.", labels=["stage"]
        )
        for stage, values in sorted(stages.items()):
            count = values.get("count", 0.0)
            buckets = [(str(float(b)), values.get(f"le_{b}", 0.0)) for b in STAGE_BUCKETS]
            buckets.append(("+Inf", count))
            hist.add_metric([stage], buckets, sum_value=values.get("sum", 0.0))
        yield hist


def metrics_registry(settings: Settings, connection: Redis) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(settings, connection))
    return registry
