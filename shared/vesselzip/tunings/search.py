"""The search itself, as a pure function of the jobs' outcomes.

A tuning keeps no state of its own besides its spec: where each volume's bisection
stands is replayed from the outcomes of the jobs it ran (each job id follows from the
volume and the setting, see TuningSpec.job_id). `evaluate` walks every path as far as
the outcomes known so far allow and says which outcomes it still needs to look up and
which jobs have to run next; the caller looks them up or queues them and evaluates
again. Being a replay, it can be rerun any time, by any process, after any restart.

Per volume: bisection over the axis for the strongest setting whose loss (the Dice
lost against the uncompressed volume, or 1 − agreement Dice without a truth) stays
within the budget; the mildest setting may already fail it. Then, for the dataset:
the strongest setting that keeps at least `coverage` of the volumes within budget,
confirmed by running it on every volume (stepping back while it falls short: the
loss need not be monotone)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from vesselzip.jobs import LOST, JobOutcome, JobResult, JobState
from vesselzip.sweeps.aggregate import paired_statistics
from vesselzip.sweeps.grid import setting_spec
from vesselzip.tunings.stored import TuningSpec

#: Loss tolerance for float rounding when comparing with the budget.
_EPSILON = 1e-12


class Probe(BaseModel):
    """One setting tried on one volume."""

    setting: str
    value: float
    job_id: str
    state: str = Field(description="The job's state (queued, running, finished, ...).")
    cr: float | None = Field(None, description="Raw bytes / blob bytes.")
    dice: float | None = Field(None, description="Against the truth; null without one.")
    agreement_dice: float | None = Field(
        None, description="Against the same model's mask of the uncompressed volume."
    )
    loss: float | None = Field(
        None,
        description="Baseline Dice − Dice (score `truth`), or 1 − agreement Dice (score "
        "`agreement`).",
    )
    within_budget: bool | None = None


class VolumeSearch(BaseModel):
    volume: str
    state: Literal["searching", "finished", "failed"]
    baseline_job_id: str
    baseline_dice: float | None = None
    path: list[Probe] = Field(default_factory=list, description="The probes, in order.")
    best_setting: str | None = Field(
        None,
        description="The strongest setting within budget; null when even the mildest "
        "setting of the range loses more (or while searching).",
    )
    best_value: float | None = None
    best_cr: float | None = None
    error: str | None = None


class Confirmation(BaseModel):
    """A setting run on every volume to check the dataset-level answer."""

    setting: str
    volumes_within: int | None = None
    volumes: int


class DatasetAnswer(BaseModel):
    state: Literal["waiting", "confirming", "finished", "none"] = Field(
        description="waiting: volumes still searching; confirming: the candidate runs on "
        "every volume; finished: the answer holds; none: no setting of the range keeps "
        "enough volumes within budget."
    )
    setting: str | None = None
    value: float | None = None
    coverage_target: float
    volumes: int = Field(description="Volumes whose search finished (failed ones left out).")
    volumes_within: int | None = None
    coverage: float | None = Field(None, description="volumes_within / volumes.")
    cr_pooled: float | None = Field(None, description="Σ raw bytes / Σ blob bytes at `setting`.")
    delta_dice_mean: float | None = Field(
        None, description="Mean paired Dice(setting) − Dice(uncompressed); with truths."
    )
    delta_dice_ci_low: float | None = None
    delta_dice_ci_high: float | None = None
    wilcoxon_p: float | None = None
    agreement_dice_mean: float | None = None
    agreement_dice_min: float | None = None
    confirmations: list[Confirmation] = Field(default_factory=list)


class Evaluation(BaseModel):
    volumes: list[VolumeSearch]
    answer: DatasetAnswer
    lookups: set[str] = Field(description="Jobs whose outcome is needed to go on.")
    to_run: list[tuple[str, int | None]] = Field(
        description="(volume, axis index) of jobs to queue; None: the baseline."
    )
    referenced: set[str] = Field(description="Every job the search used or waits for.")


def _loss(spec: TuningSpec, result: JobResult, baseline_dice: float | None) -> float | None:
    if spec.score == "agreement":
        dice = (result.agreement or {}).get("dice")
        return None if dice is None else 1.0 - dice
    dice = (result.segmentation or {}).get("dice")
    return None if dice is None or baseline_dice is None else baseline_dice - dice


def _probe(
    spec: TuningSpec, index: int, job_id: str, outcome: JobOutcome, base: float | None
) -> Probe:
    result = outcome.result if outcome.state == JobState.FINISHED else None
    loss = _loss(spec, result, base) if result is not None else None
    return Probe(
        setting=setting_spec(spec.configs[index]),
        value=spec.values[index],
        job_id=job_id,
        state=str(outcome.state),
        cr=result.compression.get("cr_raw") if result else None,
        dice=(result.segmentation or {}).get("dice") if result else None,
        agreement_dice=(result.agreement or {}).get("dice") if result else None,
        loss=loss,
        within_budget=None if loss is None else loss <= spec.max_dice_loss + _EPSILON,
    )


def evaluate(spec: TuningSpec, outcomes: dict[str, JobOutcome]) -> Evaluation:
    """Where the tuning stands given the outcomes known (see the module's docstring)."""
    lookups: set[str] = set()
    to_run: list[tuple[str, int | None]] = []
    referenced: set[str] = set()
    searches = []
    for volume in spec.volumes:
        search = _search_volume(spec, volume.id, outcomes, lookups, to_run, referenced)
        searches.append(search)
    answer = _answer(spec, searches, outcomes, lookups, to_run, referenced)
    return Evaluation(
        volumes=searches, answer=answer, lookups=lookups, to_run=to_run, referenced=referenced
    )


def _search_volume(
    spec: TuningSpec,
    volume: str,
    outcomes: dict[str, JobOutcome],
    lookups: set[str],
    to_run: list[tuple[str, int | None]],
    referenced: set[str],
) -> VolumeSearch:
    base_id = spec.job_id(volume, None)
    referenced.add(base_id)
    search = VolumeSearch(volume=volume, state="searching", baseline_job_id=base_id)
    base = outcomes.get(base_id)
    if base is None:
        lookups.add(base_id)
        return search
    if base.state == LOST:
        to_run.append((volume, None))
        return search
    if not base.ended:
        return search
    if base.state != JobState.FINISHED or base.result is None:
        return _failed(
            search, f"the uncompressed baseline job {base_id}: {base.error or base.state}"
        )
    search.baseline_dice = (base.result.segmentation or {}).get("dice")
    if spec.score == "truth" and search.baseline_dice is None:
        return _failed(search, "the volume has no truth: tune it with score=agreement")

    low, high = -1, len(spec.values)  # low: known within budget (-1: uncompressed)
    while high - low > 1:
        middle = (low + high) // 2
        job_id = spec.job_id(volume, middle)
        referenced.add(job_id)
        outcome = outcomes.get(job_id)
        if outcome is None:
            lookups.add(job_id)
            return search
        if outcome.state == LOST:
            to_run.append((volume, middle))
            return search
        probe = _probe(spec, middle, job_id, outcome, search.baseline_dice)
        search.path.append(probe)
        if not outcome.ended:
            return search
        if outcome.state != JobState.FINISHED:
            return _failed(
                search, f"the job of {probe.setting} ({job_id}): {outcome.error or outcome.state}"
            )
        if probe.within_budget is None:
            notes = "; ".join(outcome.result.notes) if outcome.result else ""
            return _failed(
                search,
                f"the job of {probe.setting} ({job_id}) has no {spec.score} score"
                + (f" ({notes})" if notes else ""),
            )
        low, high = (middle, high) if probe.within_budget else (low, middle)
    search.state = "finished"
    if low >= 0:
        best = next(p for p in search.path if p.value == spec.values[low])
        search.best_setting, search.best_value, search.best_cr = best.setting, best.value, best.cr
    return search


def _failed(search: VolumeSearch, error: str) -> VolumeSearch:
    search.state, search.error = "failed", error
    return search


def best_index(spec: TuningSpec, search: VolumeSearch) -> int:
    return -1 if search.best_value is None else spec.values.index(search.best_value)


def _answer(
    spec: TuningSpec,
    searches: list[VolumeSearch],
    outcomes: dict[str, JobOutcome],
    lookups: set[str],
    to_run: list[tuple[str, int | None]],
    referenced: set[str],
) -> DatasetAnswer:
    done = [s for s in searches if s.state == "finished"]
    answer = DatasetAnswer(state="waiting", coverage_target=spec.coverage, volumes=len(done))
    if any(s.state == "searching" for s in searches) or not done:
        return answer
    needed = max(1, math.ceil(spec.coverage * len(done) - 1e-9))
    candidate = sorted((best_index(spec, s) for s in done), reverse=True)[needed - 1]
    while candidate >= 0:
        setting = setting_spec(spec.configs[candidate])
        confirmation = Confirmation(setting=setting, volumes=len(done))
        answer.confirmations.append(confirmation)
        probes = []
        for search in done:
            job_id = spec.job_id(search.volume, candidate)
            referenced.add(job_id)
            outcome = outcomes.get(job_id)
            if outcome is None:
                lookups.add(job_id)
            elif outcome.state == LOST:
                to_run.append((search.volume, candidate))
            else:
                probe = _probe(spec, candidate, job_id, outcome, search.baseline_dice)
                probes.append((search, probe, outcome))
        if len(probes) < len(done) or any(not outcome.ended for *_, outcome in probes):
            answer.state = "confirming"
            return answer
        within = sum(bool(probe.within_budget) for _, probe, _ in probes)
        confirmation.volumes_within = within
        if within >= needed:
            answer.state = "finished"
            answer.setting, answer.value = setting, spec.values[candidate]
            answer.volumes_within, answer.coverage = within, within / len(done)
            return pool(
                answer,
                [
                    (outcome.result, search.baseline_dice)
                    for search, _, outcome in probes
                    if outcome.result is not None and outcome.state == JobState.FINISHED
                ],
            )
        candidate -= 1  # not monotone after all: one step milder
    answer.state = "none"
    return answer


def pool(
    answer: DatasetAnswer,
    results: list[tuple[JobResult, float | None]],
) -> DatasetAnswer:
    """Fill the answer's pooled CR, paired ΔDice statistics and agreement from the
    results at its setting, each with its volume's baseline Dice."""
    raw = sum(r.compression.get("raw_nbytes") or 0 for r, _ in results)
    blob = sum(r.compression.get("blob_nbytes") or 0 for r, _ in results)
    answer.cr_pooled = raw / blob if blob else None
    dices = [(_dice(r.segmentation), base) for r, base in results]
    deltas = [dice - base for dice, base in dices if dice is not None and base is not None]
    if deltas:
        paired = paired_statistics(deltas)
        answer.delta_dice_mean = paired["delta_dice_mean"]
        answer.delta_dice_ci_low = paired["delta_dice_ci_low"]
        answer.delta_dice_ci_high = paired["delta_dice_ci_high"]
        answer.wilcoxon_p = paired["wilcoxon_p"]
    agreements = [a for r, _ in results if (a := _dice(r.agreement)) is not None]
    if agreements:
        answer.agreement_dice_mean = sum(agreements) / len(agreements)
        answer.agreement_dice_min = min(agreements)
    return answer


def _dice(scores: dict | None) -> float | None:
    dice = (scores or {}).get("dice")
    return None if dice is None else float(dice)
