"""Redis restarted (its append-only file keeps the records) or flushed (the results
JSON in the store keeps every finished result): nothing finished is lost, and the
gateway and workers carry on without being restarted."""

from __future__ import annotations

import httpx

from .helpers import post_job, wait_for_job, wait_until


def test_restarted_and_flushed_redis(private_stack, phantoms):
    stack = private_stack
    stack.start_gateway()
    stack.start_worker()
    stack.wait_ready()
    image, truth = phantoms[0]

    before = wait_for_job(stack.base_url, post_job(stack.base_url, image, truth).json()["id"])
    assert before["state"] == "finished"

    stored = stack.stored_files()
    stack.redis_server.stop()
    down = httpx.get(f"{stack.base_url}/v1/ready", timeout=10)
    assert down.status_code == 503 and down.json()["redis"] is False
    response = post_job(stack.base_url, image, truth)
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"]
    assert stack.stored_files() == stored and stack.spooled_files() == []
    stack.redis_server.start()

    after_restart = httpx.get(before["url"], timeout=10).json()
    assert after_restart["state"] == "finished"
    assert after_restart["segmentation"] == before["segmentation"]
    # The worker reconnects by itself and takes new jobs.
    stack.wait_ready(timeout_s=60)
    again = post_job(stack.base_url, image, truth)
    assert again.status_code == 202
    assert wait_for_job(stack.base_url, again.json()["id"])["state"] == "finished"

    with stack.redis_server.client() as client:
        client.flushall()
    after_flush = httpx.get(before["url"], timeout=10).json()
    assert after_flush["state"] == "finished"
    assert after_flush["segmentation"] == before["segmentation"]
    assert after_flush["compression"] == before["compression"]
    assert httpx.get(before["links"]["mask"], timeout=10).status_code == 200
    assert httpx.get(before["links"]["blob"], timeout=10).status_code == 200

    # Workers re-register after the flush (their keys were flushed too).
    wait_until(
        lambda: httpx.get(f"{stack.base_url}/v1/ready", timeout=10).json()["workers"] >= 1,
        60,
        "the worker to show up again after the flush",
    )
    third = post_job(stack.base_url, image, truth, codec="zfp:rate=4")
    assert wait_for_job(stack.base_url, third.json()["id"])["state"] == "finished"
