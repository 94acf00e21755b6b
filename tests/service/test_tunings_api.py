"""Tunings through HTTP against a running gateway and worker (the Frangi baseline on
small phantoms): the answer checked against an independent sweep over every candidate,
agreement-only tunings, reuse of jobs both ways, the gateway moving a tuning on with
nobody asking, refused requests, and the `vesselzip tune` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import httpx
import pytest

from vesselzip.tunings import search_axis

from .helpers import wait_until
from .test_datasets_sweeps import create_dataset, wait_for_sweep

RATE_RANGE = (0.5, 4.0)
BUDGET = 0.01


def wait_for_tuning(base_url: str, tuning_id: str, timeout_s: float = 300) -> dict:
    def done():
        body = httpx.get(f"{base_url}/v1/tunings/{tuning_id}", timeout=30).json()
        return body if body["progress"]["state"] in ("finished", "failed") else None

    return wait_until(done, timeout_s, f"tuning {tuning_id} to end", interval_s=0.5)


@pytest.fixture(scope="module")
def dataset(service, phantoms):
    created = create_dataset(service.base_url, phantoms, data={"name": "tuned"})
    assert created.status_code == 201, created.text
    return created.json()


@pytest.fixture(scope="module")
def rate_tuning(service, dataset):
    response = httpx.post(
        f"{service.base_url}/v1/tunings",
        json={
            "dataset": dataset["id"],
            "codec": "zfp:rate",
            "range": list(RATE_RANGE),
            "max_dice_loss": BUDGET,
            "model": "frangi",
        },
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json(), wait_for_tuning(service.base_url, response.json()["id"])


def test_the_answer_holds_against_a_sweep_over_every_candidate(service, dataset, rate_tuning):
    created, tuning = rate_tuning
    assert tuning["progress"]["state"] == "finished"
    assert tuning["score"] == "truth"  # every volume has a truth
    candidates = search_axis("zfp:rate", RATE_RANGE).values  # mildest first
    assert created["candidates"] == len(candidates) == tuning["candidates"]

    grid = [f"zfp:rate={v:g}" for v in candidates]
    sweep = httpx.post(
        f"{service.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "grid": grid, "model": "frangi"},
        timeout=60,
    ).json()
    # Every job the tuning ran is one the sweep needs: none of them runs again.
    assert sweep["jobs_reused"] >= tuning["inferences"]["used"]
    status = wait_for_sweep(service.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished"
    cases = httpx.get(f"{sweep['url']}/cases", timeout=30).json()["cases"]
    loss = {(c["volume"], c["setting"]): -c["delta_dice"] for c in cases if c["setting"] != "none"}

    for search in tuning["volumes"]:
        assert search["state"] == "finished"
        volume = search["volume"]
        for probe in search["path"]:  # what the tuning saw is what the sweep shows
            assert probe["loss"] == pytest.approx(loss[volume, probe["setting"]], abs=1e-12)
        if search["best_setting"] is None:
            assert loss[volume, grid[0]] > BUDGET
            continue
        best = grid.index(search["best_setting"])
        assert loss[volume, grid[best]] <= BUDGET  # within budget...
        if best + 1 < len(grid):  # ...and the next stronger setting is not
            assert loss[volume, grid[best + 1]] > BUDGET
        assert len(search["path"]) <= math.ceil(math.log2(len(grid) + 1))

    answer = tuning["answer"]
    assert answer["state"] == "finished"
    needed = math.ceil(0.95 * len(tuning["volumes"]))
    within = [
        v["volume"] for v in tuning["volumes"] if loss[v["volume"], answer["setting"]] <= BUDGET
    ]
    assert answer["volumes_within"] == len(within) >= needed
    row = next(r for r in status["settings"] if r["setting"] == answer["setting"])
    assert answer["cr_pooled"] == pytest.approx(row["cr_pooled"], rel=1e-12)
    assert answer["delta_dice_mean"] == pytest.approx(row["delta_dice_mean"], abs=1e-12)
    assert answer["delta_dice_ci_low"] == pytest.approx(row["delta_dice_ci_low"], abs=1e-12)
    assert answer["delta_dice_ci_high"] == pytest.approx(row["delta_dice_ci_high"], abs=1e-12)
    inferences = tuning["inferences"]
    assert inferences["full_grid"] == len(tuning["volumes"]) * (len(grid) + 1)
    assert inferences["used"] < inferences["full_grid"]
    assert inferences["ran"] + inferences["reused"] == inferences["used"]


def test_a_tuning_posted_again_is_the_same_one_and_another_budget_reuses_its_jobs(
    service, dataset, rate_tuning
):
    created, first = rate_tuning
    body = {
        "dataset": dataset["id"],
        "codec": "zfp:rate",
        "range": list(RATE_RANGE),
        "max_dice_loss": BUDGET,
        "model": "frangi",
    }
    again = httpx.post(f"{service.base_url}/v1/tunings", json=body, timeout=60)
    assert again.status_code == 200 and again.json()["id"] == created["id"]
    assert again.json()["created"] is False

    looser = httpx.post(
        f"{service.base_url}/v1/tunings", json={**body, "max_dice_loss": 2 * BUDGET}, timeout=60
    )
    assert looser.status_code == 202 and looser.json()["id"] != created["id"]
    second = wait_for_tuning(service.base_url, looser.json()["id"])
    assert second["progress"]["state"] == "finished"
    assert second["inferences"]["reused"] >= len(second["volumes"])  # the baselines at least
    listed = httpx.get(f"{service.base_url}/v1/tunings", timeout=30).json()["tunings"]
    assert {created["id"], second["id"]} <= {t["id"] for t in listed}


def test_a_tuning_without_truths_runs_on_agreement(service, phantoms):
    files = [("images", (image.name, image.read_bytes())) for image, _ in phantoms[:2]]
    dataset = httpx.post(f"{service.base_url}/v1/datasets", files=files, timeout=60).json()
    budget = 0.03
    response = httpx.post(
        f"{service.base_url}/v1/tunings",
        json={
            "dataset": dataset["id"],
            "codec": "zfp:tolerance",
            "range": [10, 3000],
            "max_dice_loss": budget,
            "coverage": 1.0,
            "model": "frangi",
        },
        timeout=60,
    )
    assert response.status_code == 202, response.text
    tuning = wait_for_tuning(service.base_url, response.json()["id"])
    assert tuning["score"] == "agreement"
    assert tuning["progress"]["state"] == "finished"
    for search in tuning["volumes"]:
        assert search["state"] == "finished" and search["baseline_dice"] is None
        for probe in search["path"]:
            assert probe["dice"] is None  # no truth: no accuracy, only agreement
            assert probe["loss"] == pytest.approx(1 - probe["agreement_dice"], abs=1e-12)
            assert probe["within_budget"] == (probe["loss"] <= budget)
    answer = tuning["answer"]
    assert answer["state"] in ("finished", "none")
    if answer["state"] == "finished":
        assert answer["delta_dice_mean"] is None
        assert answer["agreement_dice_min"] >= 1 - budget


def test_the_gateway_moves_a_tuning_on_with_nobody_asking(service, dataset):
    response = httpx.post(
        f"{service.base_url}/v1/tunings",
        json={
            "dataset": dataset["id"],
            "codec": "sz3:tolerance",
            "range": [50, 2000],
            "max_dice_loss": BUDGET,
            "model": "frangi",
        },
        timeout=60,
    )
    assert response.status_code == 202, response.text
    tuning_id = response.json()["id"]
    with service.redis_server.client() as client:
        assert client.sismember("vesselzip:tunings:active", tuning_id)
        # Only the gateway's own rounds move it on: no status is read meanwhile.
        wait_until(
            lambda: not client.sismember("vesselzip:tunings:active", tuning_id),
            300,
            "the tuning to end",
            interval_s=0.5,
        )
    tuning = httpx.get(response.json()["url"], timeout=30).json()
    assert tuning["progress"]["state"] == "finished"
    assert tuning["progress"]["done"] == tuning["progress"]["total"]
    assert all(len(v["path"]) >= 2 for v in tuning["volumes"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"codec": "zstd:level", "max_dice_loss": 0.01}, 422, "cannot be tuned"),
        ({"codec": "zfp", "max_dice_loss": 0.01}, 422, "CODEC:MODE"),
        ({"codec": "zfp:tolerance", "max_dice_loss": 0.01, "range": [9, 3]}, 422, "range"),
        ({"codec": "zfp:tolerance", "max_dice_loss": 2}, 422, "less than or equal"),
        ({"codec": "zfp:tolerance", "max_dice_loss": 0.01, "model": "nope"}, 422, "model"),
    ],
)
def test_tuning_requests_that_are_refused(service, dataset, body, status, message):
    response = httpx.post(
        f"{service.base_url}/v1/tunings", json={"dataset": dataset["id"], **body}, timeout=30
    )
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json())


def test_unknown_datasets_and_tunings_and_truth_scores_without_truths(service, phantoms):
    base = service.base_url
    missing = httpx.post(
        f"{base}/v1/tunings",
        json={"dataset": "0" * 32, "codec": "zfp:tolerance", "max_dice_loss": 0.01},
        timeout=30,
    )
    assert missing.status_code == 404
    assert httpx.get(f"{base}/v1/tunings/{'0' * 32}", timeout=30).status_code == 404
    files = [("images", (phantoms[0][0].name, phantoms[0][0].read_bytes()))]
    unlabelled = httpx.post(f"{base}/v1/datasets", files=files, timeout=60).json()
    refused = httpx.post(
        f"{base}/v1/tunings",
        json={
            "dataset": unlabelled["id"],
            "codec": "zfp:tolerance",
            "max_dice_loss": 0.01,
            "score": "truth",
        },
        timeout=30,
    )
    assert refused.status_code == 422 and "score=agreement" in refused.text


def test_tune_command(service, phantoms, tmp_path):
    from vesselzip.phantoms import write_phantom_dataset

    write_phantom_dataset(tmp_path / "data", 2, seed=11, shape=(40, 40, 32))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "vesselzip", "tune", str(tmp_path / "data")]
        + ["--url", service.base_url, "--codec", "zfp:tolerance", "--max-dice-loss", "0.01"]
        + ["--range", "100", "2000", "--model", "frangi", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["progress"]["state"] == "finished"
    answer = tuning["answer"]
    if answer["setting"]:
        assert answer["setting"] in result.stdout
    for search in tuning["volumes"]:
        assert search["volume"] in result.stdout
    assert "inferences" in result.stdout
