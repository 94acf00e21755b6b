"""Agreement without labels, through HTTP against running gateways and workers: a
job's mask against the same model's mask of the uncompressed volume, recomputed here
from the downloaded masks; the reference job runs first even when queued together;
a deleted reference lets its dependent run without it; sweeps report agreement per
volume and per setting, with or without truths."""

from __future__ import annotations

import io
from datetime import datetime

import httpx
import numpy as np
import pytest

from vesselzip.volumes import read_volume

from .helpers import post_job, wait_for_job
from .test_datasets_sweeps import wait_for_sweep


def mask_of(base_url: str, job_id: str) -> np.ndarray:
    response = httpx.get(f"{base_url}/v1/jobs/{job_id}/mask", timeout=30)
    assert response.status_code == 200, response.text
    return read_volume(io.BytesIO(response.content).read()).data > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    both = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if both == 0 else 2 * np.count_nonzero(a & b) / both


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@pytest.mark.parametrize("with_truth", [False, True])
def test_a_job_with_agreement_is_scored_against_the_uncompressed_mask(
    service, phantoms, with_truth
):
    image, truth = phantoms[0]
    created = post_job(
        service.base_url,
        image,
        truth if with_truth else None,
        codec="zfp:rate=2",
        agreement="true",
    )
    assert created.status_code == 202, created.text
    job = wait_for_job(service.base_url, created.json()["id"])
    assert job["state"] == "finished", job
    reference_id = job["reference_job"]
    assert reference_id and reference_id != job["id"]
    assert job["links"]["reference"].endswith(f"/v1/jobs/{reference_id}")

    reference = wait_for_job(service.base_url, reference_id)
    assert reference["state"] == "finished"
    assert reference["codec"] == {"id": "none"}
    assert reference["reference_job"] is None and reference["agreement"] is None

    ours, theirs = mask_of(service.base_url, job["id"]), mask_of(service.base_url, reference_id)
    assert job["agreement"]["dice"] == pytest.approx(dice(ours, theirs), abs=1e-9)
    assert job["agreement"]["iou"] == pytest.approx(iou(ours, theirs), abs=1e-9)
    assert job["agreement"]["hd95_mm"] is not None
    # At 2 bits/voxel the mask moves: agreement is measured, not assumed.
    assert job["agreement"]["dice"] < 1.0
    if with_truth:  # both jobs scored against the truth too
        assert job["segmentation"]["dice"] is not None
        assert reference["segmentation"]["dice"] is not None
    else:
        assert job["segmentation"] is None and reference["segmentation"] is None

    # Deleting the job deletes the reference job made for it.
    assert httpx.delete(job["url"], timeout=10).status_code == 200
    assert httpx.get(reference["url"], timeout=10).status_code == 404


def test_a_job_without_agreement_has_no_reference(service, phantoms):
    image, _ = phantoms[1]
    job_id = post_job(service.base_url, image, codec="zfp:rate=4").json()["id"]
    job = wait_for_job(service.base_url, job_id)
    assert job["state"] == "finished"
    assert job["reference_job"] is None and job["agreement"] is None
    # Codec none is the uncompressed volume already: nothing to compare with.
    job_id = post_job(service.base_url, image, codec="none", agreement="true").json()["id"]
    job = wait_for_job(service.base_url, job_id)
    assert job["reference_job"] is None and job["agreement"] is None


def test_the_job_waits_for_its_reference_and_runs_without_it_when_deleted(private_stack, phantoms):
    """No worker at first: the job waits for its reference (not in the queue), then a
    worker runs them in order. A second pair whose reference is deleted while waiting
    runs alone, with a note that says why it has no agreement."""
    stack = private_stack
    stack.start_gateway()
    image, _ = phantoms[2]
    first = post_job(stack.base_url, image, codec="zfp:tolerance=0.3", agreement="true").json()
    second = post_job(stack.base_url, image, codec="zfp:rate=2", agreement="true").json()
    waiting = httpx.get(first["url"], timeout=10).json()
    assert waiting["state"] == "queued"
    assert waiting["stage"] == "waiting_for_reference"
    assert waiting["position"] is None  # not in the queue until its reference ended
    reference = httpx.get(waiting["links"]["reference"], timeout=10).json()
    assert reference["state"] == "queued" and reference["position"] is not None

    second_reference = httpx.get(second["url"], timeout=10).json()["links"]["reference"]
    assert httpx.delete(second_reference, timeout=10).status_code == 200

    stack.start_worker()
    stack.wait_ready()
    done = wait_for_job(stack.base_url, first["id"])
    assert done["state"] == "finished" and done["agreement"]["dice"] is not None
    ref_done = wait_for_job(stack.base_url, done["reference_job"])
    assert datetime.fromisoformat(ref_done["finished_at"]) <= datetime.fromisoformat(
        done["started_at"]
    )
    alone = wait_for_job(stack.base_url, second["id"])
    assert alone["state"] == "finished"
    assert alone["agreement"] is None
    assert any("no agreement" in note for note in alone["notes"]), alone["notes"]


