"""The one access rule for jobs, datasets and sweeps.

With API keys configured (VESSELZIP_API_KEYS), a job, dataset or sweep is reachable
only with the key that created it; one created while the API was open has no owner
and is reachable with no key (403) until the API is opened again. With no keys the
API is open: everything is reachable and listed."""

from __future__ import annotations

from vesselzip.settings import Settings
from vesselzip_api.errors import ForbiddenError


def sees_everything(settings: Settings) -> bool:
    """Whether every caller may see everything (the API is open): listings then show
    every owner's datasets and sweeps, else only the caller's."""
    return not settings.api_key_set


def may_access(settings: Settings, owner: str | None, caller: str | None) -> bool:
    """Whether `caller` (an owner id, None on an open API) may see what `owner` made."""
    return sees_everything(settings) or (owner is not None and owner == caller)


def check_access(settings: Settings, owner: str | None, caller: str | None, what: str) -> None:
    """Raise 403 unless `caller` may access `what` (e.g. "job 1f2e...")."""
    if not may_access(settings, owner, caller):
        raise ForbiddenError(f"{what} belongs to another API key")
