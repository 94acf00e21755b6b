"""A job's state on RQ's own terms (vesselzip_queue), on an embedded Redis without a
worker: where a job stands, the guarded writes of its attempts, cancelling, deleting,
the models workers offer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from vesselzip.errors import NotFoundError
from vesselzip.jobs import LOST, ImageInfo, JobSpec, JobState, new_job_id
from vesselzip.model_info import ModelInfo
from vesselzip.redis_embedded import EmbeddedRedis
from vesselzip.settings import Settings
from vesselzip.store import LocalStore
from vesselzip_queue import queues, state
from vesselzip_queue.catalog import announce_models, offered_models, renew_models
from vesselzip_queue.meta import JobMeta, Write, is_cancelled


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def connection(redis_server):
    with queues.connect(redis_server.url) as client:
        client.flushall()
        yield client


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


SETTINGS = Settings(redis_url="unused", job_retries=1, record_ttl_s=600)


def spec() -> JobSpec:
    job_id = new_job_id()
    return JobSpec(
        job_id=job_id,
        blob_key=f"blobs/{job_id}.vz",
        model="frangi",
        codec={"id": "none"},
        image=ImageInfo(shape=(8, 8, 8), dtype="int16", spacing=(1.0, 1.0, 1.0)),
    )


def rq_job(job_id: str, connection) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def test_a_queued_job_stands_in_its_queue_with_its_spec(connection, store):
    first, second = spec(), spec()
    queues.enqueue([first, second], queue="cpu", connection=connection, settings=SETTINGS)
    outcome, queued = state.find_job(second.job_id, connection, store)
    assert outcome.state == JobState.QUEUED and outcome.position == 1
    assert queued is not None and queued.spec == second and queued.queue == "cpu"
    assert (queued.attempts, queued.max_attempts, queued.notes) == (0, 2, [])
    many = state.find_jobs([first.job_id, second.job_id, "f" * 32], connection, store)
    assert [o.state for o in many.values()] == [JobState.QUEUED, JobState.QUEUED, LOST]
    with pytest.raises(NotFoundError):
        state.find_job("f" * 32, connection, store)


def test_an_attempt_writes_its_meta_only_while_it_runs(connection, store):
    job_spec = spec()
    queues.enqueue([job_spec], queue="cpu", connection=connection, settings=SETTINGS)
    job = rq_job(job_spec.job_id, connection)
    meta = JobMeta(job)
    assert meta.begin_attempt() == Write.GONE  # not started: nothing written
    assert rq_job(job_spec.job_id, connection).meta["attempts"] == 0

    job.set_status(JobStatus.STARTED)
    meta = JobMeta(job := rq_job(job_spec.job_id, connection))
    assert meta.begin_attempt() == Write.WRITTEN
    assert meta.progress("inference", 0.5) == Write.WRITTEN
    outcome, queued = state.find_job(job_spec.job_id, connection, store)
    assert outcome.state == JobState.RUNNING
    assert queued is not None and (queued.attempts, queued.stage, queued.progress) == (
        1,
        "inference",
        0.5,
    )

    queues.cancel(job_spec.job_id, connection)  # RQ's cancel: the attempt learns of it
    assert is_cancelled(job)
    assert meta.progress("inference", 0.6) == Write.CANCELLED
    assert state.find_job(job_spec.job_id, connection, store)[0].state == JobState.CANCELLED

    connection.delete(job.key)  # gone (a Redis flush): a write never brings it back
    connection.delete("rq:canceled:cpu")
    assert meta.progress("metrics", 0.9) == Write.GONE
    assert not connection.exists(job.key)


def test_cancelled_and_deleted_jobs_leave_only_what_expires(connection, store):
    waiting, ended = spec(), spec()
    queues.enqueue([waiting, ended], queue="gpu", connection=connection, settings=SETTINGS)
    queues.cancel(waiting.job_id, connection)
    kept = queues.rq_keys_of(waiting.job_id, connection)
    assert 0 < kept.pop(f"rq:job:{waiting.job_id}") <= queues.CANCELLED_KEPT_S
    assert set(kept) == {"rq:canceled:gpu entry"}  # RQ never removes these by itself
    connection.delete(f"rq:job:{waiting.job_id}")  # its TTL ran out
    queues.maintain(connection)
    assert queues.rq_keys_of(waiting.job_id, connection) == {}

    assert queues.rq_keys_of(ended.job_id, connection)  # in its queue
    queues.delete(ended.job_id, connection)
    assert queues.rq_keys_of(ended.job_id, connection) == {}


def test_an_entry_rq_cannot_read_answers_failed_and_can_be_removed(connection, store):
    job_spec = spec()
    queues.enqueue([job_spec], queue="cpu", connection=connection, settings=SETTINGS)
    connection.hset(f"rq:job:{job_spec.job_id}", "status", "from-a-newer-rq")
    outcome, queued = state.find_job(job_spec.job_id, connection, store)
    assert outcome.state == JobState.FAILED and "cannot be read" in (outcome.error or "")
    assert queued is not None and queued.spec.owner is None
    many = state.find_jobs([job_spec.job_id], connection, store)
    assert many[job_spec.job_id].state == JobState.FAILED
    queues.cancel(job_spec.job_id, connection)
    assert queues.rq_keys_of(job_spec.job_id, connection) == {}


def test_workers_offer_what_they_announced_until_it_lapses(connection):
    frangi, small = ModelInfo(name="frangi"), ModelInfo(name="mvn-small", min_side=4)
    announce_models(connection, "w1", [frangi, small], ttl_s=60)
    announce_models(connection, "w2", [frangi], ttl_s=0.5)
    assert sorted(offered_models(connection)) == ["frangi", "mvn-small"]
    announce_models(connection, "w1", [frangi], ttl_s=0.5)  # w1 no longer has mvn-small
    assert sorted(offered_models(connection)) == ["frangi"]
    time.sleep(0.6)
    assert offered_models(connection) == {}
    renew_models(connection, "w1", [frangi], ttl_s=60)  # lapsed offers are not renewed
    assert offered_models(connection) == {}
    announce_models(connection, "w1", [frangi], ttl_s=60)
    renew_models(connection, "w1", [frangi], ttl_s=60)
    assert list(offered_models(connection)) == ["frangi"]


def test_a_model_says_which_volumes_it_cannot_take():
    network = ModelInfo(name="mvn-small", min_side=4)
    assert network.refusal((4, 4, 4), (1, 1, 1)) is None
    assert "at least 4 voxels" in (network.refusal((1, 64, 64), (1, 1, 1)) or "")
    resampled = ModelInfo(name="mvn-checkpoint", min_side=4, target_spacing=(0.5, 0.5, 0.5))
    assert resampled.refusal((3, 64, 64), (1.0, 0.5, 0.5)) is None  # 6 voxels at 0.5 mm
    assert "after resampling" in (resampled.refusal((8, 64, 64), (0.2, 0.5, 0.5)) or "")
