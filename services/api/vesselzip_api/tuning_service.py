"""What the tuning routes do, and what moves a tuning on.

A tuning's jobs are a dataset's jobs like a sweep's (the same ids for the same volume,
setting and weights), so whatever a sweep or an earlier tuning ran is reused. Each
step of a search needs the previous step's result, so something has to queue the next
job when one ends: `advance` does, replaying the search from the jobs' outcomes
(vesselzip.tunings.search) and queueing what it asks for. The gateway calls it for
every active tuning every VESSELZIP_TUNING_INTERVAL_S, and on each POST and GET;
a lock per tuning keeps two gateways from queueing the same step twice."""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import cast

from redis import Redis

from vesselzip.datasets import Dataset, load_dataset
from vesselzip.errors import LimitExceededError, NotFoundError, StoreUnavailableError
from vesselzip.jobs import JobOutcome, JobState, result_key
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip.sweeps import SweepConflictError
from vesselzip.tunings import (
    Evaluation,
    TunedVolume,
    TuningSpec,
    TuningSpecError,
    default_tuning_key,
    evaluate,
    list_tunings,
    load_tuning,
    save_tuning,
    search_axis,
    tuning_id_for,
)
from vesselzip_api.access import check_access, sees_everything
from vesselzip_api.job_service import JobService
from vesselzip_api.tuning_schemas import (
    TuningCreated,
    TuningInferences,
    TuningLinks,
    TuningList,
    TuningProgress,
    TuningRequest,
    TuningStatus,
    TuningSummary,
)
from vesselzip_api.volume_jobs import dataset_to_run, volume_image, volume_job_spec
from vesselzip_queue import queues
from vesselzip_queue.state import find_jobs

log = logging.getLogger("vesselzip.tunings")

#: The tunings whose search has not ended (a Redis set of ids).
ACTIVE_KEY = "vesselzip:tunings:active"
_RERUN = (JobState.FAILED, JobState.CANCELLED)


