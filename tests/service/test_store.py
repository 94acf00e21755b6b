"""The local blob store: atomic writes, safe keys, temp files apart from objects."""

from __future__ import annotations

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
