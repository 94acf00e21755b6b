"""Workers that die, input that goes bad in the store, faults that pass and ones that
do not, jobs that run too long: every job ends finished or failed with a reason."""

from __future__ import annotations

import os
import time

import httpx
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from vesselzip_queue import queues

from .helpers import post_job, wait_for_job, wait_until


def state_of(stack, job_id: str) -> dict:
    return httpx.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()


def kill_worker_while_running(stack, worker, job_id: str) -> dict:
    running = wait_until(
        lambda: (body := state_of(stack, job_id))["state"] == "running" and body,
        60,
        "the job to start running",
        interval_s=0.05,
    )
    worker.kill()  # SIGKILL: no chance to clean up
    worker.wait()
    return running


def test_killed_worker_job_is_retried_and_bad_input_is_not(private_stack, slow_phantom, phantoms):
    stack = private_stack
    stack.start_gateway()
    first = stack.start_worker()
    stack.wait_ready()

    # Two jobs for the "gpu" queue (no worker listens there yet) whose stored input goes
    # bad: a corrupt blob (bad input, not retried) and a blob the store cannot read
    # (an I/O fault: retried, then failed).
    image, truth = phantoms[0]
    corrupt = post_job(stack.base_url, image, truth, queue="gpu").json()["id"]
    unreadable = post_job(stack.base_url, image, truth, queue="gpu").json()["id"]
    blob = stack.store_dir / "blobs" / f"{corrupt}.vz"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    unreadable_blob = stack.store_dir / "blobs" / f"{unreadable}.vz"
    unreadable_blob.unlink()
    unreadable_blob.mkdir()

    slow = post_job(stack.base_url, *slow_phantom, codec="zfp:rate=8").json()["id"]
    kill_worker_while_running(stack, first, slow)

    # With no worker left, the gateway notices the silence and puts the job back.
    requeued = wait_until(
        lambda: (body := state_of(stack, slow))["state"] == "queued" and body,
        30,
        "the dead worker's job to be requeued",
    )
    assert requeued["attempts"] == 1
    assert "the worker stopped responding during" in requeued["notes"][0]
    assert requeued["notes"][0].endswith("(attempt 1/2); retried")

    stack.start_worker({"VESSELZIP_WORKER_QUEUES": "cpu,gpu"})
    done = wait_for_job(stack.base_url, slow)
    assert done["state"] == "finished", done
    assert done["attempts"] == 2 and len(done["notes"]) == 1
    assert done["segmentation"]["dice"] > 0
    assert httpx.get(done["links"]["mask"], timeout=30).status_code == 200

    bad = wait_for_job(stack.base_url, corrupt)
    assert bad["state"] == "failed"
    assert bad["error"].startswith("decompress failed:") and "checksum" in bad["error"]
    assert bad["attempts"] == 1 and bad["notes"] == []  # bad input is not retried

    io_fault = wait_for_job(stack.base_url, unreadable)
    assert io_fault["state"] == "failed"
    assert io_fault["attempts"] == 2
    assert io_fault["error"].startswith("fetch failed: IsADirectoryError")
    assert io_fault["error"].endswith("(attempt 2/2)")
    assert io_fault["notes"][0].endswith("(attempt 1/2); retried")


