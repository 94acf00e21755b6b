"""Datasets and sweeps through HTTP against running gateways and workers: the default
(paper) sweep compared with numbers computed here from the same files, reuse of jobs
across sweeps, the `vesselzip sweep` client, API keys, a worker killed mid-sweep and
a Redis flush after it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from vesselzip.codecs import get_codec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics.compression import psnr
from vesselzip.metrics.segmentation import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.volumes import read_volume

from .helpers import wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAPER_SPECS = [
    "none",
    "zfp:rate=16",
    "zfp:rate=8",
    "zfp:rate=4",
    "zfp:rate=2",
    "zfp:tolerance=500",
    "zfp:tolerance=1000",
    "zfp:tolerance=1500",
]


def create_dataset(base_url, pairs, headers=None, **extra) -> httpx.Response:
    files = [("images", (i.name, i.read_bytes(), "application/gzip")) for i, _ in pairs]
    files += [("truths", (t.name, t.read_bytes(), "application/gzip")) for _, t in pairs]
    return httpx.post(f"{base_url}/v1/datasets", files=files, headers=headers, timeout=60, **extra)


def wait_for_sweep(base_url, sweep_id, timeout_s=240, headers=None) -> dict:
    def done():
        body = httpx.get(f"{base_url}/v1/sweeps/{sweep_id}", headers=headers, timeout=30)
        body = body.json()
        return body if body["progress"]["state"] in ("finished", "failed") else None

    return wait_until(done, timeout_s, f"sweep {sweep_id} to end", interval_s=0.5)


def dataset_of(volumes: dict, base_url: str) -> dict:
    """A new dataset of (image, truth) pairs by volume name, added one by one."""
    dataset = httpx.post(f"{base_url}/v1/datasets", timeout=30).json()
    for name, (image, truth) in volumes.items():
        added = httpx.post(
            f"{dataset['url']}/volumes",
            files={
                "image": (image.name, image.read_bytes()),
                "truth": (truth.name, truth.read_bytes()),
            },
            data={"name": name},
            timeout=60,
        )
        assert added.status_code == 201, added.text
    return dataset


def a_running_case(sweep_url: str) -> dict:
    """Waits for a case of the sweep to be running, and returns it."""

    def running():
        cases = httpx.get(f"{sweep_url}/cases", timeout=10).json()["cases"]
        return next((c for c in cases if c["state"] == "running"), None)

    return wait_until(running, 60, "a sweep job to run", interval_s=0.05)


def independent_numbers(pairs, specs) -> dict:
    """Per setting, what the library gives for the same files: raw and blob bytes,
    PSNRs and Dice scores (Frangi masks), volume by volume."""
    from vesselzip.codecs import parse_codec_spec

    frangi = load_segmenter("frangi")
    numbers = {}
    for spec in specs:
        codec = get_codec(parse_codec_spec(spec))
        raw, blobs, psnrs, dices = [], [], [], []
        for image_path, truth_path in pairs:
            original = read_volume(image_path)
            blob = encode_volume(original, codec)
            decoded = decode_volume(blob)
            raw.append(original.data.nbytes)
            blobs.append(len(blob))
            psnrs.append(psnr(original.data, decoded.data))
            mask = frangi.segment(decoded)
            truth = read_volume(truth_path).data
            dices.append(segmentation_metrics(mask, truth, decoded.spacing)["dice"])
        numbers[spec] = {"raw": raw, "blob": blobs, "psnr": psnrs, "dice": dices}
    return numbers


@pytest.fixture(scope="module")
def paper_sweep(service, phantoms):
    """The default sweep over the session's phantoms with the Frangi baseline."""
    created = create_dataset(service.base_url, phantoms, data={"name": "three phantoms"})
    assert created.status_code == 201, created.text
    dataset = created.json()
    response = httpx.post(
        f"{service.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "model": "frangi"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    sweep = response.json()
    status = wait_for_sweep(service.base_url, sweep["id"])
    return dataset, sweep, status


def test_dataset_upload_inspect_and_delete(service, phantoms):
    base = service.base_url
    (image, truth), (image2, truth2) = phantoms[:2]
    created = create_dataset(base, phantoms[:1], data={"name": "one"})
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["name"] == "one" and dataset["n_volumes"] == 1
    volume = dataset["volumes"][0]
    assert volume["id"] == image.name.removesuffix(".nii.gz")
    assert volume["has_truth"] and tuple(volume["shape"]) == read_volume(image).shape
    assert volume["raw_nbytes"] == read_volume(image).data.nbytes

    url = f"{base}/v1/datasets/{dataset['id']}"
    added = httpx.post(
        f"{url}/volumes",
        files={
            "image": (image2.name, image2.read_bytes()),
            "truth": (truth2.name, truth2.read_bytes()),
        },
        data={"name": "second"},
        timeout=60,
    )
    assert added.status_code == 201, added.text
    assert added.json()["id"] == "second"
    no_truth = httpx.post(f"{url}/volumes", files={"image": (image.name, image.read_bytes())})
    assert no_truth.status_code == 409  # phantom_000 is taken
    no_truth = httpx.post(
        f"{url}/volumes", files={"image": (image.name, image.read_bytes())}, data={"name": "bare"}
    )
    assert no_truth.status_code == 201 and no_truth.json()["has_truth"] is False
    bad = httpx.post(f"{url}/volumes", files={"image": ("x.nii", b"not a volume")})
    assert bad.status_code == 422

    shown = httpx.get(url, timeout=10).json()
    assert [v["id"] for v in shown["volumes"]] == [volume["id"], "second", "bare"]
    listed = httpx.get(f"{base}/v1/datasets", timeout=10).json()["datasets"]
    assert dataset["id"] in {d["id"] for d in listed}

    # All or nothing: a bad file among several leaves no dataset behind.
    before = {d["id"] for d in listed}
    files = [("images", (image.name, image.read_bytes())), ("images", ("x.nii", b"junk"))]
    refused = httpx.post(f"{base}/v1/datasets", files=files, timeout=60)
    assert refused.status_code == 422
    after = {d["id"] for d in httpx.get(f"{base}/v1/datasets", timeout=10).json()["datasets"]}
    assert after == before
    # One image with two truths: which truth goes with it?
    files = [("images", (image.name, image.read_bytes()))] + [
        ("truths", (t.name, t.read_bytes())) for _, t in phantoms[:2]
    ]
    assert httpx.post(f"{base}/v1/datasets", files=files, timeout=60).status_code == 400

    # The same Idempotency-Key returns the same dataset without uploading again.
    keyed = {"Idempotency-Key": "my-dataset-v1"}
    first = create_dataset(base, phantoms[:1], headers=keyed)
    second = httpx.post(f"{base}/v1/datasets", headers=keyed, timeout=10)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and second.json()["n_volumes"] == 1

    deleted = httpx.delete(url, timeout=30)
    assert deleted.status_code == 200 and deleted.json()["volumes_deleted"] == 3
    assert httpx.get(url, timeout=10).status_code == 404
    assert not (service.store_dir / "datasets" / dataset["id"]).exists()  # no empty folders


def test_default_sweep_matches_numbers_computed_independently(service, phantoms, paper_sweep):
    dataset, sweep, status = paper_sweep
    assert sweep["created"] and sweep["total_jobs"] == 8 * 3
    assert status["progress"]["state"] == "finished", status["failures"]
    assert status["progress"]["done"] == 24 and status["progress"]["eta_s"] == 0.0
    assert status["grid"] == PAPER_SPECS and status["model"] == "frangi"

    tables = httpx.get(f"{sweep['links']['tables']}?format=json", timeout=60).json()
    rows = {row["setting"]: row for row in tables["settings"]}
    assert list(rows) == PAPER_SPECS
    expected = independent_numbers(phantoms, PAPER_SPECS)
    for spec, numbers in expected.items():
        row = rows[spec]
        assert row["n_finished"] == 3, row
        assert row["cr_pooled"] == pytest.approx(
            sum(numbers["raw"]) / sum(numbers["blob"]), rel=1e-12
        )
        per_volume_cr = np.mean(np.array(numbers["raw"]) / np.array(numbers["blob"]))
        assert row["cr_mean"] == pytest.approx(per_volume_cr, rel=1e-12)
        assert row["compressed_mb"] == pytest.approx(sum(numbers["blob"]) / 1e6, rel=1e-12)
        finite = [p for p in numbers["psnr"] if np.isfinite(p)]
        if finite:
            assert row["psnr_mean_db"] == pytest.approx(np.mean(finite), rel=1e-9)
        else:
            assert row["psnr_mean_db"] is None
        assert row["dice_mean"] == pytest.approx(np.mean(numbers["dice"]), abs=1e-12)
        if spec != "none":
            deltas = np.array(numbers["dice"]) - np.array(expected["none"]["dice"])
            assert row["delta_dice_mean"] == pytest.approx(deltas.mean(), abs=1e-12)
            assert row["n_pairs"] == 3

    # The same table as CSV (every digit) and Markdown; per-volume results.
    as_csv = httpx.get(f"{sweep['links']['tables']}?format=csv", timeout=60)
    assert as_csv.headers["content-type"].startswith("text/csv")
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["setting"] for r in csv_rows] == PAPER_SPECS
    assert [float(r["cr_pooled"]) for r in csv_rows] == [rows[s]["cr_pooled"] for s in PAPER_SPECS]
    markdown = httpx.get(f"{sweep['links']['tables']}?format=md", timeout=60)
    assert markdown.headers["content-type"].startswith("text/markdown")
    for number in range(1, 5):
        assert f"**Table {number}:" in markdown.text
    cases = httpx.get(sweep["links"]["cases"], timeout=60).json()["cases"]
    assert len(cases) == 24 and {c["state"] for c in cases} == {"finished"}
    volume_ids = [v["id"] for v in dataset["volumes"]]
    for spec in PAPER_SPECS:
        dices = [
            c["dice"] for v in volume_ids for c in cases if (c["volume"], c["setting"]) == (v, spec)
        ]
        assert dices == pytest.approx(expected[spec]["dice"], abs=1e-12)
    cases_csv = httpx.get(f"{sweep['links']['cases']}?format=csv", timeout=60).text
    assert len(list(csv.DictReader(io.StringIO(cases_csv)))) == 24

    for name, url in sweep["links"]["figures"].items():
        figure = httpx.get(url, timeout=60)
        assert figure.status_code == 200, (name, figure.text)
        assert figure.headers["content-type"] == "image/png"
        assert figure.content.startswith(PNG_MAGIC)
    assert httpx.get(url.replace("psnr_vs_bpv", "nope"), timeout=10).status_code == 422

    # Each cell is an ordinary job the owner can open.
    job = httpx.get(f"{service.base_url}/v1/jobs/{cases[1]['job_id']}", timeout=10).json()
    assert job["state"] == "finished" and job["compression"]["cr_raw"] == cases[1]["cr"]
    assert job["stage_seconds"]["compress"] is not None


