"""What the sweep routes do: expand a dataset x grid into jobs (sharing the ones that
already exist), follow them, and summarise their results as tables and figures.
Routes only parse the request and call this.

A sweep's cells are ordinary jobs (see /v1/jobs), keyed by (dataset, volume, codec,
model), so the uncompressed baseline of a volume runs once per model whatever the
number of sweeps, and POSTing a sweep again only reruns what failed or was lost.
Results are read from RQ's jobs, else from the result JSON in the store, so the
tables survive a Redis flush."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from redis import Redis

from vesselzip.datasets import VolumeEntry
from vesselzip.errors import LimitExceededError, NotFoundError
from vesselzip.jobs import LOST, JobOutcome, JobSpec, JobState
from vesselzip.settings import Settings
from vesselzip.store import BlobStore
from vesselzip.sweeps import (
    FIGURES,
    SETTING_COLUMNS,
    SweepCell,
    SweepConflictError,
    SweepResults,
    SweepSpec,
    canonical,
    cell_job_id,
    default_idempotency_key,
    figure_png,
    list_sweeps,
    load_sweep,
    markdown_tables,
    parse_grid,
    save_sweep,
    setting_spec,
    sweep_id_for,
    sweep_key,
    sweep_summary,
    sweeps_over,
)
from vesselzip_api.access import check_access, sees_everything
from vesselzip_api.job_service import JobService
from vesselzip_api.sweep_schemas import (
    CellFailure,
    SweepCreated,
    SweepLinks,
    SweepList,
    SweepRequest,
    SweepStatus,
    SweepSummary,
    SweepTables,
)
from vesselzip_api.volume_jobs import dataset_to_run, volume_image, volume_job_spec
from vesselzip_queue import queues
from vesselzip_queue.state import find_jobs

# Cells rerun when a sweep is POSTed again.
_RERUN = (JobState.FAILED, JobState.CANCELLED, LOST)


class SweepService:
    def __init__(self, settings: Settings, connection: Redis, store: BlobStore, jobs: JobService):
        self.settings = settings
        self.redis = connection
        self.store = store
        self.jobs = jobs

    # -- create -----------------------------------------------------------------
    def create(
        self,
        request: SweepRequest,
        *,
        owner: str | None,
        idempotency_key: str | None,
        base_url: str,
    ) -> SweepCreated:
        """Queue a job per (volume, setting) unless one is queued, running or finished
        already. The same idempotency key (or, without one, the same dataset, grid and
        model) gives the same sweep; POSTing it again reruns only failed or lost jobs."""
        dataset = dataset_to_run(self.store, self.settings, request.dataset, owner)
        grid = parse_grid(request.grid)
        n_jobs = len(dataset.volumes) * len(grid)
        if n_jobs > self.settings.max_sweep_jobs:
            raise LimitExceededError(
                f"{len(dataset.volumes)} volumes x {len(grid)} settings (the baseline "
                f"included) make {n_jobs} jobs, more than VESSELZIP_MAX_SWEEP_JOBS "
                f"({self.settings.max_sweep_jobs}) allows in a sweep"
            )
        model, identity = self.jobs.model_for_volumes(
            request.model, [(f"volume {v.id}", volume_image(v)) for v in dataset.volumes]
        )
        # Results are reused by the weights behind the name, not by the name alone.
        fingerprints = [v.fingerprint for v in dataset.volumes]
        key = idempotency_key or default_idempotency_key(dataset.id, fingerprints, grid, identity)
        sweep_id = sweep_id_for(owner, key)

        # One request at a time per sweep, so two identical POSTs never queue a job twice.
        with self.redis.lock(f"vesselzip:sweep-lock:{sweep_id}", timeout=120, blocking_timeout=60):
            if self.store.exists(sweep_key(sweep_id)):
                spec = load_sweep(self.store, sweep_id)
                same_grid = sorted(map(canonical, spec.grid)) == sorted(map(canonical, grid))
                if spec.dataset_id != dataset.id or spec.model != model or not same_grid:
                    raise SweepConflictError(
                        f"the idempotency key was used for sweep {sweep_id} with another "
                        "dataset, grid or model"
                    )
                created = False
            else:
                spec = SweepSpec(
                    id=sweep_id,
                    owner=owner,
                    dataset_id=dataset.id,
                    dataset_name=dataset.name,
                    model=model,
                    queue=request.queue or self.settings.default_queue,
                    grid=grid,
                    idempotency_key=key,
                    cells=[
                        SweepCell(
                            volume_id=volume.id,
                            setting=index,
                            job_id=cell_job_id(dataset.id, volume.fingerprint, config, identity),
                        )
                        for volume in dataset.volumes
                        for index, config in enumerate(grid)
                    ],
                )
                created = True
            volumes = {v.id: v for v in dataset.volumes}
            outcomes = self._outcomes(spec)
            to_submit = [
                cell
                for cell in spec.cells
                if outcomes[cell.job_id].state in _RERUN
                and cell.volume_id in volumes
                and self._idle(cell, outcomes[cell.job_id])
            ]
            if to_submit:
                spec.submitted_at = time.time()
            # The sweep is stored before its jobs are queued: if this process dies in
            # between, POSTing it again queues the rest.
            save_sweep(self.store, spec)
            # A rerun starts afresh: what RQ kept of the failed or cancelled run goes.
            for cell in to_submit:
                if outcomes[cell.job_id].state != LOST:
                    queues.delete(cell.job_id, self.redis)
            baselines = baseline_jobs(spec)
            self.jobs.submit(
                [
                    cell_job_spec(spec, cell, volumes[cell.volume_id], baselines[cell.volume_id])
                    for cell in to_submit
                ],
                spec.queue,
            )
        return SweepCreated(
            id=spec.id,
            url=sweep_url(base_url, spec.id),
            created=created,
            total_jobs=len(spec.cells),
            jobs_submitted=len(to_submit),
            jobs_reused=len(spec.cells) - len(to_submit),
            links=_links(base_url, spec.id),
        )

    def _idle(self, cell: SweepCell, outcome: JobOutcome) -> bool:
        """Whether RQ is done with the job: a cancelled one may still be running until
        its next progress report (a rerun then waits for the next POST)."""
        if outcome.state != JobState.CANCELLED:
            return True
        rq_job = queues.fetch_rq_job(cell.job_id, self.redis)
        return rq_job is None or not rq_job.get_executions()

    # -- read -------------------------------------------------------------------
    def _outcomes(self, spec: SweepSpec) -> dict[str, JobOutcome]:
        """Where each cell's job stands, read in a few round trips (state.find_jobs)."""
        return find_jobs([cell.job_id for cell in spec.cells], self.redis, self.store)

    def _load(self, sweep_id: str, owner: str | None) -> SweepSpec:
        spec = load_sweep(self.store, sweep_id)
        check_access(self.settings, spec.owner, owner, f"sweep {sweep_id}")
        return spec

    def summary(self, sweep_id: str, owner: str | None) -> SweepResults:
        spec = self._load(sweep_id, owner)
        outcomes = self._outcomes(spec)
        return sweep_summary(spec, outcomes)

    def status(self, sweep_id: str, owner: str | None, base_url: str) -> SweepStatus:
        spec = self._load(sweep_id, owner)
        outcomes = self._outcomes(spec)
        summary = sweep_summary(spec, outcomes)
        return SweepStatus(
            id=spec.id,
            url=sweep_url(base_url, spec.id),
            dataset=spec.dataset_id,
            dataset_name=spec.dataset_name,
            model=spec.model,
            queue=spec.queue,
            grid=[setting_spec(c) for c in spec.grid],
            n_volumes=summary.n_volumes,
            created_at=_when(spec.created_at),
            progress=summary.progress,
            settings=summary.settings,
            failures=[
                CellFailure(
                    volume=case.volume,
                    setting=case.setting,
                    state=case.state,
                    job_id=case.job_id,
                    error=case.error,
                )
                for case in summary.cases
                if case.state in _RERUN
            ],
            links=_links(base_url, spec.id),
        )

    def tables(self, sweep_id: str, owner: str | None) -> SweepTables:
        summary = self.summary(sweep_id, owner)
        return SweepTables(
            sweep_id=summary.sweep_id,
            dataset_id=summary.dataset_id,
            model=summary.model,
            n_volumes=summary.n_volumes,
            progress=summary.progress,
            settings=summary.settings,
            columns=SETTING_COLUMNS,
        )

    def markdown(self, sweep_id: str, owner: str | None) -> str:
        return markdown_tables(self.summary(sweep_id, owner))

    def figure(self, sweep_id: str, owner: str | None, name: str) -> bytes:
        return figure_png(self.summary(sweep_id, owner), name)

    def list(self, owner: str | None, base_url: str) -> SweepList:
        return SweepList(
            sweeps=[
                SweepSummary(
                    id=spec.id,
                    url=sweep_url(base_url, spec.id),
                    dataset=spec.dataset_id,
                    model=spec.model,
                    grid=[setting_spec(c) for c in spec.grid],
                    total_jobs=len(spec.cells),
                    created_at=_when(spec.created_at),
                )
                for spec in list_sweeps(self.store, owner, everyone=sees_everything(self.settings))
            ]
        )

    # -- datasets going away --------------------------------------------------------
    def cancel_dataset_jobs(self, dataset_id: str, owner: str | None) -> int:
        """Cancel the unfinished jobs of every sweep over `dataset_id`."""
        cancelled = 0
        job_ids = sorted(
            {cell.job_id for spec in sweeps_over(self.store, dataset_id) for cell in spec.cells}
        )
        outcomes = find_jobs(job_ids, self.redis, self.store)
        for job_id in job_ids:
            if outcomes[job_id].ended:
                continue
            try:
                self.jobs.delete(job_id, owner)
                cancelled += 1
            except NotFoundError:  # it ended meanwhile
                pass
        return cancelled


def baseline_jobs(spec: SweepSpec) -> dict[str, str]:
    """The uncompressed baseline's job of each volume of a sweep."""
    return {cell.volume_id: cell.job_id for cell in spec.cells if cell.setting == 0}


def cell_job_spec(spec: SweepSpec, cell: SweepCell, volume: VolumeEntry, baseline: str) -> JobSpec:
    """The job of one cell; every setting but the baseline is compared with the
    baseline's mask of the same volume (agreement)."""
    return volume_job_spec(
        cell.job_id,
        volume,
        spec.grid[cell.setting],
        model=spec.model,
        owner=spec.owner,
        reference=baseline if baseline != cell.job_id else None,
    )


def sweep_url(base_url: str, sweep_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/sweeps/{sweep_id}"


def _links(base_url: str, sweep_id: str) -> SweepLinks:
    url = sweep_url(base_url, sweep_id)
    return SweepLinks(
        self=url,
        tables=f"{url}/tables",
        cases=f"{url}/cases",
        figures={name: f"{url}/figures/{name}.png" for name in FIGURES},
    )


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)
