"""What every store offers (`BlobStore`) and what a key may be."""

from __future__ import annotations

import contextlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vesselzip.errors import StoreUnavailableError, VesselzipError

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_key(key: str) -> str:
    """A key is one or more safe path parts joined by "/"; never absolute, never ".."."""
    parts = key.split("/")
    if not key or not all(_KEY_PART.match(p) for p in parts):
        raise VesselzipError(f"invalid store key {key!r}")
    return key


class BlobStore(ABC):
    """The few operations the gateway and the workers need."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Store a file, moving it when possible (the source is gone afterwards)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """A readable local file holding the object, for the length of the `with`
        (the object itself where it is a local file, else a download removed after)."""

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = 1024**2) -> Iterator[bytes]:
        """The object in chunks, read as they are sent (downloads); NotFoundError at the
        first step when it does not exist."""

    def download_url(self, key: str, filename: str, expires_s: int) -> str | None:
        """A URL from which a client may fetch the object directly for `expires_s`
        seconds (S3's presigned URLs), or None where the store has none."""
        return None

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]: ...

    def prune(self, prefix: str) -> None:  # noqa: B027 - a no-op is the right default
        """Remove what deleting every key under `prefix` left behind (empty folders);
        stores without folders have nothing to do."""

    @abstractmethod
    def temp_file(self, suffix: str = "") -> tuple[BinaryIO, Path]:
        """A new temporary file on the store's volume (uploads are spooled here)."""

    def put_json(self, key: str, value: dict) -> None:
        self.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, key: str) -> dict:
        return json.loads(self.get_bytes(key))

    def problem(self) -> str | None:
        """What keeps the store from writing and removing an object right now (the
        reason, for /v1/ready and start-up), or None when it can."""
        try:
            stream, path = self.temp_file(".probe")
            with stream:
                stream.write(b"ok")
            path.unlink()
            return None
        except (OSError, StoreUnavailableError):
            return "the store directory is not writable"

    def writable(self) -> bool:
        return self.problem() is None
