"""Access, validation and error shapes, decided by the gateway alone (in-process)."""

from __future__ import annotations

import pytest

from tests.service.hostile import BY_ID, GOOD, request_parts
from vesselzip.errors import InvalidCodecConfigError
from vesselzip.sweeps import parse_grid
from vesselzip_api.sweep_schemas import SweepRequest

from .conftest import ALICE, BOB

JOB_ID = "0" * 32


def made_open(client) -> dict[str, str]:
    """A job, a dataset and a sweep made while the API is open (no worker runs them)."""
    job = client.post("/v1/jobs", files={"image": ("a.nii.gz", GOOD)}, data={"queue": "gpu"})
    dataset = client.post("/v1/datasets", files=[("images", ("a.nii.gz", GOOD))])
    body = {"dataset": dataset.json()["id"], "grid": ["none"], "model": "frangi", "queue": "gpu"}
    sweep = client.post("/v1/sweeps", json=body)
    assert (job.status_code, dataset.status_code, sweep.status_code) == (202, 201, 202)
    return {"job": job.json()["id"], "dataset": dataset.json()["id"], "sweep": sweep.json()["id"]}


def made_by(keyed, headers) -> dict[str, str]:
    job = keyed.post(
        "/v1/jobs", files={"image": ("a.nii.gz", GOOD)}, data={"queue": "gpu"}, headers=headers
    )
    dataset = keyed.post("/v1/datasets", files=[("images", ("a.nii.gz", GOOD))], headers=headers)
    body = {"dataset": dataset.json()["id"], "grid": ["none"], "model": "frangi", "queue": "gpu"}
    sweep = keyed.post("/v1/sweeps", json=body, headers=headers)
    assert (job.status_code, dataset.status_code, sweep.status_code) == (202, 201, 202)
    return {"job": job.json()["id"], "dataset": dataset.json()["id"], "sweep": sweep.json()["id"]}


def reads(ids: dict[str, str]) -> list[str]:
    return [
        f"/v1/jobs/{ids['job']}",
        f"/v1/jobs/{ids['job']}/blob",
        f"/v1/datasets/{ids['dataset']}",
        f"/v1/sweeps/{ids['sweep']}",
        f"/v1/sweeps/{ids['sweep']}/tables",
    ]


def test_one_access_rule_for_all_three_kinds(client, keyed):
    open_ids = made_open(client)
    alices = made_by(keyed, ALICE)
    for path in reads(alices):
        assert keyed.get(path, headers=ALICE).status_code == 200, path
        assert keyed.get(path, headers=BOB).status_code == 403, path
        assert keyed.get(path).status_code == 401, path
    for path in reads(open_ids):  # made while open: no key reaches it
        answer = keyed.get(path, headers=ALICE)
        assert answer.status_code == 403 and "another API key" in answer.json()["detail"]
    for kind in ("datasets", "sweeps"):
        listed = {d["id"] for d in keyed.get(f"/v1/{kind}", headers=ALICE).json()[kind]}
        assert alices[kind[:-1]] in listed and open_ids[kind[:-1]] not in listed
        assert alices[kind[:-1]] not in {
            d["id"] for d in keyed.get(f"/v1/{kind}", headers=BOB).json()[kind]
        }
    # The open gateway reaches everything, whoever made it.
    for path in reads(alices) + reads(open_ids):
        assert client.get(path).status_code == 200, path
    assert keyed.delete(f"/v1/datasets/{open_ids['dataset']}", headers=ALICE).status_code == 403
    assert keyed.delete(f"/v1/jobs/{alices['job']}", headers=BOB).status_code == 403
    assert keyed.delete(f"/v1/jobs/{alices['job']}", headers=ALICE).status_code == 200


@pytest.mark.parametrize("key", ["", "key-mallory", "clé".encode(), b"\xff\xfe"])
def test_missing_unknown_or_non_ascii_keys_are_401(keyed, key):
    for path in (f"/v1/jobs/{JOB_ID}", "/v1/datasets", "/v1/sweeps"):
        answer = keyed.get(path, headers={"X-API-Key": key})
        assert answer.status_code == 401 and "API key" in answer.json()["detail"], path


