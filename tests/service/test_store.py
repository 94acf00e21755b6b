"""The local blob store: atomic writes, safe keys, temp files apart from objects."""

from __future__ import annotations

import contextlib
import tempfile
import threading

import pytest

from vesselzip.errors import NotFoundError, VesselzipError
from vesselzip.store import LocalStore


def test_put_get_delete(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("blobs/a.vz", b"abc")
    store.put_json("results/a.json", {"state": "finished"})
    assert store.get_bytes("blobs/a.vz") == b"abc"
    assert store.get_json("results/a.json") == {"state": "finished"}
    assert store.size("blobs/a.vz") == 3
    assert sorted(store.keys()) == ["blobs/a.vz", "results/a.json"]
    assert store.delete("blobs/a.vz") and not store.delete("blobs/a.vz")
    with pytest.raises(NotFoundError):
        store.get_bytes("blobs/a.vz")
    assert store.writable()


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", ".hidden", "a/"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(VesselzipError):
        LocalStore(tmp_path).put_bytes(key, b"x")


def test_readers_never_see_a_partial_object(tmp_path):
    store = LocalStore(tmp_path)
    big, small = b"a" * 4_000_000, b"b" * 10
    store.put_bytes("k", small)
    seen = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            seen.add(len(store.get_bytes("k")))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(20):
        store.put_bytes("k", big)
        store.put_bytes("k", small)
    stop.set()
    reader.join()
    assert seen <= {len(big), len(small)}
    # No temporary files are left next to the object.
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["k"]


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
