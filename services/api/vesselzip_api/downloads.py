"""A stored object as a download: streamed through the gateway, or a redirect to a
presigned URL of the store when the settings ask for one and the store has them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.responses import RedirectResponse, Response, StreamingResponse

from vesselzip.settings import Settings
from vesselzip.store import BlobStore


@dataclass(frozen=True)
class Download:
    filename: str
    media_type: str
    size: int = 0
    chunks: Iterator[bytes] | None = None
    url: str | None = None


def download_of(
    store: BlobStore, settings: Settings, key: str, filename: str, media_type: str
) -> Download:
    if settings.presign_downloads:
        url = store.download_url(key, filename, settings.presign_expiry_s)
        if url is not None:
            return Download(filename, media_type, url=url)
    # Both looked up now, so a missing object is a 404 before any byte is sent.
    size = store.size(key)
    return Download(filename, media_type, size=size, chunks=store.iter_bytes(key))


def download_response(download: Download) -> Response:
    if download.url is not None:
        return RedirectResponse(download.url, status_code=307)
    assert download.chunks is not None
    return StreamingResponse(
        download.chunks,
        media_type=download.media_type,
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.filename}"',
        },
    )