def test_killed_worker_without_retries_fails_with_a_reason(
    private_stack, slow_phantom, large_phantom
):
    stack = private_stack
    stack.env.update({"VESSELZIP_JOB_RETRIES": "0", "VESSELZIP_JOB_TIMEOUT_S": "1"})
    stack.env["VESSELZIP_MAX_VOXELS"] = str(128 * 128 * 96)  # for the large phantom
    stack.start_gateway()
    worker = stack.start_worker()
    stack.wait_ready()

    job_id = post_job(stack.base_url, *slow_phantom).json()["id"]
    kill_worker_while_running(stack, worker, job_id)
    failed = wait_for_job(stack.base_url, job_id, timeout_s=30)
    assert failed["state"] == "failed"
    assert failed["error"].startswith("the worker stopped responding during")
    assert failed["error"].endswith("(attempt 1/1)")
    assert any(
        f"during {stage} " in failed["error"]
        for stage in ("model_load", "fetch", "decompress", "inference")
    )
    # The failure is also in the store, where it outlives Redis.
    assert (stack.store_dir / "results" / f"{job_id}.json").is_file()

    # A job that runs past VESSELZIP_JOB_TIMEOUT_S (1 s here) fails and is not retried.
    stack.start_worker()
    late = post_job(stack.base_url, *large_phantom).json()["id"]
    timed_out = wait_for_job(stack.base_url, late)
    assert timed_out["state"] == "failed"
    assert timed_out["error"].startswith("timed out after 1 s during inference")
    assert timed_out["attempts"] == 1


# -- cancellation, backoff, unwritable store, unreadable jobs ------------------------

# Installed in a worker's environment (PYTHONPATH) by the cancellation test: on a volume
# of at least VESSELZIP_TEST_STUCK_VOXELS voxels, scipy's gaussian_filter keeps filtering
# for ten minutes. That is the Frangi baseline stuck in native code (the GIL released,
# like scipy's own filters) without one progress report, as on a huge volume.
STUCK_FILTER = """
import os
import time

_voxels = int(os.environ.get("VESSELZIP_TEST_STUCK_VOXELS", "0"))
if _voxels:
    from scipy import ndimage

    _gaussian_filter = ndimage.gaussian_filter

    def gaussian_filter(image, *args, **kwargs):
        if getattr(image, "size", 0) >= _voxels:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                _gaussian_filter(image, *args, **kwargs)
        return _gaussian_filter(image, *args, **kwargs)

    ndimage.gaussian_filter = gaussian_filter
"""


def stuck_filter_env(directory, voxels: int = 1_000_000) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(STUCK_FILTER)
    paths = [str(directory), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), "VESSELZIP_TEST_STUCK_VOXELS": str(voxels)}


def test_cancel_stops_a_job_stuck_in_a_long_native_call(
    private_stack, large_phantom, phantoms, tmp_path
):
    stack = private_stack
    stack.env["VESSELZIP_MAX_VOXELS"] = str(128 * 128 * 96)  # for the large phantom
    worker_env = stuck_filter_env(tmp_path / "stuck")
    stack.start_gateway()
    worker = stack.start_worker(worker_env)
    stack.wait_ready()

    stuck = post_job(stack.base_url, *large_phantom).json()["id"]
    wait_until(
        lambda: state_of(stack, stuck).get("stage") == "inference",
        60,
        "the large job to reach inference",
        interval_s=0.05,
    )
    deleted = httpx.delete(f"{stack.base_url}/v1/jobs/{stuck}", timeout=10)
    assert deleted.status_code == 200 and deleted.json()["cancelled"] is True
    cancelled_at = time.monotonic()
    small = post_job(stack.base_url, *phantoms[0]).json()["id"]  # waits behind it

    # The job never reports progress again, so the worker ends it the hard way: it
    # cleans up and exits within seconds (heartbeat + grace), not after ten minutes.
    wait_until(lambda: worker.poll() is not None, 20, "the worker to stop the cancelled job")
    stopped_after = time.monotonic() - cancelled_at
    from vesselzip_worker.worker import CANCEL_EXIT_CODE

    assert worker.returncode == CANCEL_EXIT_CODE
    with stack.redis_server.client() as client:
        # RQ will not run it again (not "started", so not reaped and retried either) ...
        assert client.hget(f"rq:job:{stuck}", "status") == b"canceled"
        assert not [m for m in client.zrange("rq:wip:cpu", 0, -1) if stuck.encode() in m]
        # ... and the dead worker is no longer registered.
        pids = [w.pid for w in Worker.all(connection=client, serializer=JSONSerializer)]
        assert worker.pid not in pids
    assert not [f for f in stack.stored_files() if stuck in f]

    # What `vesselzip serve`'s supervisor or compose's restart policy does: start it again.
    restarted_at = time.monotonic()
    stack.start_worker(worker_env)
    done = wait_for_job(stack.base_url, small, timeout_s=60)
    assert done["state"] == "finished", done
    small_after = time.monotonic() - restarted_at
    cancelled = state_of(stack, stuck)
    assert cancelled["state"] == "cancelled" and cancelled["attempts"] == 1
    print(
        f"worker gone {stopped_after:.1f} s after DELETE; next job done {small_after:.1f} s later"
    )


