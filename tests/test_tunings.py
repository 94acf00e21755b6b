"""The tuning search as a pure function of job outcomes: driven here to its end with
made-up losses and checked against a brute-force search over every value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vesselzip.jobs import LOST, ImageInfo, JobOutcome, JobResult, JobState
from vesselzip.tunings import TunedVolume, TuningSpec, TuningSpecError, evaluate, search_axis

AXIS = search_axis("zfp:tolerance", (1, 1000))


def make_spec(n_volumes: int, *, budget=0.01, coverage=0.95, score="truth") -> TuningSpec:
    return TuningSpec(
        id="t" * 32,
        dataset_id="d" * 32,
        model="frangi",
        model_identity="frangi",
        queue="cpu",
        axis=AXIS.text,
        values=list(AXIS.values),
        configs=list(AXIS.configs),
        max_dice_loss=budget,
        coverage=coverage,
        score=score,
        volumes=[TunedVolume(id=f"v{i}", fingerprint=f"v{i}:x:") for i in range(n_volumes)],
        idempotency_key="k",
    )


def finished(job_id: str, dice: float | None, agreement: float | None = None) -> JobOutcome:
    result = JobResult(
        job_id=job_id,
        state=JobState.FINISHED,
        model="frangi",
        codec={},
        image=ImageInfo(shape=(2, 2, 2), dtype="int16", spacing=(1, 1, 1)),
        compression={"raw_nbytes": 1000, "blob_nbytes": 100, "cr_raw": 10.0},
        segmentation=None if dice is None else {"dice": dice},
        agreement=None if agreement is None else {"dice": agreement},
        created_at=0.0,
    )
    return JobOutcome(state=JobState.FINISHED, result=result)


def drive(spec: TuningSpec, loss, *, fail=frozenset(), base_dice=0.9):
    """Run the search to its end: every job asked for "runs" at once, with
    Dice = base − loss(volume, index) (or agreement 1 − loss). Returns the final
    evaluation and the jobs run."""
    outcomes: dict[str, JobOutcome] = {}
    ran: list[tuple[str, int | None]] = []
    for _ in range(1000):
        evaluation = evaluate(spec, outcomes)
        for job_id in evaluation.lookups:
            outcomes[job_id] = JobOutcome(state=LOST)
        for volume, index in evaluation.to_run:
            ran.append((volume, index))
            job_id = spec.job_id(volume, index)
            if (volume, index) in fail:
                outcomes[job_id] = JobOutcome(state=JobState.FAILED, error="boom")
            elif index is None:
                outcomes[job_id] = finished(job_id, base_dice if spec.score == "truth" else None)
            elif spec.score == "truth":
                outcomes[job_id] = finished(job_id, base_dice - loss(volume, index))
            else:
                outcomes[job_id] = finished(job_id, None, 1.0 - loss(volume, index))
        if not evaluation.lookups and not evaluation.to_run:
            return evaluation, ran
    raise AssertionError("the search did not end")


def brute_force_best(spec: TuningSpec, volume: str, loss) -> int:
    within = [i for i in range(len(spec.values)) if loss(volume, i) <= spec.max_dice_loss]
    return max(within, default=-1)


@settings(max_examples=40, deadline=None)
@given(
    slopes=st.lists(st.floats(1e-4, 0.05), min_size=1, max_size=12),
    budget=st.floats(0.001, 0.2),
    coverage=st.sampled_from([0.5, 0.8, 0.95, 1.0]),
)
def test_monotone_losses_give_the_brute_force_answer(slopes, budget, coverage):
    spec = make_spec(len(slopes), budget=budget, coverage=coverage)

    def loss(volume: str, index: int) -> float:
        return slopes[int(volume[1:])] * index

    evaluation, ran = drive(spec, loss)
    depth = math.ceil(math.log2(len(spec.values) + 1))
    bests = []
    for search in evaluation.volumes:
        assert search.state == "finished"
        best = brute_force_best(spec, search.volume, loss)
        bests.append(best)
        assert search.best_value == (spec.values[best] if best >= 0 else None)
        assert len(search.path) <= depth
    # The dataset setting: the strongest that keeps ⌈coverage·n⌉ volumes within budget.
    needed = math.ceil(coverage * len(slopes) - 1e-9)
    expected = sorted(bests, reverse=True)[needed - 1]
    answer = evaluation.answer
    if expected < 0:
        assert answer.state == "none" and answer.setting is None
    else:
        assert answer.state == "finished"
        assert answer.value == spec.values[expected]
        assert answer.volumes_within >= needed
        assert answer.cr_pooled == pytest.approx(10.0)
    # Far fewer jobs than the full grid: per volume the baseline, the bisection and
    # at most one confirmation.
    assert len(ran) <= len(slopes) * (depth + 2)
    assert len(set(ran)) == len(ran)  # no job run twice


def test_a_loss_that_is_not_monotone_steps_the_answer_back():
    """Volume 0 loses nothing except at one value its bisection never probes; volume 1
    is within budget up to exactly that value. The dataset candidate is that value,
    its confirmation finds volume 0 over budget there, and the answer steps back."""
    spec = make_spec(2, budget=0.01, coverage=1.0)
    k = len(spec.values)
    probed_by_v0 = set()
    low, high = -1, k
    while high - low > 1:  # the indices an all-passing bisection probes
        probed_by_v0.add(low := (low + high) // 2)
    trap = next(i for i in range(2, k) if i not in probed_by_v0 and i - 1 not in probed_by_v0)

    def loss(volume: str, index: int) -> float:
        if volume == "v0":
            return 0.5 if index == trap else 0.0
        return 0.0 if index <= trap else 0.5

    evaluation, _ = drive(spec, loss)
    assert [s.best_value for s in evaluation.volumes] == [spec.values[-1], spec.values[trap]]
    confirmations = evaluation.answer.confirmations
    assert [c.setting for c in confirmations] == [
        f"zfp:tolerance={spec.values[trap]:g}",
        f"zfp:tolerance={spec.values[trap - 1]:g}",
    ]
    assert [c.volumes_within for c in confirmations] == [1, 2]
    assert evaluation.answer.state == "finished"
    assert evaluation.answer.value == spec.values[trap - 1]
    assert evaluation.answer.coverage == 1.0


def test_agreement_scores_need_no_truth():
    spec = make_spec(3, budget=0.02, coverage=1.0, score="agreement")

    def loss(volume: str, index: int) -> float:
        return 0.001 * index

    evaluation, _ = drive(spec, loss)
    best = brute_force_best(spec, "v0", loss)
    assert all(s.best_value == spec.values[best] for s in evaluation.volumes)
    assert all(p.dice is None and p.agreement_dice is not None for p in evaluation.volumes[0].path)
    assert evaluation.answer.agreement_dice_min == pytest.approx(1 - 0.001 * best)
    assert evaluation.answer.delta_dice_mean is None  # no truth, no ΔDice


def test_a_failed_job_fails_its_volume_only():
    spec = make_spec(3, coverage=1.0)

    def loss(volume: str, index: int) -> float:
        return 0.001 * index

    middle = (len(spec.values) - 1) // 2
    evaluation, _ = drive(spec, loss, fail={("v1", middle)})
    states = [s.state for s in evaluation.volumes]
    assert states == ["finished", "failed", "finished"]
    assert "boom" in evaluation.volumes[1].error
    assert evaluation.answer.state == "finished" and evaluation.answer.volumes == 2


def test_truth_scores_need_a_truth():
    spec = make_spec(1)
    evaluation, _ = drive(spec, lambda v, i: 0.0, base_dice=None)
    assert evaluation.volumes[0].state == "failed"
    assert "score=agreement" in evaluation.volumes[0].error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zfp", "CODEC:MODE"),
        ("nope:tolerance", "unknown codec"),
        ("zstd:level", "cannot be tuned"),
        ("zfp:reversible", "cannot be tuned"),
        ("lerc:rate", "fewer than two"),
    ],
)
def test_axes_that_cannot_be_tuned_say_why(text, message):
    with pytest.raises(TuningSpecError, match=message):
        search_axis(text)


def test_axes_run_from_the_mildest_to_the_strongest_setting():
    rate = search_axis("zfp:rate")
    assert rate.values[0] == 16 and rate.values[-1] == 0.25  # fewer bits, more compression
    tolerance = search_axis("zfp:tolerance", (100, 2000))
    assert tolerance.values == tuple(sorted(tolerance.values))
    assert {500.0, 1000.0, 1500.0} <= set(tolerance.values)  # meets the paper's grid
    assert search_axis("jpegls:near").configs[0] == {"id": "jpegls", "near": 1}
    with pytest.raises(TuningSpecError, match="range"):
        search_axis("zfp:tolerance", (5, 1))
