"""The embedded default: `vesselzip serve` with no Redis URL, and `vesselzip demo`,
which starts it, posts phantoms over HTTP and prints a results table."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import redis
from rq.serializers import JSONSerializer
from rq.worker import Worker
from vesselzip.redis_embedded import process_alive

from .helpers import SMALL_SHAPE, free_port, post_job, wait_for_job, wait_until


def embedded_env(store_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESSELZIP_")}
    env.update(
        {
            "VESSELZIP_STORE_DIR": str(store_dir),
            "VESSELZIP_DEFAULT_MODEL": "frangi",
            "VESSELZIP_WORKER_HEARTBEAT_S": "0.5",
            "VESSELZIP_REAPER_INTERVAL_S": "0.5",
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def redis_socket(log_text: str) -> str:
    match = re.search(r"embedded Redis at (unix://\S+)", log_text)
    assert match, log_text
    return match.group(1)


def start_serve(tmp_path, *options: str) -> tuple[subprocess.Popen, str, object]:
    """`vesselzip serve` on a free port with the embedded default: (process, url, log)."""
    port = free_port()
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "vesselzip", "serve", "--port", str(port), *options],
        env=embedded_env(tmp_path / "store"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return serve, f"http://127.0.0.1:{port}", log


def serve_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/ready", timeout=5).json()["ready"]
    except httpx.HTTPError:
        return False


def assert_embedded_redis_gone(log) -> None:
    try:
        redis.Redis.from_url(redis_socket(log.read_text()), socket_connect_timeout=1).ping()
        raise AssertionError("the embedded Redis outlived `vesselzip serve`")
    except redis.exceptions.ConnectionError:
        pass


def test_serve_restarts_a_killed_worker_and_stops_everything_on_ctrl_c(tmp_path, phantoms):
    serve, url, log = start_serve(tmp_path)
    try:
        wait_until(lambda: serve_ready(url), 120, "vesselzip serve to be ready", interval_s=0.5)
        connection = redis.Redis.from_url(redis_socket(log.read_text()))
        (worker,) = Worker.all(connection=connection, serializer=JSONSerializer)
        os.kill(worker.pid, signal.SIGKILL)

        def replaced():
            workers = Worker.all(connection=connection, serializer=JSONSerializer)
            return any(w.pid != worker.pid for w in workers) and serve_ready(url)

        wait_until(replaced, 120, "serve to start a new worker", interval_s=0.5)
        image, truth = phantoms[0]
        job = wait_for_job(url, post_job(url, image, truth).json()["id"])
        assert job["state"] == "finished"
        connection.close()
    finally:
        serve.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert serve.wait(timeout=60) == 0, log.read_text()

    assert "starting a new one" in log.read_text()
    # The embedded Redis is gone with it, its data kept in the store directory.
    assert_embedded_redis_gone(log)
    assert (tmp_path / "store" / "redis" / "appendonly.aof").exists()


def test_serve_stops_its_workers_and_redis_on_sigterm(tmp_path):
    """What `docker stop`, systemd or `kill` send: nothing may outlive `serve`."""
    serve, url, log = start_serve(tmp_path, "--workers", "2")
    try:
        wait_until(lambda: serve_ready(url), 120, "vesselzip serve to be ready", interval_s=0.5)
        connection = redis.Redis.from_url(redis_socket(log.read_text()))

        def both_workers() -> list[int] | None:
            workers = Worker.all(connection=connection, serializer=JSONSerializer)
            return [w.pid for w in workers] if len(workers) == 2 else None

        worker_pids = wait_until(both_workers, 60, "both workers to register", interval_s=0.5)
        connection.close()
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()

    assert not any(process_alive(pid) for pid in worker_pids), log.read_text()
    assert_embedded_redis_gone(log)


def test_demo_runs_the_main_job_through_http(tmp_path):
    shape = ",".join(str(n) for n in SMALL_SHAPE)
    run = subprocess.run(
        [sys.executable, "-m", "vesselzip", "demo", "--volumes", "2", "--shape", shape]
        + ["--settings", "none,zfp:rate=4"],
        env=embedded_env(tmp_path / "store"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("Compression vs. segmentation", 1)[1]
    rows = [line.split() for line in table.splitlines() if line.strip().startswith("phantom_")]
    assert [row[:2] for row in rows] == [
        ["phantom_000", "none"],
        ["phantom_000", "zfp:rate=4"],
        ["phantom_001", "none"],
        ["phantom_001", "zfp:rate=4"],
    ]
    for row in rows:
        assert row[-1] == "finished"
        dice, iou = float(row[6]), float(row[7])
        assert 0 < iou <= dice <= 1
    assert all(row[4] == "lossless" for row in rows if row[1] == "none")
    assert all(float(row[2]) > 3 for row in rows if row[1] == "zfp:rate=4")
