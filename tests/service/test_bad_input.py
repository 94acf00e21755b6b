"""Hostile and malformed uploads (the corpus in hostile.py): each gets a clear JSON
4xx and leaves nothing behind (no blob, truth, dataset folder or temp file in the
store, no job in Redis)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest

from .hostile import (
    BY_ID,
    CASES,
    DOC,
    FAULTS,
    GOOD,
    TABLES,
    documented_tables,
    request_parts,
    write_corpus,
)


@pytest.fixture
def nothing_stored(service):
    """Asserts after the test that the store and Redis hold no more than before."""
    files, keys = service.stored_files(), service.job_keys()
    yield
    assert service.stored_files() == files
    assert service.job_keys() == keys
    assert service.spooled_files() == []


def post(service, files, **form) -> httpx.Response:
    return httpx.post(f"{service.base_url}/v1/jobs", files=files, data=form, timeout=60)


@pytest.fixture(scope="module")
def small_volume_limit_gateway(service) -> str:
    """A second gateway on the session's Redis and store with a 1 MiB volume limit."""
    return service.start_gateway({"VESSELZIP_MAX_VOLUME_BYTES": str(1024**2)})


@pytest.mark.parametrize("case_id", sorted(BY_ID))
def test_hostile_upload_is_refused_with_a_json_4xx(
    service, small_volume_limit_gateway, nothing_stored, case_id
):
    case = BY_ID[case_id]
    files, form = request_parts(case)
    url = small_volume_limit_gateway if case.form.get("limit") else service.base_url
    response = httpx.post(f"{url}/v1/jobs", files=files, data=form, timeout=60)
    assert response.status_code == case.status, response.text
    assert len(response.content) < 2048  # what was sent is quoted in part only
    detail = response.json()["detail"]
    assert isinstance(detail, str) and case.detail in detail, detail
    if case.part == "image" and not case.form:
        assert detail.startswith(f"image ({case.name})")
    assert str(service.store_dir) not in detail  # no server paths in messages


@pytest.mark.parametrize("case_id", sorted(c.id for c in CASES if not c.form and c.part == "image"))
def test_hostile_dataset_volume_is_refused_and_leaves_nothing(service, nothing_stored, case_id):
    case = BY_ID[case_id]
    folders = set((service.store_dir / "datasets").glob("*"))
    response = httpx.post(
        f"{service.base_url}/v1/datasets",
        files=[("images", (case.name, case.build())), ("images", ("good.nii.gz", GOOD))],
        data={"name": "hostile"},
        timeout=60,
    )
    assert response.status_code == case.status, response.text
    detail = response.json()["detail"]
    assert case.detail in detail and str(service.store_dir) not in detail
    assert set((service.store_dir / "datasets").glob("*")) == folders  # no empty folders left


def test_the_corpus_is_written_for_replay(tmp_path):
    manifest = json.loads(write_corpus(tmp_path / "corpus").read_text())
    assert [entry["id"] for entry in manifest] == [case.id for case in CASES]
    for entry in manifest:
        assert (tmp_path / "corpus" / entry["file"]).read_bytes() == BY_ID[entry["id"]].build()


def test_bad_form_fields_are_refused(service, nothing_stored):
    assert post(service, {"truth": ("t.nii.gz", GOOD)}).status_code == 422  # no image
    response = post(service, {"image": ("a.nii.gz", GOOD)}, queue="tpu")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "queue"]


def test_body_over_the_upload_limit_is_refused_while_streaming(service, nothing_stored):
    limit = 4 * 1024**2  # VESSELZIP_MAX_UPLOAD_BYTES in the test settings
    big = bytes(limit + 1)
    response = post(service, {"image": ("big.nii", big)})
    assert response.status_code == 413
    assert "upload limit" in response.json()["detail"]

    # Without a Content-Length (chunked), the limit still holds mid-stream.
    def chunks():
        boundary_start = (
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.nii"\r\n\r\n'
        )
        yield boundary_start
        for _ in range(limit // 65536 + 2):
            yield bytes(65536)
        yield b"\r\n--b--\r\n"

    response = httpx.post(
        f"{service.base_url}/v1/jobs",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "upload limit" in response.json()["detail"]


def test_the_reliability_doc_is_the_tests_own_table():
    """docs/reliability.md holds exactly the tables generated from hostile.py, and every
    fault it lists names a test that exists."""
    assert documented_tables(DOC.read_text()) == {name: make() for name, make in TABLES.items()}, (
        "run: python tests/service/hostile.py --update-docs"
    )
    tests = {
        node.name
        for path in Path(__file__).parent.glob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    missing = [fault["test"] for fault in FAULTS if fault["test"] not in tests]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