@pytest.mark.parametrize(
    "case_id",
    [
        "sform-nan",
        "vox-offset-1e9",
        "truth-other-grid",
        "codec-400-digits",
        "model-unknown",
        "model-not-loadable",
        "too-thin-1x64x64",
    ],
)
def test_bad_input_is_a_json_4xx_naming_the_field(client, case_id):
    case = BY_ID[case_id]
    files, form = request_parts(case)
    answer = client.post("/v1/jobs", files=files, data=form)
    assert answer.status_code == case.status
    assert answer.headers["content-type"] == "application/json"
    assert case.detail in answer.json()["detail"]


def test_form_errors_follow_fastapis_list_shape(client):
    answer = client.post("/v1/jobs", files={"image": ("a.nii.gz", GOOD)}, data={"queue": "tpu"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "queue"]
    assert client.post("/v1/jobs").status_code == 422  # no image


def test_unknown_things_are_404_and_bad_ids_422(client):
    assert client.get(f"/v1/jobs/{JOB_ID}").status_code == 404
    assert client.get(f"/v1/datasets/{JOB_ID}").status_code == 404
    assert client.get(f"/v1/sweeps/{JOB_ID}").status_code == 404
    assert client.get("/v1/jobs/not-an-id").status_code == 422
    assert client.delete(f"/v1/jobs/{JOB_ID}").json()["detail"].startswith("no job")


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    "form",
    [
        {"codec": HUGE},
        {"codec": "zfp", "mode": "rate", "value": HUGE},
        {"codec": "zfp", "mode": HUGE, "value": "2"},
        {"codec": "zfp:rate=" + "9" * 100_000},
        {"codec": "zfp", "value": HUGE},
        {"model": HUGE},
        {"queue": HUGE},
    ],
)
def test_a_100_kb_form_field_gives_a_short_422(client, form):
    answer = client.post("/v1/jobs", files={"image": ("a.nii.gz", GOOD)}, data=form)
    assert answer.status_code == 422
    assert len(answer.content) < 2048, answer.text[:300]
    assert "characters)" in answer.text or "got inf" in answer.text  # said where it was cut


def test_a_huge_sweep_request_gives_a_short_422(client):
    answer = client.post("/v1/sweeps", json={"dataset": HUGE, "grid": list(range(100_000))})
    assert answer.status_code == 422
    assert len(answer.content) < 2048, answer.text[:300]
    errors = answer.json()["detail"]  # FastAPI's list shape, inputs cut
    assert {tuple(e["loc"]) for e in errors} == {("body", "dataset"), ("body", "grid")}
    assert all(len(str(e["input"])) < 200 for e in errors)


def test_the_sweep_schema_and_parse_grid_count_settings_alike(client):
    grid_schema = SweepRequest.model_json_schema()["properties"]["grid"]["anyOf"][0]
    limit = grid_schema["maxItems"]
    assert len(parse_grid([f"zfp:rate={n}" for n in range(1, limit + 1)])) == limit + 1
    with pytest.raises(InvalidCodecConfigError, match=f"at most {limit} distinct settings besides"):
        parse_grid([f"zfp:precision={n}" for n in range(1, limit + 2)])

    dataset = client.post("/v1/datasets", files=[("images", ("a.nii.gz", GOOD))]).json()["id"]
    too_many = [f"zfp:precision={n}" for n in range(1, limit + 2)]
    answer = client.post("/v1/sweeps", json={"dataset": dataset, "grid": too_many})
    assert answer.status_code == 422
    assert f"at most {limit} items" in answer.json()["detail"][0]["msg"]


def test_a_sweep_of_an_empty_dataset_is_a_422(client):
    dataset = client.post("/v1/datasets", data={"name": "empty"}).json()["id"]
    answer = client.post("/v1/sweeps", json={"dataset": dataset, "grid": ["none"]})
    assert answer.status_code == 422
    assert "no volumes" in answer.json()["detail"]
