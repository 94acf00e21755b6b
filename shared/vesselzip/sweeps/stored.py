"""A sweep as stored (sweeps/<id>.json) and the ids that make its jobs shared.

One job per (volume, setting), with an id derived from (dataset, volume, codec, model),
so a job is shared by every sweep that needs it: the baseline runs once per volume and
model, and a resubmitted or overlapping sweep reuses finished results."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from vesselzip import index
from vesselzip.errors import NotFoundError, VesselzipError
from vesselzip.store import BlobStore
from vesselzip.sweeps.grid import canonical


class SweepConflictError(VesselzipError):
    """An idempotency key reused for a different sweep."""

    http_status = 409


# -- ids -----------------------------------------------------------------------------
def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def cell_job_id(dataset_id: str, volume: str, codec: dict[str, Any], model: str) -> str:
    """The job for one volume and setting; the same for every sweep that needs it.
    `volume` names the volume and its content (VolumeEntry.fingerprint), so a volume
    replaced under the same name never reuses the old one's results."""
    return _digest("cell", dataset_id, volume, canonical(codec), model)


def default_idempotency_key(
    dataset_id: str, volumes: Sequence[str], grid: list[dict[str, Any]], model: str
) -> str:
    """What identifies a sweep when the client gives no key: the same volumes (by
    fingerprint), set of settings and model is the same sweep. A volume added later
    makes a new sweep, which reuses every job of the old one."""
    return _digest(
        "sweep", dataset_id, *sorted(volumes), "", *sorted(canonical(c) for c in grid), model
    )


def sweep_id_for(owner: str | None, idempotency_key: str) -> str:
    return _digest("sweep-id", owner or "", idempotency_key)


# -- the stored sweep ----------------------------------------------------------------
class SweepCell(BaseModel):
    volume_id: str
    setting: int = Field(description="Index into the sweep's grid.")
    job_id: str


class SweepSpec(BaseModel):
    """A sweep as stored (sweeps/<id>.json); its results live with its jobs."""

    id: str
    owner: str | None = None
    dataset_id: str
    dataset_name: str | None = None
    model: str
    queue: str
    grid: list[dict[str, Any]]
    idempotency_key: str
    created_at: float = Field(default_factory=time.time)
    # When it was last (re)submitted: jobs finished since then pace the ETA.
    submitted_at: float = Field(default_factory=time.time)
    cells: list[SweepCell] = Field(default_factory=list)


def sweep_key(sweep_id: str) -> str:
    return f"sweeps/{sweep_id}.json"


def save_sweep(store: BlobStore, spec: SweepSpec) -> None:
    # Its markers first (see vesselzip.index); the same ones each time it is saved.
    index.mark(store, index.owned_key("sweeps", spec.owner, spec.id))
    index.mark(store, index.dataset_sweep_key(spec.dataset_id, spec.id))
    store.put_json(sweep_key(spec.id), spec.model_dump(mode="json"))


def load_sweep(store: BlobStore, sweep_id: str) -> SweepSpec:
    try:
        return SweepSpec.model_validate(store.get_json(sweep_key(sweep_id)))
    except NotFoundError:
        raise NotFoundError(f"no sweep {sweep_id}") from None


def list_sweeps(store: BlobStore, owner: str | None, *, everyone: bool = False) -> list[SweepSpec]:
    """The sweeps `owner` made (every owner's with `everyone`), oldest first: read
    through the owner index, not by scanning the store."""
    return _load_all(store, index.owned_ids(store, "sweeps", owner, everyone=everyone))


def sweeps_over(store: BlobStore, dataset_id: str) -> list[SweepSpec]:
    """The sweeps over a dataset, oldest first (read through the index)."""
    return _load_all(store, index.sweep_ids_over(store, dataset_id))


def _load_all(store: BlobStore, sweep_ids: list[str]) -> list[SweepSpec]:
    sweeps = []
    for sweep_id in sweep_ids:
        with contextlib.suppress(NotFoundError):  # a marker of a sweep not saved yet
            sweeps.append(load_sweep(store, sweep_id))
    return sorted(sweeps, key=lambda s: (s.created_at, s.id))


def index_existing_sweeps(store: BlobStore) -> None:
    """Mark every stored sweep in the indexes (one scan of the store, for a store
    written before the index existed)."""
    for key in store.keys("sweeps"):
        if key.endswith(".json"):
            spec = SweepSpec.model_validate(store.get_json(key))
            index.mark(store, index.owned_key("sweeps", spec.owner, spec.id))
            index.mark(store, index.dataset_sweep_key(spec.dataset_id, spec.id))
