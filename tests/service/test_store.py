"""The blob stores, each test on both backends (a local folder, and a real S3 server
started by the tests): atomic writes, safe keys, streaming, the store's own faults."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading

import httpx
import pytest

from tests.s3_server import new_bucket
from vesselzip.errors import NotFoundError, StoreUnavailableError, VesselzipError
from vesselzip.store import BlobStore, LocalStore, open_store
from vesselzip.store.s3 import PART_BYTES, S3Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> BlobStore:
    if request.param == "local":
        return open_store(tmp_path / "store")
    request.getfixturevalue("s3_endpoint")
    return open_store(f"s3://{new_bucket()}/some/prefix")


def test_put_get_delete(store):
    store.put_bytes("blobs/a.vz", b"abc")
    store.put_json("results/a.json", {"state": "finished"})
    assert store.get_bytes("blobs/a.vz") == b"abc"
    assert store.get_json("results/a.json") == {"state": "finished"}
    assert store.size("blobs/a.vz") == 3
    assert store.exists("blobs/a.vz") and not store.exists("blobs/b.vz")
    assert sorted(store.keys()) == ["blobs/a.vz", "results/a.json"]
    assert store.delete("blobs/a.vz") and not store.delete("blobs/a.vz")
    with pytest.raises(NotFoundError):
        store.get_bytes("blobs/a.vz")
    with pytest.raises(NotFoundError):
        store.size("blobs/a.vz")
    with pytest.raises(NotFoundError), store.local_copy("blobs/a.vz"):
        pass
    with pytest.raises(NotFoundError):
        store.iter_bytes("blobs/a.vz")
    assert store.problem() is None and store.writable()


def test_a_prefix_lists_a_folder_not_its_namesakes(store):
    for key in ["datasets/ab/x.json", "datasets/ab/v/y.json", "datasets/abc/z.json", "index/k"]:
        store.put_bytes(key, b"")
    assert list(store.keys("datasets/ab")) == ["datasets/ab/v/y.json", "datasets/ab/x.json"]
    assert list(store.keys("datasets")) == [
        "datasets/ab/v/y.json",
        "datasets/ab/x.json",
        "datasets/abc/z.json",
    ]
    assert list(store.keys("nothing")) == []


def test_large_objects_stream_both_ways(store):
    payload = os.urandom(PART_BYTES + 3_000_000)  # above the multipart threshold
    stream, path = store.temp_file(".nii")
    with stream:
        stream.write(payload)
    store.put_file("datasets/d/big.nii", path)
    assert not path.exists()  # the spooled upload is gone once stored
    assert store.size("datasets/d/big.nii") == len(payload)
    chunks = list(store.iter_bytes("datasets/d/big.nii", chunk_size=1024**2))
    assert max(len(c) for c in chunks) <= 1024**2 and b"".join(chunks) == payload
    with store.local_copy("datasets/d/big.nii") as copy:
        assert copy.read_bytes() == payload
    if isinstance(store, S3Store):
        assert not copy.exists()  # a download lasts as long as the `with`
        head = store.client.head_object(
            Bucket=store.bucket, Key=store.prefix + "datasets/d/big.nii"
        )
        assert head["ETag"].strip('"').endswith("-2")  # uploaded in two parts


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", ".hidden", "a/"])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(VesselzipError):
        store.put_bytes(key, b"x")


def test_readers_never_see_a_partial_object(store):
    big, small = b"a" * 4_000_000, b"b" * 10
    store.put_bytes("k", small)
    seen = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            seen.add(len(store.get_bytes("k")))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(10):
        store.put_bytes("k", big)
        store.put_bytes("k", small)
    stop.set()
    reader.join()
    assert seen <= {len(big), len(small)}
    assert list(store.keys()) == ["k"]  # no temporary objects next to it
    if isinstance(store, LocalStore):
        assert [p.name for p in store.root.iterdir() if p.is_file()] == ["k"]


def test_put_file_moves_a_spooled_upload(tmp_path):
    store = LocalStore(tmp_path / "store")
    stream, path = store.temp_file(".nii.gz")
    with stream:
        stream.write(b"volume")
    store.put_file("truth/t.nii.gz", path)
    assert not path.exists()
    assert store.get_bytes("truth/t.nii.gz") == b"volume"
    assert list(store.keys()) == ["truth/t.nii.gz"]  # tmp/ is not listed


def test_a_write_makes_its_folder_again_when_a_prune_removed_it(tmp_path, monkeypatch):
    # A dataset deleted while a volume is uploaded prunes its empty folders; the upload
    # may have made its folder just before, and must not fail for it.
    store = LocalStore(tmp_path)
    make_temp = tempfile.mkstemp
    pruned = []

    def prune_first(*args, **kwargs):
        if not pruned:  # between making the folder and the temp file in it
            pruned.append(True)
            store.prune("datasets")
        return make_temp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", prune_first)
    store.put_bytes("datasets/d/images/a.nii", b"volume")
    assert pruned and store.get_bytes("datasets/d/images/a.nii") == b"volume"


def test_prunes_racing_each_other_never_fail(tmp_path):
    # Requests that fail on a dataset deleted under them each prune its folders.
    store = LocalStore(tmp_path)
    errors: list[Exception] = []

    def make_and_prune() -> None:
        try:
            for _ in range(300):
                with contextlib.suppress(OSError):  # another thread's prune races this too
                    (tmp_path / "datasets/d/images/a/b").mkdir(parents=True, exist_ok=True)
                store.prune("datasets/d")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make_and_prune) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store.prune("datasets")
    assert not (tmp_path / "datasets").exists()


# -- S3 only -------------------------------------------------------------------------
def test_a_presigned_url_fetches_the_object_as_a_download(s3_endpoint):
    store = open_store(f"s3://{new_bucket()}")
    store.put_bytes("masks/j.nii.gz", b"mask bytes")
    url = store.download_url("masks/j.nii.gz", "j_mask.nii.gz", expires_s=60)
    assert url is not None and url.startswith(s3_endpoint)
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"mask bytes"
    assert 'filename="j_mask.nii.gz"' in answer.headers["content-disposition"]
    assert LocalStore(tempfile.mkdtemp()).download_url("k", "k", 60) is None


def test_a_missing_bucket_is_named(s3_endpoint):
    store = open_store("s3://no-such-bucket-here/p")
    assert store.problem() == "S3 bucket 'no-such-bucket-here' does not exist"
    with pytest.raises(StoreUnavailableError, match="bucket 'no-such-bucket-here' does not exist"):
        store.put_bytes("blobs/a.vz", b"x")


def test_refused_credentials_are_named(s3_endpoint, monkeypatch):
    from moto import settings as moto_settings

    bucket = new_bucket()
    # The server checks signatures against the keys it knows from here on.
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    problem = open_store(f"s3://{bucket}").problem()
    assert problem is not None and "credentials were refused" in problem


def test_an_unreachable_server_is_a_store_fault_not_a_hang(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    store = open_store("s3://bucket/p")
    problem = store.problem()
    assert problem is not None and "Could not connect" in problem
    with pytest.raises(StoreUnavailableError, match="cannot read 'results/a.json'"):
        store.get_bytes("results/a.json")


@pytest.mark.parametrize("location", ["ftp://host/x", "s3://", "s3:///prefix", "s3://b/../x"])
def test_a_location_the_store_cannot_take_is_refused(location):
    with pytest.raises(VesselzipError):
        open_store(location)


def test_file_urls_and_paths_open_the_same_folder(tmp_path):
    open_store(f"file://{tmp_path}").put_bytes("a/b", b"1")
    assert open_store(tmp_path).get_bytes("a/b") == b"1"