def test_resubmitted_and_overlapping_sweeps_reuse_jobs(service, phantoms, paper_sweep):
    dataset, sweep, _ = paper_sweep
    base = service.base_url
    body = {"dataset": dataset["id"], "model": "frangi"}
    again = httpx.post(f"{base}/v1/sweeps", json=body, timeout=60)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == sweep["id"] and again.json()["created"] is False
    assert again.json()["jobs_submitted"] == 0 and again.json()["jobs_reused"] == 24

    # Another grid shares the baseline and rate=2 jobs, and runs only what is new.
    overlap = httpx.post(
        f"{base}/v1/sweeps", json={**body, "grid": ["zfp:rate=2", "zfp:precision=10"]}, timeout=60
    ).json()
    assert overlap["id"] != sweep["id"] and overlap["created"]
    assert (overlap["jobs_submitted"], overlap["jobs_reused"]) == (3, 6)
    status = wait_for_sweep(base, overlap["id"])
    assert status["progress"]["state"] == "finished"
    first = httpx.get(sweep["links"]["cases"], timeout=60).json()["cases"]
    second = httpx.get(overlap["links"]["cases"], timeout=60).json()["cases"]
    shared = {(c["volume"], c["setting"]): c["job_id"] for c in first}
    for case in second:
        if case["setting"] in ("none", "zfp:rate=2"):
            assert case["job_id"] == shared[case["volume"], case["setting"]]
    assert (
        "**Table 3: ZFP, other modes compression results**"
        in httpx.get(f"{overlap['links']['tables']}?format=md", timeout=60).text
    )
    # No tolerance settings in this grid: no Figure 3.
    assert httpx.get(overlap["links"]["figures"]["tolerance"], timeout=30).status_code == 404

    # An explicit Idempotency-Key names a sweep; reusing it for another grid is refused.
    keyed = {"Idempotency-Key": "study-1"}
    named = httpx.post(f"{base}/v1/sweeps", json=body, headers=keyed, timeout=60).json()
    assert named["id"] != sweep["id"] and named["jobs_submitted"] == 0
    clash = httpx.post(
        f"{base}/v1/sweeps", json={**body, "grid": ["zfp:rate=4"]}, headers=keyed, timeout=60
    )
    assert clash.status_code == 409

    listed = httpx.get(f"{base}/v1/sweeps", timeout=30).json()["sweeps"]
    assert {sweep["id"], overlap["id"], named["id"]} <= {s["id"] for s in listed}

    # A volume added to the dataset makes a new sweep that runs only that volume.
    image, truth = phantoms[0]
    files = {"image": (image.name, image.read_bytes()), "truth": (truth.name, truth.read_bytes())}
    added = httpx.post(f"{dataset['url']}/volumes", files=files, data={"name": "extra"})
    assert added.status_code == 201, added.text
    grown = httpx.post(f"{base}/v1/sweeps", json={**body, "grid": ["zfp:rate=2"]}, timeout=60)
    assert grown.status_code == 202 and grown.json()["id"] != overlap["id"]
    assert (grown.json()["jobs_submitted"], grown.json()["jobs_reused"]) == (2, 6)
    assert wait_for_sweep(base, grown.json()["id"])["progress"]["state"] == "finished"


