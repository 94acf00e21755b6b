"""The store in a folder: a local disk or a mount every host shares (NFS, a Docker
volume). Every object is written to a temporary file beside it and renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vesselzip.errors import NotFoundError, StoreUnavailableError
from vesselzip.store.base import BlobStore, check_key


@contextlib.contextmanager
def _store_faults(action: str, key: str) -> Iterator[None]:
    """OS errors of the store (read-only, full, permissions) as StoreUnavailableError,
    which says what failed without the server's paths."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise StoreUnavailableError(
            f"the store cannot {action} {key!r} right now ({exc.strerror or exc})"
        ) from exc


class LocalStore(BlobStore):
    """A directory on a local disk or a shared mount (NFS, a Docker volume)."""

    TMP_DIR = "tmp"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        (self.root / self.TMP_DIR).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _temp_beside(self, target: Path) -> tuple[int, str]:
        """A new temp file in `target`'s folder, made if need be. A prune() (a dataset
        deleted while a volume is uploaded) may remove the folder, still empty, while it
        is made (mkdir then sees it exist, then not) or before the file is: then both
        steps are tried again."""
        tries = 3
        while True:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                return tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
            except (FileNotFoundError, FileExistsError):
                tries -= 1
                if not tries:
                    raise

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with _store_faults("write", key):
            fd, tmp = self._temp_beside(target)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        with _store_faults("write", key):
            fd, tmp = self._temp_beside(target)
            os.close(fd)
            try:
                # A move within one filesystem is a rename; across filesystems it copies.
                shutil.move(str(source), tmp)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def get_bytes(self, key: str) -> bytes:
        try:
            with _store_faults("read", key):
                return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no stored object {key!r}") from None

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"no stored object {key!r}")
        yield path

    def iter_bytes(self, key: str, chunk_size: int = 1024**2) -> Iterator[bytes]:
        try:
            with _store_faults("read", key):
                stream = self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"no stored object {key!r}") from None
        return _chunks(stream, chunk_size)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"no stored object {key!r}") from None

    def delete(self, key: str) -> bool:
        try:
            with _store_faults("delete", key):
                self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def prune(self, prefix: str) -> None:
        """Remove the empty folders left under `prefix` (and `prefix` itself)."""
        # Deepest first; os.walk skips a folder that another prune removed meanwhile.
        for folder, _, _ in os.walk(self.root / check_key(prefix), topdown=False):
            with contextlib.suppress(OSError):  # not empty (a write raced in): keep it
                os.rmdir(folder)

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not path.name.startswith(".") and not rel.startswith("tmp/"):
                yield rel

    def temp_file(self, suffix: str = "") -> tuple[BinaryIO, Path]:
        with _store_faults("write", self.TMP_DIR):
            fd, name = tempfile.mkstemp(dir=self.root / self.TMP_DIR, suffix=suffix)
        return os.fdopen(fd, "w+b"), Path(name)


def _chunks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(chunk_size):
            yield chunk
