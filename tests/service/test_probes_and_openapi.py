"""Health, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .helpers import post_job, wait_for_job


def test_health_and_ready(service):
    health = httpx.get(f"{service.base_url}/v1/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = httpx.get(f"{service.base_url}/v1/ready", timeout=10).json()
    assert ready == {"ready": True, "redis": True, "store": True, "workers": 1, "detail": None}


def scrape(service) -> dict:
    response = httpx.get(f"{service.base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_jobs_and_stage_durations(service, phantoms):
    image, truth = phantoms[0]
    before = scrape(service)
    job = wait_for_job(service.base_url, post_job(service.base_url, image, truth).json()["id"])
    waiting = post_job(service.base_url, image, queue="gpu").json()  # no gpu worker: waits
    try:
        after = scrape(service)
    finally:
        httpx.delete(waiting["url"], timeout=10)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert job["state"] == "finished"
    assert delta("vesselzip_jobs_created_total") == 2
    assert delta("vesselzip_jobs_ended_total", state="finished") == 1
    assert after[("vesselzip_queue_depth", (("queue", "gpu"),))] == 1
    assert after[("vesselzip_jobs", (("state", "queued"),))] >= 1
    assert after[("vesselzip_workers", ())] == 1
    for stage in ("upload", "compress", "queue_wait", "decompress", "inference", "metrics"):
        assert delta("vesselzip_stage_seconds_count", stage=stage) >= 1, stage
        inf = after[("vesselzip_stage_seconds_bucket", (("le", "+Inf"), ("stage", stage)))]
        assert inf == after[("vesselzip_stage_seconds_count", (("stage", stage),))]
    assert delta("vesselzip_stage_seconds_sum", stage="inference") > 0


def test_openapi_describes_the_api(service):
    spec = httpx.get(f"{service.base_url}/openapi.json", timeout=10).json()
    paths = spec["paths"]
    assert set(paths) >= {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/mask",
        "/v1/jobs/{job_id}/blob",
        "/v1/health",
        "/v1/ready",
        "/metrics",
    }
    assert set(paths["/v1/jobs"]) == {"post"}
    assert set(paths["/v1/jobs/{job_id}"]) == {"get", "delete"}

    post = paths["/v1/jobs"]["post"]
    assert {"202", "401", "413", "422", "503"} <= set(post["responses"])
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert form["required"] == ["image"]
    assert {"image", "truth", "codec", "mode", "value", "model", "queue", "agreement"} == set(
        form["properties"]
    )
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"

    status = spec["components"]["schemas"]["JobStatus"]["properties"]
    for field in ("state", "position", "progress", "stage_seconds", "compression", "segmentation"):
        assert field in status
    stages = spec["components"]["schemas"]["StageSeconds"]["properties"]
    assert {
        "upload",
        "compress",
        "queue_wait",
        "fetch",
        "decompress",
        "inference",
        "metrics",
    } <= set(stages)
    mask = paths["/v1/jobs/{job_id}/mask"]["get"]["responses"]
    assert "application/gzip" in mask["200"]["content"] and "409" in mask