def test_sweep_requests_that_are_refused(service, paper_sweep):
    dataset, _, _ = paper_sweep
    base = service.base_url

    def post(body):
        return httpx.post(f"{base}/v1/sweeps", json=body, timeout=30)

    assert post({"dataset": dataset["id"], "grid": ["zfp:rate=0.1"]}).status_code == 422
    assert post({"dataset": dataset["id"], "grid": ["gzip:level=9"]}).status_code == 422
    assert post({"dataset": dataset["id"], "model": "no-such-model"}).status_code == 422
    assert post({"dataset": "0" * 32}).status_code == 404
    assert post({"dataset": "not-an-id"}).status_code == 422
    empty = httpx.post(f"{base}/v1/datasets", data={"name": "empty"}, timeout=30).json()
    response = post({"dataset": empty["id"]})
    assert response.status_code == 422 and "no volumes" in response.json()["detail"]
    assert httpx.get(f"{base}/v1/sweeps/{'0' * 32}", timeout=10).status_code == 404


def test_sweep_command_uploads_runs_and_downloads(service, phantoms, tmp_path):
    dataset_dir = phantoms[0][0].parent.parent  # holds dataset.json
    command = [sys.executable, "-m", "vesselzip", "sweep", str(dataset_dir)]
    command += ["--url", service.base_url, "--grid", "zfp:rate=4,zfp:tolerance=500"]
    command += ["--model", "frangi", "--poll", "0.3"]
    first = subprocess.run(
        [*command, "--out", str(tmp_path / "first")], capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert "**Table 1:" in first.stdout and "**Table 4:" in first.stdout
    out = tmp_path / "first"
    expected = {"tables.json", "tables.csv", "tables.md", "cases.json", "cases.csv", "sweep.json"}
    expected |= {"fixed_rate.png", "tolerance.png", "dice_vs_cr.png", "psnr_vs_bpv.png"}
    assert {p.name for p in out.iterdir()} == expected
    tables = json.loads((out / "tables.json").read_text())
    assert [r["setting"] for r in tables["settings"]] == ["none", "zfp:rate=4", "zfp:tolerance=500"]

    # Again: the dataset is found by its content and every job is reused.
    second = subprocess.run(
        [*command, "--out", str(tmp_path / "second")], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert "3 volume(s) already uploaded, 0 to upload" in second.stderr
    assert "0 queued now, 9 reused" in second.stderr
    assert (tmp_path / "second" / "tables.csv").read_text() == (out / "tables.csv").read_text()

    missing = subprocess.run(
        [sys.executable, "-m", "vesselzip", "sweep", str(tmp_path), "--url", service.base_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "has no dataset.json" in missing.stderr


@pytest.fixture(scope="module")
def keyed_gateway(service) -> str:
    return service.start_gateway({"VESSELZIP_API_KEYS": "key-alice, key-bob"})


def test_datasets_and_sweeps_belong_to_their_api_key(keyed_gateway, phantoms):
    alice = {"X-API-Key": "key-alice"}
    bob = {"X-API-Key": "key-bob"}
    assert create_dataset(keyed_gateway, phantoms[:1]).status_code == 401
    dataset = create_dataset(keyed_gateway, phantoms[:1], headers=alice).json()
    url = f"{keyed_gateway}/v1/datasets/{dataset['id']}"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=bob, timeout=10).status_code == 403
    assert httpx.get(url, headers=alice, timeout=10).status_code == 200
    bobs = httpx.get(f"{keyed_gateway}/v1/datasets", headers=bob, timeout=10).json()
    assert dataset["id"] not in {d["id"] for d in bobs["datasets"]}
    image = phantoms[1][0]
    added = httpx.post(
        f"{url}/volumes", files={"image": (image.name, image.read_bytes())}, headers=bob
    )
    assert added.status_code == 403

    body = {"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "frangi"}
    sweeps = f"{keyed_gateway}/v1/sweeps"
    assert httpx.post(sweeps, json=body, headers=bob, timeout=30).status_code == 403
    sweep = httpx.post(sweeps, json=body, headers=alice, timeout=30).json()
    sweep_url = f"{sweeps}/{sweep['id']}"
    assert httpx.get(sweep_url, headers=bob, timeout=10).status_code == 403
    assert httpx.get(f"{sweep_url}/tables", headers=bob, timeout=10).status_code == 403
    assert httpx.get(f"{sweep_url}/figures/fixed_rate.png", timeout=10).status_code == 401
    status = wait_for_sweep(keyed_gateway, sweep["id"], headers=alice)
    assert status["progress"]["state"] == "finished"
    assert httpx.delete(url, headers=bob, timeout=10).status_code == 403
    assert httpx.delete(url, headers=alice, timeout=10).status_code == 200


def test_sweep_survives_a_killed_worker_and_a_redis_flush(private_stack, slow_phantom, phantoms):
    stack = private_stack
    stack.start_gateway()
    worker = stack.start_worker()
    stack.wait_ready()
    dataset = dataset_of({"slow": slow_phantom, "small": phantoms[0]}, stack.base_url)
    sweep = httpx.post(
        f"{stack.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "frangi"},
        timeout=30,
    ).json()
    sweep_url = sweep["url"]
    killed = a_running_case(sweep_url)
    worker.kill()  # SIGKILL, in the middle of a job
    worker.wait()
    stack.start_worker()
    status = wait_for_sweep(stack.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished", status["failures"]
    job = httpx.get(f"{stack.base_url}/v1/jobs/{killed['job_id']}", timeout=10).json()
    assert job["state"] == "finished"
    assert job["attempts"] == 2 and "stopped responding" in job["notes"][0]

    tables = httpx.get(f"{sweep_url}/tables", timeout=30).json()
    with stack.redis_server.client() as client:
        client.flushall()
    after = httpx.get(f"{sweep_url}/tables", timeout=30).json()
    assert after["settings"] == tables["settings"]
    assert after["progress"]["state"] == "finished"
    # POSTing the sweep again after the flush reuses every stored result.
    again = httpx.post(
        f"{stack.base_url}/v1/sweeps",
        json={"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "frangi"},
        timeout=30,
    ).json()
    assert again["id"] == sweep["id"] and again["jobs_submitted"] == 0


def test_new_weights_under_the_same_model_name_make_a_new_sweep(private_stack, phantoms):
    # No worker: the jobs only need to be queued for their ids to be compared.
    checkpoint = private_stack.workdir / "weights.pt"
    checkpoint.write_bytes(b"first weights")
    private_stack.start_gateway({"VESSELZIP_CHECKPOINT": str(checkpoint)})
    dataset = create_dataset(private_stack.base_url, phantoms[:1]).json()
    body = {"dataset": dataset["id"], "grid": ["zfp:rate=8"], "model": "mvn-checkpoint"}

    def post():
        response = httpx.post(f"{private_stack.base_url}/v1/sweeps", json=body, timeout=30)
        assert response.status_code in (200, 202), response.text
        created = response.json()
        cases = httpx.get(f"{created['url']}/cases", timeout=10).json()["cases"]
        return created, {case["job_id"] for case in cases}

    first, first_jobs = post()
    again, again_jobs = post()
    assert again["id"] == first["id"] and again_jobs == first_jobs and not again["created"]
    checkpoint.write_bytes(b"newer weights, retrained")
    renewed, renewed_jobs = post()
    assert renewed["id"] != first["id"] and renewed["created"]
    assert renewed_jobs.isdisjoint(first_jobs) and renewed["jobs_reused"] == 0


def test_openapi_describes_datasets_and_sweeps(service):
    spec = httpx.get(f"{service.base_url}/openapi.json", timeout=10).json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/v1/datasets"])
    assert {"get", "delete"} <= set(paths["/v1/datasets/{dataset_id}"])
    assert "post" in paths["/v1/datasets/{dataset_id}/volumes"]
    assert {"200", "202", "409", "422"} <= set(paths["/v1/sweeps"]["post"]["responses"])
    tables = paths["/v1/sweeps/{sweep_id}/tables"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv; charset=utf-8", "text/markdown; charset=utf-8"} <= set(
        tables
    )
    figure = paths["/v1/sweeps/{sweep_id}/figures/{name}.png"]["get"]["responses"]["200"]
    assert "image/png" in figure["content"]
