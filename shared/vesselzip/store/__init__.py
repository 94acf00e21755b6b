"""Blob store: where compressed volumes, truths, masks, result JSON, datasets, sweeps
and the per-owner indexes live.

Keys are relative POSIX paths such as ``blobs/<job>.vz``. Every store shows an object
whole or not at all: the local one writes a temporary file in the same directory and
renames it into place (so a reader on this host, or another one sharing the mount,
never sees half an object); S3 makes an object visible only once its upload, multipart
or not, has completed (`vesselzip.store.s3`). `open_store` picks one by location."""

from __future__ import annotations

from pathlib import Path

from vesselzip.errors import VesselzipError
from vesselzip.store.base import BlobStore, check_key
from vesselzip.store.local import LocalStore

__all__ = ["BlobStore", "LocalStore", "check_key", "open_store"]


def open_store(location: str | Path) -> BlobStore:
    """The store at `location` (VESSELZIP_STORE_URL, else VESSELZIP_STORE_DIR): a local
    folder, as a path or a ``file://`` URL, or ``s3://bucket/prefix`` on any
    S3-compatible server (endpoint, region and credentials from the standard AWS
    environment variables)."""
    text = str(location)
    if text.startswith("s3://"):
        from vesselzip.store.s3 import S3Store  # boto3 only where S3 is used

        return S3Store.from_url(text)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise VesselzipError(
            f"store location {text!r}: use a folder, file://FOLDER or s3://BUCKET/PREFIX"
        )
    return LocalStore(text)