class TuningService:
    def __init__(self, settings: Settings, connection: Redis, store: BlobStore, jobs: JobService):
        self.settings = settings
        self.redis = connection
        self.store = store
        self.jobs = jobs

    # -- create -----------------------------------------------------------------
    def create(
        self,
        request: TuningRequest,
        *,
        owner: str | None,
        idempotency_key: str | None,
        base_url: str,
    ) -> TuningCreated:
        """Store the tuning and queue its first jobs (the baselines), unless the same
        tuning exists: then rerun the jobs of it that failed or were cancelled."""
        dataset = dataset_to_run(self.store, self.settings, request.dataset, owner)
        axis = search_axis(request.codec, request.range)
        has_truths = all(v.truth_key for v in dataset.volumes)
        score = (
            request.score if request.score != "auto" else ("truth" if has_truths else "agreement")
        )
        if score == "truth" and not has_truths:
            missing = [v.id for v in dataset.volumes if not v.truth_key]
            raise TuningSpecError(
                f"score=truth needs a truth for every volume; {len(missing)} have none "
                f"({', '.join(missing[:5])}): use score=agreement"
            )
        depth = math.ceil(math.log2(len(axis.values) + 1))
        expected = len(dataset.volumes) * (depth + 2)
        if expected > self.settings.max_sweep_jobs:
            raise LimitExceededError(
                f"{len(dataset.volumes)} volumes x about {depth + 2} jobs each make more "
                f"jobs than VESSELZIP_MAX_SWEEP_JOBS ({self.settings.max_sweep_jobs}) allows"
            )
        model, identity = self.jobs.model_for_volumes(
            request.model, [(f"volume {v.id}", volume_image(v)) for v in dataset.volumes]
        )
        values = list(axis.values)
        key = idempotency_key or default_tuning_key(
            dataset.id,
            [v.fingerprint for v in dataset.volumes],
            axis.text,
            values,
            request.max_dice_loss,
            request.coverage,
            score,
            identity,
        )
        tuning_id = tuning_id_for(owner, key)
        with self._lock(tuning_id, blocking_timeout=60):
            try:
                spec = load_tuning(self.store, tuning_id)
                created = False
                if (spec.dataset_id, spec.axis, spec.values, spec.max_dice_loss) != (
                    dataset.id,
                    axis.text,
                    values,
                    request.max_dice_loss,
                ) or (spec.coverage, spec.score, spec.model) != (request.coverage, score, model):
                    raise SweepConflictError(
                        f"the idempotency key was used for tuning {tuning_id} with another "
                        "dataset, codec, range, budget, coverage, score or model"
                    )
            except NotFoundError:
                spec = TuningSpec(
                    id=tuning_id,
                    owner=owner,
                    dataset_id=dataset.id,
                    dataset_name=dataset.name,
                    model=model,
                    model_identity=identity,
                    queue=request.queue or self.settings.default_queue,
                    axis=axis.text,
                    values=values,
                    configs=list(axis.configs),
                    max_dice_loss=request.max_dice_loss,
                    coverage=request.coverage,
                    score=score,
                    volumes=[
                        TunedVolume(id=v.id, fingerprint=v.fingerprint) for v in dataset.volumes
                    ],
                    idempotency_key=key,
                )
                created = True
            rerun = 0 if created else self._rerun_failed(spec)
            spec.submitted_at = time.time()
            save_tuning(self.store, spec)
            self.redis.sadd(ACTIVE_KEY, spec.id)
            self._advance(spec, dataset)
        return TuningCreated(
            id=spec.id,
            url=tuning_url(base_url, spec.id),
            created=created,
            axis=spec.axis,
            candidates=len(spec.values),
            volumes=len(spec.volumes),
            jobs_rerun=rerun,
            links=_links(base_url, spec),
        )

    def _rerun_failed(self, spec: TuningSpec) -> int:
        """Forget what RQ kept of the tuning's failed or cancelled jobs; the next
        advance queues them again (they read as never run)."""
        evaluation, outcomes = self._evaluate(spec)
        failed = [
            j for j in evaluation.referenced if outcomes.get(j) and outcomes[j].state in _RERUN
        ]
        for job_id in failed:
            queues.delete(job_id, self.redis)
            self.store.delete(result_key(job_id))
        return len(failed)

    # -- moving on ----------------------------------------------------------------
    def advance_active(self) -> None:
        """One round of the driver: move every active tuning on; forget the ended ones."""
        for raw in sorted(cast("set[bytes]", self.redis.smembers(ACTIVE_KEY))):
            tuning_id = raw.decode()
            try:
                lock = self._lock(tuning_id, blocking_timeout=0)
                if not lock.acquire(blocking=False):
                    continue  # another gateway (or a request) is at it
                try:
                    spec = load_tuning(self.store, tuning_id)
                    evaluation, _ = self._advance(spec)
                finally:
                    lock.release()
            except NotFoundError:
                self.redis.srem(ACTIVE_KEY, tuning_id)
                continue
            except StoreUnavailableError as exc:
                log.warning("tuning %s: %s", tuning_id, exc)
                continue
            if search_ended(evaluation):
                self.redis.srem(ACTIVE_KEY, tuning_id)

    def _lock(self, tuning_id: str, blocking_timeout: float):
        return self.redis.lock(
            f"vesselzip:tuning-lock:{tuning_id}", timeout=120, blocking_timeout=blocking_timeout
        )

    def _advance(
        self, spec: TuningSpec, dataset: Dataset | None = None
    ) -> tuple[Evaluation, dict[str, JobOutcome]]:
        """Evaluate, queue the jobs the search asks for, evaluate again (their outcomes
        changed); a volume gone from the dataset fails its search."""
        evaluation, outcomes = self._evaluate(spec)
        if not evaluation.to_run:
            return evaluation, outcomes
        try:
            dataset = dataset or load_dataset(self.store, spec.dataset_id)
            volumes = {v.id: v for v in dataset.volumes}
        except NotFoundError:
            volumes = {}
        specs = []
        for volume_id, index in evaluation.to_run:
            job_id = spec.job_id(volume_id, index)
            volume = volumes.get(volume_id)
            if volume is None or volume.fingerprint != _fingerprint(spec, volume_id):
                outcomes[job_id] = JobOutcome(
                    state=JobState.FAILED,
                    error=f"volume {volume_id} is no longer in dataset {spec.dataset_id}",
                )
                continue
            specs.append(
                volume_job_spec(
                    job_id,
                    volume,
                    spec.configs[index] if index is not None else {"id": "none"},
                    model=spec.model,
                    owner=spec.owner,
                    reference=spec.job_id(volume_id, None) if index is not None else None,
                )
            )
        if specs:
            self.jobs.submit(specs, spec.queue)
            for job in specs:
                outcomes[job.job_id] = JobOutcome(state=JobState.QUEUED)
        return evaluate(spec, outcomes), outcomes

    def _evaluate(self, spec: TuningSpec) -> tuple[Evaluation, dict[str, JobOutcome]]:
        """The search as far as the jobs' outcomes allow, looking outcomes up step by
        step (one round trip per bisection step, for every volume at once)."""
        outcomes: dict[str, JobOutcome] = {}
        for _ in range(4 * len(spec.values) + 8):  # each round resolves a step
            evaluation = evaluate(spec, outcomes)
            if not evaluation.lookups:
                return evaluation, outcomes
            outcomes.update(find_jobs(sorted(evaluation.lookups), self.redis, self.store))
        return evaluate(spec, outcomes), outcomes

    # -- read -------------------------------------------------------------------
    def status(self, tuning_id: str, owner: str | None, base_url: str) -> TuningStatus:
        spec = load_tuning(self.store, tuning_id)
        check_access(self.settings, spec.owner, owner, f"tuning {tuning_id}")
        with self._lock(tuning_id, blocking_timeout=30):
            evaluation, outcomes = self._advance(spec)
        if not search_ended(evaluation):
            self.redis.sadd(ACTIVE_KEY, spec.id)  # e.g. after a Redis flush
        return TuningStatus(
            id=spec.id,
            url=tuning_url(base_url, spec.id),
            dataset=spec.dataset_id,
            dataset_name=spec.dataset_name,
            model=spec.model,
            axis=spec.axis,
            range=(spec.values[0], spec.values[-1]),
            candidates=len(spec.values),
            score=spec.score,
            max_dice_loss=spec.max_dice_loss,
            coverage=spec.coverage,
            created_at=_when(spec.created_at),
            progress=_progress(spec, evaluation, outcomes),
            answer=evaluation.answer,
            inferences=_inferences(spec, evaluation, outcomes),
            volumes=evaluation.volumes,
            links=_links(base_url, spec),
        )

    def list(self, owner: str | None, base_url: str) -> TuningList:
        everyone = sees_everything(self.settings)
        return TuningList(
            tunings=[
                TuningSummary(
                    id=spec.id,
                    url=tuning_url(base_url, spec.id),
                    dataset=spec.dataset_id,
                    axis=spec.axis,
                    max_dice_loss=spec.max_dice_loss,
                    score=spec.score,
                    created_at=_when(spec.created_at),
                )
                for spec in list_tunings(self.store, owner, everyone=everyone)
            ]
        )


