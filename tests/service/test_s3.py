"""The service on an S3-compatible store (a real local S3 server, moto's, started by
the tests): every object in the bucket and none on local disk, hosts that share
nothing but Redis and the bucket, presigned downloads, and the store's faults."""

from __future__ import annotations

import signal
import subprocess
import sys

import boto3
import httpx
import pytest

from tests.s3_server import FaultyProxy, new_bucket
from vesselzip.volumes import read_volume

from .helpers import post_job, wait_for_job, wait_until
from .test_datasets_sweeps import a_running_case, create_dataset, dataset_of, wait_for_sweep
from .test_embedded import serve_ready, start_serve

pytestmark = pytest.mark.slow


def bucket_keys(bucket: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def local_files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_embedded_service_keeps_every_object_in_the_bucket(s3_endpoint, tmp_path, phantoms):
    bucket = new_bucket()
    serve, url, log = start_serve(tmp_path, extra_env={"VESSELZIP_STORE_URL": f"s3://{bucket}/vz"})
    try:
        wait_until(lambda: serve_ready(url), 120, "serve to be ready", interval_s=0.3)
        (image, truth), *others = phantoms
        job = post_job(url, image, truth, codec="zfp:tolerance=50").json()
        status = wait_for_job(url, job["id"])
        assert status["state"] == "finished", status
        mask = httpx.get(f"{url}/v1/jobs/{job['id']}/mask", timeout=30)
        assert mask.status_code == 200
        assert 'filename="' in mask.headers["content-disposition"]
        (tmp_path / "mask.nii.gz").write_bytes(mask.content)
        assert read_volume(tmp_path / "mask.nii.gz").shape == read_volume(image).shape
        blob = httpx.get(f"{url}/v1/jobs/{job['id']}/blob", timeout=30)
        assert (
            blob.status_code == 200
            and blob.content[:4]
            and len(blob.content) == int(blob.headers["content-length"])
        )

        dataset = create_dataset(url, others, data={"name": "two"}).json()
        sweep = httpx.post(
            f"{url}/v1/sweeps",
            json={"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "frangi"},
            timeout=30,
        ).json()
        swept = wait_for_sweep(url, sweep["id"])
        assert swept["progress"]["state"] == "finished", swept
        assert httpx.get(f"{sweep['url']}/tables", timeout=30).status_code == 200
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)

    keys = bucket_keys(bucket)
    assert all(key.startswith("vz/") for key in keys)
    for kind in ["blobs", "truth", "masks", "results"]:
        assert any(key.startswith(f"vz/{kind}/{job['id']}") for key in keys), (kind, keys)
    for kind in ["datasets", "sweeps", "index"]:
        assert any(key.startswith(f"vz/{kind}/") for key in keys), (kind, keys)
    # The local folder holds the embedded Redis and logs, and nothing of the store.
    stored_here = {
        f for f in local_files(tmp_path / "store") if not f.startswith(("redis/", "logs/"))
    }
    assert stored_here == set(), stored_here
    assert "embedded Redis" in log.read_text()


def test_hosts_sharing_only_redis_and_the_bucket_finish_a_sweep_through_a_killed_worker(
    s3_endpoint, private_stack, slow_phantom, phantoms, tmp_path
):
    stack = private_stack
    bucket = new_bucket()
    stack.env["VESSELZIP_STORE_URL"] = f"s3://{bucket}"
    hosts = {name: tmp_path / name for name in ["gateway", "gpu-1", "gpu-2"]}
    for folder in hosts.values():
        folder.mkdir()

    def on_host(name: str) -> dict:
        # Each process's own working folder; the store URL wins over the folder.
        return {"extra_env": {"VESSELZIP_STORE_DIR": str(hosts[name] / "var")}, "cwd": hosts[name]}

    stack.start_gateway(**on_host("gateway"))
    first = stack.start_worker(**on_host("gpu-1"))
    stack.wait_ready()
    dataset = dataset_of({"slow": slow_phantom, "small": phantoms[0]}, stack.base_url)
    sweep = httpx.post(
        f"{stack.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "grid": ["zfp:rate=8", "zfp:rate=4"], "model": "frangi"},
        timeout=30,
    ).json()
    killed = a_running_case(sweep["url"])
    first.kill()  # SIGKILL, in the middle of a job
    first.wait()
    stack.start_worker(**on_host("gpu-2"))
    status = wait_for_sweep(stack.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished", status["failures"]
    job = httpx.get(f"{stack.base_url}/v1/jobs/{killed['job_id']}", timeout=10).json()
    assert job["state"] == "finished" and job["attempts"] == 2
    assert any(key.startswith(f"masks/{killed['job_id']}") for key in bucket_keys(bucket))
    for name, folder in hosts.items():  # nothing of the store on any host's disk
        assert not any(
            f.startswith(("blobs", "masks", "results", "datasets")) for f in local_files(folder)
        ), name


def test_downloads_redirect_to_presigned_urls_when_asked(s3_endpoint, private_stack, phantoms):
    stack = private_stack
    stack.env["VESSELZIP_STORE_URL"] = f"s3://{new_bucket()}/p"
    stack.start_gateway({"VESSELZIP_PRESIGN_DOWNLOADS": "true"})
    stack.start_worker()
    stack.wait_ready()
    image, truth = phantoms[0]
    job = post_job(stack.base_url, image, truth).json()
    assert wait_for_job(stack.base_url, job["id"])["state"] == "finished"
    answer = httpx.get(f"{stack.base_url}/v1/jobs/{job['id']}/mask", timeout=30)
    assert answer.status_code == 307
    assert answer.headers["location"].startswith(s3_endpoint)
    fetched = httpx.get(f"{stack.base_url}/v1/jobs/{job['id']}/mask", follow_redirects=True)
    assert fetched.status_code == 200 and fetched.content[:2] == b"\x1f\x8b"  # gzip


def test_a_missing_bucket_is_named_at_start_and_by_ready(s3_endpoint, private_stack, tmp_path):
    stack = private_stack
    stack.env["VESSELZIP_STORE_URL"] = "s3://no-such-bucket/vz"
    stack.start_gateway()
    ready = httpx.get(f"{stack.base_url}/v1/ready", timeout=30)
    assert ready.status_code == 503
    body = ready.json()
    assert body["store"] is False and "S3 bucket 'no-such-bucket' does not exist" in body["detail"]
    worker = subprocess.run(
        [sys.executable, "-m", "vesselzip", "worker"],
        env=stack._env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode != 0
    assert "cannot start: S3 bucket 'no-such-bucket' does not exist" in worker.stderr
    assert "Traceback" not in worker.stderr


def test_a_store_that_goes_away_mid_job_ends_jobs_with_a_reason_and_comes_back(
    s3_endpoint, private_stack, slow_phantom, phantoms
):
    from moto.server import ThreadedMotoServer

    from .helpers import free_port

    # A server of this test's own, to stop and start again; moto keeps the buckets in
    # this process, so what was stored is still there when it is back.
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack = private_stack
    stack.env.update(
        {
            "VESSELZIP_STORE_URL": f"s3://{new_bucket()}",
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
            "AWS_MAX_ATTEMPTS": "2",
            "VESSELZIP_JOB_RETRIES": "1",
            "VESSELZIP_JOB_RETRY_BACKOFF_S": "0.5",
        }
    )
    try:
        stack.start_gateway()
        stack.start_worker()
        stack.wait_ready()
        image, truth = slow_phantom
        doomed = post_job(stack.base_url, image, truth).json()
        wait_for_job(stack.base_url, doomed["id"], states=("running",), timeout_s=60)
        server.stop()  # mid-job: its mask and result cannot be written, nor a retry read
        ended = wait_for_job(stack.base_url, doomed["id"], timeout_s=120)
        assert ended["state"] == "failed" and ended["attempts"] == 2, ended
        assert "store" in ended["error"], ended["error"]
        ready = httpx.get(f"{stack.base_url}/v1/ready", timeout=30).json()
        assert ready["store"] is False and "Could not connect" in ready["detail"]
        refused = post_job(stack.base_url, *phantoms[0])
        assert refused.status_code == 503 and "store" in refused.json()["detail"]

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        wait_until(
            lambda: httpx.get(f"{stack.base_url}/v1/ready", timeout=30).json()["ready"],
            60,
            "the store to be back",
        )
        # Nothing half-written is read as a result: the failed job has no mask.
        mask = httpx.get(f"{stack.base_url}/v1/jobs/{doomed['id']}/mask", timeout=30)
        assert mask.status_code == 409
        again = post_job(stack.base_url, *phantoms[0]).json()
        assert wait_for_job(stack.base_url, again["id"])["state"] == "finished"
    finally:
        server.stop()


def test_jobs_finish_through_a_slow_store_that_answers_errors(s3_endpoint, private_stack, phantoms):
    # Every third request answered 503 SlowDown, every answer 0.1 s late.
    proxy = FaultyProxy(s3_endpoint, fail_every=3, delay_s=0.1)
    stack = private_stack
    stack.env.update(
        {"VESSELZIP_STORE_URL": f"s3://{new_bucket()}/p", "AWS_ENDPOINT_URL_S3": proxy.url}
    )
    try:
        stack.start_gateway()
        stack.start_worker()
        stack.wait_ready()
        image, truth = phantoms[1]
        job = post_job(stack.base_url, image, truth, codec="zfp:tolerance=50")
        assert job.status_code == 202, job.text
        status = wait_for_job(stack.base_url, job.json()["id"])
        assert status["state"] == "finished" and status["attempts"] == 1, status
        mask = httpx.get(f"{stack.base_url}/v1/jobs/{job.json()['id']}/mask", timeout=60)
        assert mask.status_code == 200 and mask.content[:2] == b"\x1f\x8b"
        assert proxy.failed >= 5  # the errors were there, and retried away
    finally:
        stack.stop()
        proxy.close()