def test_retries_wait_a_growing_backoff(private_stack, phantoms):
    stack = private_stack
    stack.env.update({"VESSELZIP_JOB_RETRIES": "2", "VESSELZIP_JOB_RETRY_BACKOFF_S": "2"})
    stack.start_gateway()
    job_id = post_job(stack.base_url, *phantoms[1]).json()["id"]
    blob = stack.store_dir / "blobs" / f"{job_id}.vz"
    blob.unlink()
    blob.mkdir()  # the store cannot read it: an I/O fault, retried
    stack.start_worker()

    starts: list[float] = []  # each attempt's start, as RQ recorded it
    with stack.redis_server.client() as client:

        def failed() -> bool:
            rq_job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
            started = rq_job.started_at.timestamp() if rq_job.started_at else None
            # RQ writes an attempt's start twice, milliseconds apart: count it once.
            if started and (not starts or started - starts[-1] > 0.5):
                starts.append(started)
            return rq_job.get_status(refresh=False) == "failed"

        wait_until(failed, 90, "the job to fail", interval_s=0.02)
    body = state_of(stack, job_id)
    assert body["attempts"] == 3 and body["error"].endswith("(attempt 3/3)")
    assert len(body["notes"]) == 2
    assert body["notes"][0].endswith("(attempt 1/3); retried")
    assert body["notes"][1].endswith("(attempt 2/3); retried")
    # VESSELZIP_JOB_RETRY_BACKOFF_S=2: about 2 s before the second attempt and 4 s before
    # the third (RQ schedules in whole seconds: give or take one); without a backoff,
    # attempts follow each other within milliseconds.
    assert len(starts) == 3, starts
    gaps = [starts[1] - starts[0], starts[2] - starts[1]]
    assert gaps[0] >= 1.0 and gaps[1] >= 3.0, gaps


def test_retry_runs_when_the_worker_running_the_scheduler_dies(
    private_stack, slow_phantom, tmp_path
):
    stack = private_stack
    stack.env["VESSELZIP_JOB_RETRY_BACKOFF_S"] = "1"
    stack.start_gateway()
    # The first worker runs the scheduler (it starts alone) and gets stuck in its job.
    first = stack.start_worker(stuck_filter_env(tmp_path / "stuck", voxels=200_000))
    stack.wait_ready()
    job_id = post_job(stack.base_url, *slow_phantom).json()["id"]
    wait_until(
        lambda: state_of(stack, job_id).get("stage") == "inference",
        60,
        "the job to reach inference",
        interval_s=0.05,
    )
    stack.start_worker()
    stack.wait_ready(workers=2)
    first.kill()  # SIGKILL: the scheduler lock is left to whoever takes it
    first.wait()
    killed_at = time.monotonic()

    # The job is reaped, waits its backoff, and the other worker, which takes over the
    # scheduler within a beat (not at RQ's maintenance, 30 s later), runs it again.
    done = wait_for_job(stack.base_url, job_id, timeout_s=60)
    assert done["state"] == "finished" and done["attempts"] == 2, done
    assert time.monotonic() - killed_at < 20


