"""What a stranger can do to the gateway beyond a bad file: keys that are not ASCII,
things made while the API was open, a store that stops being writable, a client that
stalls mid-upload, two racing requests with one idempotency key, absurd numbers in a
sweep grid. Each answer is JSON, never a 500, and nothing already stored is lost."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from .helpers import post_job, wait_for_job
from .hostile import GOOD

KEYS = {"VESSELZIP_API_KEYS": "key-alice, key-bob"}
ALICE = {"X-API-Key": "key-alice"}


def test_a_non_ascii_api_key_is_a_401_not_a_500(service):
    keyed = service.start_gateway(KEYS)
    for path in ("/v1/jobs/" + "0" * 32, "/v1/datasets", "/v1/sweeps"):
        # Raw UTF-8 bytes in the header, as a stranger may send them.
        response = httpx.get(
            keyed + path, headers={"X-API-Key": "clé-ünïcode".encode()}, timeout=10
        )
        assert response.status_code == 401, (path, response.text)
        assert "API key" in response.json()["detail"]


def test_one_access_rule_for_jobs_datasets_and_sweeps(service, phantoms):
    """Made while the API was open: no key reaches it once keys are set (403), for all
    three kinds alike; made with a key: that key alone."""
    image, truth = phantoms[0]
    open_url = service.base_url
    job = post_job(open_url, image, truth).json()["id"]
    files = [("images", (image.name, image.read_bytes()))]
    dataset = httpx.post(f"{open_url}/v1/datasets", files=files, timeout=60).json()["id"]
    body = {"dataset": dataset, "grid": ["none"], "model": "frangi"}
    sweep = httpx.post(f"{open_url}/v1/sweeps", json=body, timeout=30).json()["id"]
    wait_for_job(open_url, job)

    keyed = service.start_gateway(KEYS)
    made_open = [
        f"/v1/jobs/{job}",
        f"/v1/jobs/{job}/mask",
        f"/v1/datasets/{dataset}",
        f"/v1/sweeps/{sweep}",
        f"/v1/sweeps/{sweep}/tables",
    ]
    for path in made_open:
        response = httpx.get(keyed + path, headers=ALICE, timeout=30)
        assert response.status_code == 403, (path, response.text)
        assert "another API key" in response.json()["detail"]
    for path in (f"/v1/jobs/{job}", f"/v1/datasets/{dataset}"):
        assert httpx.delete(keyed + path, headers=ALICE, timeout=30).status_code == 403
    added = httpx.post(
        f"{keyed}/v1/datasets/{dataset}/volumes",
        files={"image": ("other.nii.gz", image.read_bytes())},
        headers=ALICE,
        timeout=60,
    )
    assert added.status_code == 403
    listed = httpx.get(f"{keyed}/v1/datasets", headers=ALICE, timeout=10).json()["datasets"]
    assert dataset not in {d["id"] for d in listed}
    # The open gateway (no keys) still reaches all three: nothing was lost.
    for path in made_open[::2]:
        assert httpx.get(open_url + path, timeout=30).status_code == 200, path


def test_a_store_that_is_not_writable_answers_503_and_keeps_what_it_had(private_stack, phantoms):
    stack = private_stack
    stack.start_gateway()
    stack.start_worker()
    stack.wait_ready()
    image, truth = phantoms[0]
    kept = post_job(stack.base_url, image, truth).json()["id"]
    wait_for_job(stack.base_url, kept)
    before = stack.stored_files()

    # Root ignores permissions: a file where the store's folder was makes every write
    # fail as a full or read-only disk would.
    away = stack.store_dir.with_name("store-away")
    stack.store_dir.rename(away)
    stack.store_dir.write_bytes(b"")
    try:
        for response in (
            post_job(stack.base_url, image, truth),
            httpx.post(
                f"{stack.base_url}/v1/datasets",
                files=[("images", (image.name, image.read_bytes()))],
                timeout=60,
            ),
        ):
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert "store" in detail and str(stack.store_dir) not in detail
        ready = httpx.get(f"{stack.base_url}/v1/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["store"] is False
    finally:
        stack.store_dir.unlink()
        away.rename(stack.store_dir)
    assert stack.stored_files() == before
    assert httpx.get(f"{stack.base_url}/v1/jobs/{kept}/mask", timeout=10).status_code == 200
    assert post_job(stack.base_url, image, truth).status_code == 202


def test_a_stalled_upload_is_cut_off_with_408(service):
    gateway = service.start_gateway({"VESSELZIP_BODY_READ_TIMEOUT_S": "1"})
    host, port = gateway.removeprefix("http://").split(":")
    body = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.nii"\r\n\r\n'
    head = (
        "POST /v1/jobs HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(body) + 100_000}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head + body)  # ... and then nothing more
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # the server answers and closes
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"stalled" in answer and waited < 15
    assert httpx.get(f"{gateway}/v1/health", timeout=10).status_code == 200


def test_racing_dataset_posts_with_one_idempotency_key_make_one_whole_dataset(service, phantoms):
    files = [("images", (i.name, i.read_bytes())) for i, _ in phantoms]
    files += [("truths", (t.name, t.read_bytes())) for _, t in phantoms]
    headers = {"Idempotency-Key": f"race-{time.time_ns()}"}
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(
            httpx.post(f"{service.base_url}/v1/datasets", files=files, headers=headers, timeout=120)
        )

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert all(a.json()["n_volumes"] == len(phantoms) for a in answers)
    replay = httpx.post(f"{service.base_url}/v1/datasets", headers=headers, timeout=30)
    assert replay.status_code == 200 and replay.json()["n_volumes"] == len(phantoms)
    httpx.delete(f"{service.base_url}/v1/datasets/{replay.json()['id']}", timeout=30)


@pytest.mark.parametrize(
    "grid",
    [
        ["zfp:rate=" + "9" * 400],
        ["zfp:tolerance=1e999"],
        ["zfp:rate=nan"],
        ["zfp:precision=" + "1" * 5000],
    ],
)
def test_a_sweep_grid_with_absurd_numbers_is_a_422(service, grid):
    files = [("images", ("good.nii.gz", GOOD))]
    dataset = httpx.post(f"{service.base_url}/v1/datasets", files=files, timeout=60).json()
    try:
        body = {"dataset": dataset["id"], "grid": grid, "model": "frangi"}
        response = httpx.post(f"{service.base_url}/v1/sweeps", json=body, timeout=30)
        assert response.status_code == 422, response.text
        assert "numeric value" in response.json()["detail"]
    finally:
        httpx.delete(f"{service.base_url}/v1/datasets/{dataset['id']}", timeout=30)
