"""A tuning as stored (tunings/<id>.json): what to search, over which volumes, under
which budget. Its progress lives in its jobs (see vesselzip.tunings.search), which are
the same jobs a sweep would run for the same volume and setting (sweeps.cell_job_id):
a tuning reuses every baseline and setting a sweep or an earlier tuning ran."""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from vesselzip import index
from vesselzip.errors import NotFoundError
from vesselzip.store import BlobStore
from vesselzip.sweeps.grid import BASELINE
from vesselzip.sweeps.stored import cell_job_id

Score = Literal["truth", "agreement"]


class TunedVolume(BaseModel):
    id: str
    fingerprint: str = Field(description="The volume's content (VolumeEntry.fingerprint).")


class TuningSpec(BaseModel):
    id: str
    owner: str | None = None
    dataset_id: str
    dataset_name: str | None = None
    model: str
    # The weights behind the model name: jobs are shared by weights, not by name.
    model_identity: str
    queue: str
    axis: str = Field(description="CODEC:MODE searched, e.g. zfp:tolerance.")
    values: list[float] = Field(description="The candidates, mildest first.")
    configs: list[dict[str, Any]] = Field(description="The codec config of each value.")
    max_dice_loss: float
    coverage: float
    score: Score
    volumes: list[TunedVolume]
    idempotency_key: str
    created_at: float = Field(default_factory=time.time)
    submitted_at: float = Field(default_factory=time.time)

    def job_id(self, volume_id: str, index_: int | None) -> str:
        """The job of `volume_id` at axis value `index_` (None: uncompressed)."""
        fingerprint = next(v.fingerprint for v in self.volumes if v.id == volume_id)
        config = BASELINE if index_ is None else self.configs[index_]
        return cell_job_id(self.dataset_id, fingerprint, config, self.model_identity)


def tuning_id_for(owner: str | None, idempotency_key: str) -> str:
    return hashlib.sha256(f"tuning-id\0{owner or ''}\0{idempotency_key}".encode()).hexdigest()[:32]


def default_tuning_key(
    dataset_id: str,
    fingerprints: list[str],
    axis: str,
    values: list[float],
    max_dice_loss: float,
    coverage: float,
    score: str,
    model_identity: str,
) -> str:
    """The same volumes, axis, range, budget, coverage, score and weights: the same tuning."""
    parts = [dataset_id, *sorted(fingerprints), axis, *map(repr, values)]
    parts += [repr(max_dice_loss), repr(coverage), score, model_identity]
    return hashlib.sha256("\0".join(["tuning", *parts]).encode()).hexdigest()


def tuning_key(tuning_id: str) -> str:
    return f"tunings/{tuning_id}.json"


def save_tuning(store: BlobStore, spec: TuningSpec) -> None:
    index.mark(store, index.owned_key("tunings", spec.owner, spec.id))  # marker first
    store.put_json(tuning_key(spec.id), spec.model_dump(mode="json"))


def load_tuning(store: BlobStore, tuning_id: str) -> TuningSpec:
    try:
        return TuningSpec.model_validate(store.get_json(tuning_key(tuning_id)))
    except NotFoundError:
        raise NotFoundError(f"no tuning {tuning_id}") from None


def list_tunings(
    store: BlobStore, owner: str | None, *, everyone: bool = False
) -> list[TuningSpec]:
    """The tunings `owner` made (every owner's with `everyone`), oldest first."""
    tunings = []
    for tuning_id in index.owned_ids(store, "tunings", owner, everyone=everyone):
        with contextlib.suppress(NotFoundError):  # a marker of one not saved yet
            tunings.append(load_tuning(store, tuning_id))
    return sorted(tunings, key=lambda t: (t.created_at, t.id))
