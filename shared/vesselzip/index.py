"""Per-owner indexes of datasets and sweeps, kept in the blob store beside what they
index (not in Redis: they survive a Redis flush and move with the store), so that a
listing reads the caller's entries only instead of scanning every tenant's objects.
One empty marker object per item::

    index/owners/<owner>/datasets/<dataset id>
    index/owners/<owner>/sweeps/<sweep id>
    index/datasets/<dataset id>/sweeps/<sweep id>   the sweeps over a dataset
    index/complete                                  every older item is indexed too

<owner> is the owner id (a hex hash of an API key), or "open" for what was made while
the API had no keys.

A marker is written before the object it points at and removed after it: a crash in
between leaves a marker pointing at nothing, which readers skip, never an object that
no listing finds."""

from __future__ import annotations

from collections.abc import Callable

from vesselzip.store import BlobStore

OPEN_OWNER = "open"
_COMPLETE = "index/complete"


def owned_key(kind: str, owner: str | None, item_id: str) -> str:
    """The marker of a dataset or sweep (`kind` "datasets" or "sweeps") of `owner`."""
    return f"index/owners/{owner or OPEN_OWNER}/{kind}/{item_id}"


def dataset_prefix(dataset_id: str) -> str:
    """Where the markers of the sweeps over a dataset are."""
    return f"index/datasets/{dataset_id}"


def dataset_sweep_key(dataset_id: str, sweep_id: str) -> str:
    return f"{dataset_prefix(dataset_id)}/sweeps/{sweep_id}"


def mark(store: BlobStore, key: str) -> None:
    store.put_bytes(key, b"")


def owned_ids(
    store: BlobStore, kind: str, owner: str | None, *, everyone: bool = False
) -> list[str]:
    """The ids of the datasets or sweeps `owner` made; every owner's with `everyone`."""
    if everyone:
        keys = [k for k in store.keys("index/owners") if k.split("/")[3] == kind]
    else:
        keys = list(store.keys(f"index/owners/{owner or OPEN_OWNER}/{kind}"))
    return [key.rsplit("/", 1)[1] for key in keys]


def sweep_ids_over(store: BlobStore, dataset_id: str) -> list[str]:
    return [key.rsplit("/", 1)[1] for key in store.keys(f"{dataset_prefix(dataset_id)}/sweeps")]


def build_once(store: BlobStore, *index_existing: Callable[[BlobStore], None]) -> None:
    """Index what a store held before it had an index: run each `index_existing` (a
    one-time scan of the store for one kind of item) unless an earlier start did."""
    if store.exists(_COMPLETE):
        return
    for index_kind in index_existing:
        index_kind(store)
    mark(store, _COMPLETE)