def test_failures_are_recorded_when_the_store_cannot_write(private_stack, phantoms):
    stack = private_stack
    stack.start_gateway()
    image, truth = phantoms[2]
    good = post_job(stack.base_url, image, truth).json()["id"]
    corrupt = post_job(stack.base_url, image, truth).json()["id"]
    blob = stack.store_dir / "blobs" / f"{corrupt}.vz"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    # The store takes no more masks and no results: files sit where their folders go.
    for folder in ("masks", "results"):
        (stack.store_dir / folder).write_text("not a folder")
    stack.start_worker()

    # A store fault is retried; the last attempt's failure is recorded with its reason
    # although its result JSON cannot be written (said in a note).
    failed = wait_for_job(stack.base_url, good)
    assert failed["state"] == "failed" and failed["attempts"] == 2, failed
    assert failed["error"].startswith("metrics failed: ") and "masks" in failed["error"]
    assert failed["error"].endswith("(attempt 2/2)")
    unwritten = [n for n in failed["notes"] if "could not be written to the store" in n]
    assert len(unwritten) == 1 and "results" in unwritten[0]

    # Bad input stays bad input: failed at once, not retried, although its result
    # cannot be written either.
    bad = wait_for_job(stack.base_url, corrupt)
    assert bad["state"] == "failed" and bad["attempts"] == 1, bad
    assert bad["error"].startswith("decompress failed:") and "checksum" in bad["error"]
    assert len(bad["notes"]) == 1 and "could not be written to the store" in bad["notes"][0]

    # Both ended in RQ, and everything RQ keeps of them expires (none left "running").
    with stack.redis_server.client() as client:
        for job_id in (good, corrupt):
            kept = queues.rq_keys_of(job_id, client)
            assert f"rq:job:{job_id}" in kept, kept
            assert all(seconds > 0 for seconds in kept.values()), kept


def test_jobs_the_worker_cannot_read_fail_with_a_reason(private_stack, phantoms):
    stack = private_stack
    stack.start_gateway()
    image, truth = phantoms[0]
    # Queued jobs as another version, or damage, could leave them: a spec this version
    # rejects, an RQ payload that is not JSON; and one whose RQ entry RQ cannot load.
    bad_spec, bad_payload, bad_entry = (
        post_job(stack.base_url, image, truth).json()["id"] for _ in range(3)
    )
    with stack.redis_server.client() as client:
        rq_job = Job.fetch(bad_spec, connection=client, serializer=JSONSerializer)
        spec = dict(rq_job.args[0])
        spec["image"] = {"shape": "a cube"}
        rq_job.args = [spec]
        rq_job.save()
        client.hset(f"rq:job:{bad_payload}", "data", b"\x00 not json")
        client.hset(f"rq:job:{bad_entry}", "status", "from-a-newer-rq")

    # The gateway answers (no 500) and already says why.
    for job_id in (bad_spec, bad_payload, bad_entry):
        response = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "failed" and response.json()["error"]
    # One RQ cannot load is taken out by its owner (RQ would stop a worker on it).
    assert httpx.delete(f"{stack.base_url}/v1/jobs/{bad_entry}", timeout=10).status_code == 200

    worker = stack.start_worker()
    for job_id in (bad_spec, bad_payload):
        body = wait_for_job(stack.base_url, job_id)
        assert body["state"] == "failed" and "cannot be read" in body["error"], body
        assert body["notes"] == [] and body["attempts"] <= 1, body  # not retried
    with stack.redis_server.client() as client:
        for job_id in (bad_spec, bad_payload):  # once the worker had them, all expires

            def expiring(job_id=job_id) -> bool:
                kept = queues.rq_keys_of(job_id, client)
                return bool(kept) and all(seconds > 0 for seconds in kept.values())

            wait_until(expiring, 30, "the unreadable job to end in RQ")
        assert not queues.rq_keys_of(bad_entry, client)

    # The worker is still there and takes the next job.
    good = wait_for_job(stack.base_url, post_job(stack.base_url, image, truth).json()["id"])
    assert good["state"] == "finished" and worker.poll() is None
