"""A real S3 server for the tests: moto's threaded server on a free local port, with
the standard AWS variables pointing boto3 at it (subprocesses inherit them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "vesselzip-test",
    "AWS_SECRET_ACCESS_KEY": "vesselzip-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server() -> Iterator[str]:
    """Start the server; yields its endpoint URL, with os.environ set for it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL_S3=endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def new_bucket() -> str:
    """A new, empty bucket on the server the environment points at."""
    import boto3

    name = f"vz-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


class FaultyProxy:
    """A real HTTP proxy in front of an S3 server that misbehaves on purpose: answers
    503 SlowDown to every `fail_every`-th request, and/or waits `delay_s` before each
    answer. Point AWS_ENDPOINT_URL_S3 at `url`."""

    def __init__(self, upstream: str, fail_every: int = 0, delay_s: float = 0.0):
        import http.server
        import itertools
        import threading
        import time

        import httpx

        counter = itertools.count(1)
        lock = threading.Lock()
        self.failed = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    n = next(counter)
                time.sleep(delay_s)
                if fail_every and n % fail_every == 0:
                    with lock:
                        proxy.failed += 1
                    payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                answer = httpx.request(
                    self.command, upstream + self.path, headers=headers, content=body, timeout=60
                )
                self.send_response(answer.status_code)
                length = len(answer.content)
                if self.command == "HEAD":  # no body: the object's own length
                    length = int(answer.headers.get("content-length", 0))
                for key, value in answer.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A client closing a kept-alive connection is not worth a traceback.
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
