"""Where a sweep stands: each cell's job outcome, and counts, done/total and an ETA
over all of them."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from vesselzip.jobs import LOST, JobOutcome, JobState
from vesselzip.sweeps.stored import SweepSpec

#: Every state a cell's job can be in: the job states, and lost (no record, no result).
CELL_STATES = (*(state.value for state in JobState), LOST)


class SweepProgress(BaseModel):
    state: Literal["queued", "running", "finished", "failed"] = Field(
        description="failed: every job ended and at least one did not finish."
    )
    total: int
    done: int = Field(description="Jobs that ended (finished, failed, cancelled or lost).")
    fraction: float
    counts: dict[str, int] = Field(description="Jobs per state.")
    elapsed_s: float = Field(description="Since the sweep was (re)submitted.")
    eta_s: float | None = Field(
        description="Remaining jobs x (elapsed / jobs finished since submission); null "
        "until one has finished."
    )


def progress_of(
    spec: SweepSpec, outcomes: dict[str, JobOutcome], now: float | None = None
) -> SweepProgress:
    """Counts per state, done/total and an ETA paced by the jobs that finished since
    the sweep was (re)submitted (None until one has)."""
    now = time.time() if now is None else now
    counts = dict.fromkeys(CELL_STATES, 0)
    paced = done = 0
    for cell in spec.cells:
        outcome = outcomes[cell.job_id]
        counts[_name(outcome.state)] += 1
        done += outcome.ended
        if outcome.result is not None and outcome.result.finished_at >= spec.submitted_at:
            paced += 1
    total = len(spec.cells)
    elapsed = max(0.0, now - spec.submitted_at)
    eta = None
    if done == total:
        eta = 0.0
    elif paced and elapsed > 0:
        eta = (total - done) * elapsed / paced
    state: Literal["queued", "running", "finished", "failed"]
    if done < total:
        state = (
            "running" if counts["running"] or counts["finished"] + counts["failed"] else "queued"
        )
    else:
        state = "finished" if counts["finished"] == total else "failed"
    return SweepProgress(
        state=state,
        total=total,
        done=done,
        fraction=done / total if total else 1.0,
        counts=counts,
        elapsed_s=elapsed,
        eta_s=eta,
    )


def _name(state: JobState | str) -> str:
    return state.value if isinstance(state, JobState) else state
