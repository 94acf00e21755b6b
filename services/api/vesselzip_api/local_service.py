"""Start `vesselzip serve` as a child process and wait until it is ready (for the demo
and the load benchmark, which talk to the service only over HTTP)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from vesselzip.errors import VesselzipError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_service(
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    log_path: Path,
    ready_timeout_s: float = 600,
) -> Iterator[str]:
    """Yield the base URL of a fresh `vesselzip serve` on a free port; stop it (as
    Ctrl-C would) on exit."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vesselzip", "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, workers, ready_timeout_s, log_path)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process, url: str, workers: int, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VesselzipError(f"the service exited ({process.returncode}); see {log_path}")
        try:
            body = httpx.get(f"{url}/v1/ready", timeout=5).json()
            if body.get("redis") and body.get("store") and body.get("workers", 0) >= workers:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise VesselzipError(f"the service was not ready after {timeout_s:.0f} s; see {log_path}")
