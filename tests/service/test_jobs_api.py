"""Jobs through HTTP against a running gateway and worker, compared with the library."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from vesselzip.codecs import get_codec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics.compression import compression_metrics
from vesselzip.metrics.segmentation import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.volumes import read_volume

from .helpers import post_job, wait_for_job, wait_until

STAGES = ("upload", "compress", "queue_wait", "fetch", "decompress", "inference", "metrics")


def library_result(image_path, truth_path, codec_config):
    """What the library gives for the same volume, without any service in between."""
    original = read_volume(image_path)
    blob = encode_volume(original, get_codec(codec_config))
    decoded = decode_volume(blob)
    mask = load_segmenter("frangi").segment(decoded)
    truth = read_volume(truth_path)
    return {
        "blob": blob,
        "decoded": decoded,
        "mask": mask,
        "segmentation": segmentation_metrics(mask, truth.data, decoded.spacing),
        "compression": compression_metrics(original.data, decoded.data, blob_nbytes=len(blob)),
    }


@pytest.mark.parametrize(
    "form, config",
    [
        ({"codec": "zfp:rate=4"}, {"id": "zfp", "mode": "rate", "value": 4}),
        ({"codec": "zfp", "mode": "tolerance", "value": "20"}, None),
    ],
)
def test_phantom_through_the_api_matches_the_library(service, phantoms, tmp_path, form, config):
    image, truth = phantoms[0]
    response = post_job(service.base_url, image, truth, model="frangi", **form)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["state"] == "queued"
    assert created["url"].endswith(f"/v1/jobs/{created['id']}")

    job = wait_for_job(service.base_url, created["id"])
    assert job["state"] == "finished", job
    assert job["error"] is None and job["attempts"] == 1 and job["progress"] == 1.0
    assert all(job["stage_seconds"][s] is not None for s in STAGES), job["stage_seconds"]

    expected = library_result(image, truth, job["codec"] if config is None else config)
    mask_response = httpx.get(created["links"]["mask"], timeout=30)
    assert mask_response.status_code == 200
    assert mask_response.headers["content-type"] == "application/gzip"
    mask = read_volume(mask_response.content)
    np.testing.assert_array_equal(mask.data, expected["mask"])
    # The mask lies on the upload's grid.
    np.testing.assert_allclose(mask.affine, read_volume(image).affine, atol=1e-6)

    for name in ("dice", "iou", "sensitivity", "precision", "hd95_mm", "assd_mm"):
        assert job["segmentation"][name] == pytest.approx(expected["segmentation"][name])
    for name in ("cr_raw", "psnr_db", "ssim", "max_abs_error", "rmse", "blob_nbytes"):
        assert job["compression"][name] == pytest.approx(expected["compression"][name])


def test_job_without_truth_has_a_mask_and_no_scores(service, phantoms):
    image, _ = phantoms[1]
    created = post_job(service.base_url, image, codec="none").json()
    job = wait_for_job(service.base_url, created["id"])
    assert job["state"] == "finished", job
    assert job["has_truth"] is False and job["segmentation"] is None
    # "none" is lossless: no PSNR, no error.
    assert job["compression"]["max_abs_error"] == 0 and job["compression"]["psnr_db"] is None
    assert job["model"] == "frangi"  # the server's default model
    assert httpx.get(job["links"]["mask"], timeout=30).status_code == 200


def test_blob_downloaded_through_the_api_decodes_with_the_cli(service, phantoms, tmp_path):
    image, truth = phantoms[2]
    created = post_job(service.base_url, image, truth, codec="zfp:tolerance=10").json()
    response = httpx.get(created["links"]["blob"], timeout=30)
    assert response.status_code == 200
    blob_path = tmp_path / "downloaded.vz"
    blob_path.write_bytes(response.content)

    out = tmp_path / "decoded.nii.gz"
    run = subprocess.run(
        [sys.executable, "-m", "vesselzip", "decompress", str(blob_path), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    decoded = read_volume(out)
    original = read_volume(image)
    expected = decode_volume(encode_volume(original, get_codec(created_codec(service, created))))
    np.testing.assert_array_equal(decoded.data, expected.data)
    assert np.abs(decoded.data.astype(float) - original.data).max() <= 10
    wait_for_job(service.base_url, created["id"])


def created_codec(service, created):
    return httpx.get(created["url"], timeout=10).json()["codec"]


def test_a_queued_job_reports_its_position_and_can_be_cancelled(service, phantoms):
    # The session's worker listens on "cpu" only, so jobs sent to "gpu" wait.
    image, truth = phantoms[0]
    before = service.stored_files()
    first = post_job(service.base_url, image, truth, queue="gpu").json()
    second = post_job(service.base_url, image, queue="gpu").json()
    try:
        a = httpx.get(first["url"], timeout=10).json()
        b = httpx.get(second["url"], timeout=10).json()
        assert (a["state"], a["position"], a["queue"]) == ("queued", 0, "gpu")
        assert (b["state"], b["position"]) == ("queued", 1)
        assert a["stage_seconds"]["queue_wait"] >= 0

        mask = httpx.get(first["links"]["mask"], timeout=10)
        assert mask.status_code == 409 and "queued" in mask.json()["detail"]
        assert httpx.get(first["links"]["blob"], timeout=10).status_code == 200
    finally:
        deleted = httpx.delete(first["url"], timeout=10)
        httpx.delete(second["url"], timeout=10)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": first["id"], "previous_state": "queued", "cancelled": True}
    assert httpx.get(first["url"], timeout=10).json()["state"] == "cancelled"
    assert httpx.get(first["links"]["blob"], timeout=10).status_code == 404
    assert httpx.get(second["url"], timeout=10).json()["position"] is None
    assert service.stored_files() == before  # blob and truth are gone


def test_deleting_a_finished_job_removes_it(service, phantoms):
    image, truth = phantoms[1]
    created = post_job(service.base_url, image, truth).json()
    wait_for_job(service.base_url, created["id"])
    job_id = created["id"]
    assert any(job_id in name for name in service.stored_files())

    response = httpx.delete(created["url"], timeout=10)
    assert response.json() == {"id": job_id, "previous_state": "finished", "cancelled": False}
    assert httpx.get(created["url"], timeout=10).status_code == 404
    assert httpx.get(created["links"]["mask"], timeout=10).status_code == 404
    assert not any(job_id in name for name in service.stored_files())
    assert httpx.delete(created["url"], timeout=10).status_code == 404


@pytest.mark.parametrize(
    "path, status",
    [
        ("/v1/jobs/0123456789abcdef0123456789abcdef", 404),
        ("/v1/jobs/0123456789abcdef0123456789abcdef/mask", 404),
        ("/v1/jobs/0123456789abcdef0123456789abcdef/blob", 404),
        ("/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404),  # no route matches
        ("/v1/jobs/not-a-job-id/blob", 422),
    ],
)
def test_unknown_jobs(service, path, status):
    response = httpx.get(service.base_url + path, timeout=10)
    assert response.status_code == status
    assert "detail" in response.json()


def test_cancelling_a_running_job_stops_it_and_removes_its_files(service, slow_phantom, phantoms):
    created = post_job(service.base_url, *slow_phantom).json()
    job_id = created["id"]
    wait_until(
        lambda: httpx.get(created["url"], timeout=10).json()["state"] == "running",
        60,
        "the job to start",
        interval_s=0.05,
    )
    response = httpx.delete(created["url"], timeout=10)
    assert response.json() == {"id": job_id, "previous_state": "running", "cancelled": True}
    assert httpx.get(created["url"], timeout=10).json()["state"] == "cancelled"
    assert httpx.delete(created["url"], timeout=10).status_code == 404

    # The worker drops the job at its next progress report and goes on with the next.
    image, truth = phantoms[0]
    after = wait_for_job(service.base_url, post_job(service.base_url, image, truth).json()["id"])
    assert after["state"] == "finished"
    assert httpx.get(created["url"], timeout=10).json()["state"] == "cancelled"
    assert not any(job_id in name for name in service.stored_files())