def test_a_sweep_without_truths_reports_agreement(service, phantoms):
    files = [("images", (image.name, image.read_bytes())) for image, _ in phantoms[:2]]
    dataset = httpx.post(f"{service.base_url}/v1/datasets", files=files, timeout=60)
    assert dataset.status_code == 201, dataset.text
    sweep = httpx.post(
        f"{service.base_url}/v1/sweeps",
        json={"dataset": dataset.json()["id"], "grid": ["zfp:rate=2", "zfp:tolerance=0.5"]},
        timeout=60,
    )
    assert sweep.status_code in (201, 202), sweep.text
    status = wait_for_sweep(service.base_url, sweep.json()["id"])
    assert status["progress"]["state"] == "finished", status
    cases = httpx.get(f"{sweep.json()['url']}/cases", timeout=30).json()["cases"]
    baselines = {c["volume"]: c["job_id"] for c in cases if c["setting"] == "none"}
    for case in cases:
        assert case["dice"] is None  # no truth: no accuracy
        if case["setting"] == "none":
            assert case["agreement_dice"] is None
            continue
        ours = mask_of(service.base_url, case["job_id"])
        theirs = mask_of(service.base_url, baselines[case["volume"]])
        assert case["agreement_dice"] == pytest.approx(dice(ours, theirs), abs=1e-9)
        assert case["agreement_iou"] == pytest.approx(iou(ours, theirs), abs=1e-9)
    tables = httpx.get(f"{sweep.json()['url']}/tables", timeout=30).json()
    for row in tables["settings"][1:]:
        mine = [c["agreement_dice"] for c in cases if c["setting"] == row["setting"]]
        assert row["n_agreement"] == 2
        assert row["agreement_dice_mean"] == pytest.approx(np.mean(mine), abs=1e-9)
        assert row["agreement_dice_min"] == pytest.approx(min(mine), abs=1e-9)
        assert row["n_scored"] == 0 and row["dice_mean"] is None
    markdown = httpx.get(f"{sweep.json()['url']}/tables", params={"format": "md"}, timeout=30)
    assert "Mean agreement Dice" in markdown.text
    # Dice against CR becomes agreement against CR when there is no truth.
    figure = httpx.get(f"{sweep.json()['url']}/figures/dice_vs_cr.png", timeout=60)
    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")


def test_a_sweep_job_waits_for_its_baseline(private_stack, phantoms):
    """Queued with no worker, a sweep's settings wait for the baseline of their volume;
    with two workers they still end up compared with it."""
    stack = private_stack
    stack.start_gateway()
    image, truth = phantoms[0]
    dataset = httpx.post(
        f"{stack.base_url}/v1/datasets",
        files=[
            ("images", (image.name, image.read_bytes())),
            ("truths", (truth.name, truth.read_bytes())),
        ],
        timeout=60,
    ).json()
    sweep = httpx.post(
        f"{stack.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "grid": ["zfp:rate=4", "zfp:rate=2"]},
        timeout=60,
    ).json()
    cases = httpx.get(f"{sweep['url']}/cases", timeout=30).json()["cases"]
    for case in cases[1:]:
        job = httpx.get(f"{stack.base_url}/v1/jobs/{case['job_id']}", timeout=10).json()
        assert job["stage"] == "waiting_for_reference"
        assert job["reference_job"] == cases[0]["job_id"]
    stack.start_worker()
    stack.start_worker()
    stack.wait_ready(workers=2)
    status = wait_for_sweep(stack.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished"
    cases = httpx.get(f"{sweep['url']}/cases", timeout=30).json()["cases"]
    assert all(c["agreement_dice"] is not None for c in cases[1:])
    assert all(c["dice"] is not None for c in cases)
