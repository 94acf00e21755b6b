"""The blob store on an S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph...).

boto3 does the signing, the retries with backoff and the multipart transfers. Where
the server is, and who we are, comes from the standard AWS environment variables
(`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`, `AWS_PROFILE`,
`AWS_MAX_ATTEMPTS`...), read by boto3 itself. An object appears only once its upload
has completed, so a reader never sees half a result."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from vesselzip.errors import NotFoundError, StoreUnavailableError, VesselzipError
from vesselzip.store.base import BlobStore, check_key

#: Objects above this size go up and down in parts of this size (streamed from and to
#: disk, several at a time), never as one whole request held in memory.
PART_BYTES = 16 * 1024**2

_MISSING = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(BlobStore):
    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        session = boto3.session.Session()  # its own: the default one is not thread-safe
        self.client = client or session.client(
            "s3",
            # S3 needs a region to sign; a server of our own (MinIO...) ignores it.
            region_name=session.region_name or "us-east-1",
            config=Config(
                # "standard" retries throttling, 5xx and dropped connections with
                # exponential backoff; AWS_MAX_ATTEMPTS still overrides the count.
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=4
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        parts = urlsplit(url)
        if not parts.netloc:
            raise VesselzipError(f"store location {url!r} names no bucket: use s3://BUCKET/PREFIX")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        return cls(parts.netloc, prefix)

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    # -- faults -----------------------------------------------------------------
    @contextlib.contextmanager
    def _faults(self, action: str, key: str) -> Iterator[None]:
        """boto3's errors (after its own retries) as the store's: a missing object as
        NotFoundError, everything else as StoreUnavailableError with the reason."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING:
                raise NotFoundError(f"no stored object {key!r}") from None
            raise StoreUnavailableError(
                f"the store cannot {action} {key!r} right now: {self._reason(exc)}"
            ) from exc
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailableError(
                f"the store cannot {action} {key!r} right now: {self._reason(exc)}"
            ) from exc

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, NoCredentialsError):
            return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return f"bucket {self.bucket!r} does not exist"
            if code in _REFUSED:
                return f"the credentials were refused ({code})"
            message = exc.response.get("Error", {}).get("Message") or ""
            return f"{code} {message}".strip()
        return str(exc)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- objects ----------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        with self._faults("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, source: Path) -> None:
        with self._faults("write", key):
            self.client.upload_file(str(source), self.bucket, self._key(key), Config=self.transfer)
        Path(source).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        with self._faults("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        fd, name = tempfile.mkstemp(prefix="vesselzip-", suffix=Path(key).name)
        os.close(fd)
        path = Path(name)
        try:
            with self._faults("read", key):
                # Ranged parts, written to the file as they come.
                self.client.download_file(self.bucket, self._key(key), name, Config=self.transfer)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def iter_bytes(self, key: str, chunk_size: int = 1024**2) -> Iterator[bytes]:
        with self._faults("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return self._stream(body, key, chunk_size)

    def _stream(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        with contextlib.closing(body), self._faults("read", key):
            yield from body.iter_chunks(chunk_size)

    def download_url(self, key: str, filename: str, expires_s: int) -> str | None:
        with self._faults("sign a URL for", key):
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(key),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=expires_s,
            )

    def _head(self, key: str) -> dict | None:
        try:
            with self._faults("look up", key):
                return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise NotFoundError(f"no stored object {key!r}")
        return int(head["ContentLength"])

    def delete(self, key: str) -> bool:
        # S3 deletes answer the same whether or not the object was there.
        existed = self.exists(key)
        with self._faults("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return existed

    def keys(self, prefix: str = "") -> Iterator[str]:
        # A prefix is a folder: "datasets/ab" must not list "datasets/abc/...".
        where = self.prefix + (check_key(prefix.rstrip("/")) + "/" if prefix else "")
        with self._faults("list", prefix or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=where
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if not key.rsplit("/", 1)[-1].startswith("."):  # the write probe
                        yield key

    def temp_file(self, suffix: str = "") -> tuple[BinaryIO, Path]:
        # Uploads are spooled on local disk (TMPDIR) and sent up in parts by put_file.
        fd, name = tempfile.mkstemp(prefix="vesselzip-", suffix=suffix)
        return os.fdopen(fd, "w+b"), Path(name)

    def problem(self) -> str | None:
        """Whether the bucket is there, the credentials are taken and an object can be
        written and removed; the first thing that fails, in words."""
        probe = self.prefix + ".probe"  # no store key starts with a dot: never listed
        try:
            with self._faults("reach bucket", self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
            with self._faults("write", probe):
                self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
                self.client.delete_object(Bucket=self.bucket, Key=probe)
            return None
        except NotFoundError:  # head_bucket answers a bare 404 for a missing bucket
            return f"S3 bucket {self.bucket!r} does not exist"
        except StoreUnavailableError as exc:
            return f"S3 store s3://{self.bucket}/{self.prefix}: {exc}"
