"""Workers that die, input that goes bad in the store, faults that pass and ones that
do not, jobs that run too long: every job ends finished or failed with a reason."""

from __future__ import annotations

import httpx

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
        f"during {stage} " in failed["error"] for stage in ("fetch", "decompress", "inference")
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
