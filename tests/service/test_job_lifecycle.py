"""A job's life in Redis on RQ's own terms: what RQ keeps of a job expires once it
ended and is gone once the job is deleted, failed jobs included; input the model
cannot take is refused at upload; a failure the same input would repeat is not
retried; workers offer only the models they can load."""

from __future__ import annotations

import gzip

import httpx
import nibabel as nib
import numpy as np

from vesselzip_queue import queues

from .helpers import post_job, wait_for_job, wait_until


def nifti_file(tmp_path, name: str, data: np.ndarray, spacing=(0.5, 0.5, 0.8)):
    path = tmp_path / name
    image = nib.Nifti1Image(data, np.diag([*spacing, 1.0]))
    path.write_bytes(gzip.compress(image.to_bytes(), mtime=0))
    return path


def corrupt_blob(stack, job_id: str) -> None:
    blob = stack.store_dir / "blobs" / f"{job_id}.vz"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))


def test_what_rq_keeps_of_a_job_expires_and_deleting_it_leaves_nothing(private_stack, phantoms):
    stack = private_stack
    stack.env["VESSELZIP_RECORD_TTL_S"] = "120"
    stack.start_gateway()
    image, truth = phantoms[0]
    # Sent to "gpu" first, where no worker listens: one is cancelled while it waits.
    waiting = post_job(stack.base_url, image, truth, queue="gpu").json()["id"]
    good = post_job(stack.base_url, image, truth).json()["id"]
    bad = post_job(stack.base_url, image, truth).json()["id"]
    corrupt_blob(stack, bad)  # bad input: fails at once
    unreadable = post_job(stack.base_url, image, truth).json()["id"]
    blob = stack.store_dir / "blobs" / f"{unreadable}.vz"
    blob.unlink()
    blob.mkdir()  # an I/O fault: retried once (VESSELZIP_JOB_RETRIES=1), then failed
    stack.start_worker()

    assert httpx.delete(f"{stack.base_url}/v1/jobs/{waiting}", timeout=10).status_code == 200
    assert wait_for_job(stack.base_url, good)["state"] == "finished"
    assert wait_for_job(stack.base_url, bad)["state"] == "failed"
    failed = wait_for_job(stack.base_url, unreadable)
    assert failed["state"] == "failed" and failed["attempts"] == 2, failed

    with stack.redis_server.client() as client:
        # Every key and registry entry of an ended job expires within VESSELZIP_RECORD_TTL_S.
        for job_id in (good, bad, unreadable):
            kept = wait_until(
                lambda job_id=job_id: (
                    (k := queues.rq_keys_of(job_id, client))
                    and f"rq:job:{job_id}" in k
                    and not any(key.startswith("rq:wip") for key in k)
                    and k
                ),
                10,
                "the job to leave RQ's started registry",
            )
            assert all(0 < seconds <= 120 for seconds in kept.values()), (job_id, kept)
        # The cancelled one reads "cancelled" a day, then goes.
        kept = queues.rq_keys_of(waiting, client)
        assert 0 < kept.pop(f"rq:job:{waiting}") <= queues.CANCELLED_KEPT_S
        assert set(kept) == {"rq:canceled:gpu entry"}, kept
        assert httpx.get(f"{stack.base_url}/v1/jobs/{waiting}", timeout=10).json()["state"] == (
            "cancelled"
        )
        client.delete(f"rq:job:{waiting}")  # as when its TTL runs out
        queues.maintain(client)
        assert queues.rq_keys_of(waiting, client) == {}

        # Deleting an ended job removes all of it, failed ones included.
        blob.rmdir()  # the I/O fault's stand-in
        for job_id in (good, bad, unreadable):
            response = httpx.delete(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10)
            assert response.status_code == 200, response.text
            assert queues.rq_keys_of(job_id, client) == {}, job_id
            assert not [f for f in stack.stored_files() if job_id in f]
            assert httpx.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).status_code == 404


def test_input_a_model_cannot_take_is_refused_at_upload(private_stack, tmp_path):
    stack = private_stack
    stack.start_gateway()
    stack.start_worker()
    stack.wait_ready()
    offered = httpx.get(f"{stack.base_url}/v1/models", timeout=10).json()
    by_name = {m["name"]: m for m in offered["models"]}
    # No checkpoint configured: the worker cannot load mvn-checkpoint, so does not offer it.
    assert "mvn-checkpoint" not in by_name
    assert by_name["mvn-arteries"]["min_side"] == 4 and by_name["frangi"]["min_side"] == 1
    assert by_name["mvn-arteries"]["answers"] == "named arteries"
    assert by_name["mvn-vessels"]["aliases"] == ["mvn-small"]

    data = np.full((1, 64, 64), 100, np.int16)
    for shape in ((1, 64, 64), (64, 64, 1), (2, 2, 2), (1, 1, 200)):
        thin = nifti_file(tmp_path, f"thin{shape[0]}_{shape[2]}.nii.gz", np.resize(data, shape))
        response = post_job(stack.base_url, thin, model="mvn-small")
        assert response.status_code == 422, (shape, response.text)
        assert "at least 4 voxels along every axis" in response.json()["detail"]
    response = post_job(stack.base_url, thin, model="mvn-checkpoint")
    assert response.status_code == 422 and "no worker offers it" in response.json()["detail"]
    assert not [f for f in stack.stored_files() if f.startswith("blobs/")]

    # Frangi takes any size.
    tiny = post_job(stack.base_url, thin, model="frangi")
    assert tiny.status_code == 202, tiny.text
    assert wait_for_job(stack.base_url, tiny.json()["id"])["state"] == "finished"


def test_a_failure_the_same_input_would_repeat_is_not_retried(private_stack, tmp_path):
    stack = private_stack
    stack.env["VESSELZIP_JOB_RETRIES"] = "2"
    stack.start_gateway()
    stack.start_worker()
    stack.wait_ready()
    # Finite but extreme intensities: the filter's eigen-solver gives up on them.
    extreme = np.zeros((24, 24, 16), np.float64)
    extreme[::2] = 1e308
    extreme[1::2] = -1e308
    path = nifti_file(tmp_path, "extreme.nii.gz", extreme)
    response = post_job(stack.base_url, path, model="frangi", codec="none")
    assert response.status_code == 202, response.text
    body = wait_for_job(stack.base_url, response.json()["id"], timeout_s=60)
    assert body["state"] == "failed", body
    assert body["attempts"] == 1 and body["notes"] == [], body
    assert "not retried" in body["error"], body


def test_models_the_workers_offer_are_listed(private_stack):
    stack = private_stack
    stack.start_gateway()
    assert httpx.get(f"{stack.base_url}/v1/models", timeout=10).json()["models"] == []
    stack.start_worker()
    stack.wait_ready()
    names = [
        m["name"] for m in httpx.get(f"{stack.base_url}/v1/models", timeout=10).json()["models"]
    ]
    assert names == ["frangi", "mvn-arteries", "mvn-vessels"]
