"""Request dependencies: the app's services and the caller's identity."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from vesselzip.settings import Settings
from vesselzip_api.errors import UnauthorizedError
from vesselzip_api.job_service import JobService

API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Required when the gateway is configured with VESSELZIP_API_KEYS.",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_job_service(request: Request) -> JobService:
    return request.app.state.job_service


def owner_of(api_key: str) -> str:
    """Jobs remember a hash of the key that created them, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def get_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    api_key: Annotated[str | None, Security(_api_key)] = None,
) -> str | None:
    """The caller's owner id; None when the API is open (no keys configured)."""
    return owner_for_key(settings, api_key)


def owner_for_key(settings: Settings, api_key: str | None) -> str | None:
    """The owner id of `api_key`; None when the API is open; UnauthorizedError when
    keys are configured and this is none of them."""
    keys = settings.api_key_set
    if not keys:
        return None
    # Compared as bytes: compare_digest refuses non-ASCII text, and a header may hold any.
    given = (api_key or "").encode()
    if not api_key or not any(hmac.compare_digest(given, k.encode()) for k in keys):
        raise UnauthorizedError(f"a valid API key is required in the {API_KEY_HEADER} header")
    return owner_of(api_key)


def base_url(request: Request) -> str:
    return str(request.base_url)


def received_at(request: Request) -> float:
    """When the request's first byte arrived (set by the timing middleware)."""
    return request.scope.get("state", {}).get("received_at") or 0.0


Owner = Annotated[str | None, Depends(get_owner)]
Jobs = Annotated[JobService, Depends(get_job_service)]
BaseURL = Annotated[str, Depends(base_url)]
ReceivedAt = Annotated[float, Depends(received_at)]