def search_ended(evaluation: Evaluation) -> bool:
    """No volume still searching and the dataset answer settled (or impossible)."""
    if any(v.state == "searching" for v in evaluation.volumes):
        return False
    return evaluation.answer.state in ("finished", "none") or evaluation.answer.volumes == 0


def _fingerprint(spec: TuningSpec, volume_id: str) -> str:
    return next(v.fingerprint for v in spec.volumes if v.id == volume_id)


def _progress(
    spec: TuningSpec, evaluation: Evaluation, outcomes: dict[str, JobOutcome]
) -> TuningProgress:
    used = [outcomes[j] for j in evaluation.referenced if j in outcomes]
    done = sum(o.ended for o in used)
    ended = search_ended(evaluation)
    depth = math.ceil(math.log2(len(spec.values) + 1))
    total = done if ended else max(len(spec.volumes) * (depth + 2), len(used), done + 1)
    now = time.time()
    elapsed = max(0.0, now - spec.submitted_at)
    paced = sum(
        1 for o in used if o.result is not None and o.result.finished_at >= spec.submitted_at
    )
    eta = 0.0 if ended else ((total - done) * elapsed / paced if paced and elapsed > 0 else None)
    if ended:
        state = "finished" if evaluation.answer.volumes else "failed"
    else:
        state = "running" if done or any(o.state == JobState.RUNNING for o in used) else "queued"
    return TuningProgress(
        state=state,
        done=done,
        total=total,
        fraction=done / total if total else 1.0,
        elapsed_s=elapsed,
        eta_s=eta,
    )


def _inferences(
    spec: TuningSpec, evaluation: Evaluation, outcomes: dict[str, JobOutcome]
) -> TuningInferences:
    finished = [
        outcomes[j].result
        for j in evaluation.referenced
        if j in outcomes and outcomes[j].state == JobState.FINISHED and outcomes[j].result
    ]
    reused = sum(1 for r in finished if r is not None and r.finished_at < spec.created_at)
    return TuningInferences(
        used=len(finished),
        reused=reused,
        ran=len(finished) - reused,
        full_grid=len(spec.volumes) * (len(spec.values) + 1),
    )


def tuning_url(base_url: str, tuning_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/tunings/{tuning_id}"


def _links(base_url: str, spec: TuningSpec) -> TuningLinks:
    return TuningLinks(
        self=tuning_url(base_url, spec.id),
        dataset=f"{base_url.rstrip('/')}/v1/datasets/{spec.dataset_id}",
    )


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)
