"""How long a sweep at the job cap takes to POST and to read back (`GET /v1/sweeps/{id}`
and its tables), with its jobs queued and then with all of them finished (the gateway
in this process on an embedded Redis, a store in a temp folder, no worker).

    python bench/sweep_status.py --volumes 100 --settings 49 --repeat 5

100 volumes x (49 settings + the baseline) = 5000 jobs, VESSELZIP_MAX_SWEEP_JOBS's
default. Finished jobs are made with RQ's own calls (status and a result holding a
JobResult), as a worker leaves them, without running 5000 segmentations."""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from fastapi.testclient import TestClient
from rq.job import JobStatus
from rq.results import Result

from vesselzip.jobs import JobResult, JobState
from vesselzip.redis_embedded import EmbeddedRedis
from vesselzip.settings import Settings
from vesselzip_api.main import create_app
from vesselzip_queue.queues import connect, fetch_rq_job


def volume(seed: int) -> bytes:
    data = np.random.default_rng(seed).integers(0, 1000, (8, 8, 8)).astype(np.int16)
    return gzip.compress(nib.Nifti1Image(data, np.eye(4)).to_bytes(), mtime=0)


def finish_all(redis_url: str, job_ids: list[str]) -> None:
    """Each job as a worker leaves it: FINISHED, its JobResult as the return value."""
    connection = connect(redis_url)
    for job_id in job_ids:
        job = fetch_rq_job(job_id, connection)
        assert job is not None
        spec = job.args[0]
        result = JobResult(
            job_id=job_id,
            state=JobState.FINISHED,
            model=spec["model"],
            codec=spec["codec"],
            image=spec["image"],
            has_truth=False,
            compression={"compression_ratio": 4.0, "psnr_db": 40.0},
            segmentation=None,
            created_at=spec["created_at"],
        )
        with connection.pipeline() as pipe:
            job.set_status(JobStatus.FINISHED, pipeline=pipe)
            Result.create(
                job,
                Result.Type.SUCCESSFUL,
                ttl=3600,
                return_value=result.model_dump(mode="json"),
                pipeline=pipe,
            )
            pipe.execute()


def timed(client: TestClient, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--settings", type=int, default=49, help="besides the baseline")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    grid = [f"zfp:rate={1 + i * 0.25:g}" for i in range(args.settings)]
    n_jobs = args.volumes * (args.settings + 1)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        settings = Settings(
            redis_url=server.url,
            store_dir=Path(tmp) / "store",
            default_model="frangi",
            max_sweep_jobs=max(n_jobs, 1),
        )
        with TestClient(create_app(settings)) as client:
            images = [("images", (f"v{i}.nii.gz", volume(i))) for i in range(args.volumes)]
            dataset = client.post("/v1/datasets", files=images)
            assert dataset.status_code == 201, dataset.text
            started = time.perf_counter()
            sweep = client.post(
                "/v1/sweeps", json={"dataset": dataset.json()["id"], "grid": grid, "queue": "gpu"}
            )
            post_s = time.perf_counter() - started
            assert sweep.status_code in (200, 201, 202), sweep.text
            sweep_id = sweep.json()["id"]
            print(f"{n_jobs} jobs: POST /v1/sweeps {post_s * 1000:.0f} ms")
            for label in ("queued", "finished"):
                if label == "finished":
                    cases = client.get(f"/v1/sweeps/{sweep_id}/cases").json()["cases"]
                    job_ids = [c["job_id"] for c in cases]
                    finish_all(server.url, job_ids)
                for path in (f"/v1/sweeps/{sweep_id}", f"/v1/sweeps/{sweep_id}/tables"):
                    times = timed(client, path, args.repeat)
                    print(
                        f"  {label:8} GET {path.replace(sweep_id, '{id}'):28} median "
                        f"{statistics.median(times):.0f} ms, max {max(times):.0f} ms"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
