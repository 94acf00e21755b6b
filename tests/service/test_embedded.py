"""The embedded default: `vesselzip serve` with no Redis URL, and `vesselzip demo`,
which starts it, posts phantoms over HTTP and prints a results table."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

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


def start_serve(
    tmp_path, *options: str, store=None, extra_env=None
) -> tuple[subprocess.Popen, str, object]:
    """`vesselzip serve` on a free port with the embedded default: (process, url, log)."""
    port = free_port()
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "vesselzip", "serve", "--port", str(port), *options],
        env={**embedded_env(store or tmp_path / "store"), **(extra_env or {})},
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


def socket_folder(log) -> Path:
    return Path(redis_socket(log.read_text()).removeprefix("unix://")).parent


def assert_no_temp_folder_left(log, tmp_path) -> None:
    """The embedded Redis's socket lives in the store, or else in a folder of the
    system temp dir that must be gone once `serve` is."""
    folder = socket_folder(log)
    if not folder.is_relative_to(tmp_path):
        assert not folder.exists(), f"{folder} left behind: {sorted(os.listdir(folder))}"


def redis_pid(connection: redis.Redis) -> int:
    return int(connection.info("server")["process_id"])


def zombie(pid: int) -> bool:
    """Exited but not yet reaped (by init, once its parent is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


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
    assert_no_temp_folder_left(log, tmp_path)


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
    assert_no_temp_folder_left(log, tmp_path)


def demo_rows(tmp_path, *arguments: str) -> list[list[str]]:
    run = subprocess.run(
        [sys.executable, "-m", "vesselzip", "demo", *arguments, "--settings", "none,zfp:rate=4"]
        + ["--out", str(tmp_path / "demo")],
        env=embedded_env(tmp_path / "store"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("Compression vs. segmentation", 1)[1]
    return [line.split() for line in table.splitlines() if line.strip().startswith("phantom_")]


def test_demo_runs_the_main_job_through_http(tmp_path):
    shape = ",".join(str(n) for n in SMALL_SHAPE)
    rows = demo_rows(tmp_path, "--volumes", "2", "--field-of-view", "crop", "--shape", shape)
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
    # It leaves something to open: each job's pictures, shown by index.html.
    out = tmp_path / "demo"
    pictures = sorted(p.name for p in (out / "pictures").glob("*.png"))
    assert len(pictures) == 4 * 3  # 4 jobs x axial, coronal, sagittal
    page = (out / "index.html").read_text()
    assert all(f"pictures/{name}" in page for name in pictures)
    assert len(json.loads((out / "results.json").read_text())) == 4


def test_the_default_demo_segments_the_circle_of_willis_of_a_whole_head(tmp_path):
    # A 512x512x160 whole head cut to its Circle of Willis, the default model on it.
    rows = demo_rows(tmp_path, "--volumes", "1", "--model", "mvn-arteries")
    assert [row[:2] for row in rows] == [
        ["phantom_000_crop00", "none"],
        ["phantom_000_crop00", "zfp:rate=4"],
    ]
    assert all(row[-1] == "finished" for row in rows)
    assert float(rows[0][6]) > 0.8  # Dice against the named arteries


def test_serve_restarts_its_killed_embedded_redis_at_the_same_url(tmp_path, phantoms):
    """The embedded redis-server is SIGKILLed: `serve` starts it again on the same data
    directory and socket, the gateway and the worker reconnect by themselves and the
    data written before the kill is still there (AOF)."""
    serve, url, log = start_serve(tmp_path)
    try:
        wait_until(lambda: serve_ready(url), 120, "vesselzip serve to be ready", interval_s=0.5)
        connection = redis.Redis.from_url(redis_socket(log.read_text()), socket_timeout=5)
        connection.set("vesselzip:test:marker", "kept")
        first_pid = redis_pid(connection)
        os.kill(first_pid, signal.SIGKILL)

        def restarted() -> bool:
            try:
                return redis_pid(connection) != first_pid and serve_ready(url)
            except redis.exceptions.ConnectionError:
                return False

        wait_until(restarted, 30, "serve to start its Redis again", interval_s=0.3)
        assert connection.get("vesselzip:test:marker") == b"kept"
        image, truth = phantoms[0]
        job = wait_for_job(url, post_job(url, image, truth).json()["id"], timeout_s=60)
        assert job["state"] == "finished"
        connection.close()
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0, log.read_text()

    assert re.search(r"embedded Redis pid \d+ exited .*; starting it again", log.read_text())
    assert_embedded_redis_gone(log)
    assert_no_temp_folder_left(log, tmp_path)


def test_nothing_outlives_a_sigkilled_serve(tmp_path):
    """`kill -9` (or the OOM killer) on `serve`: its Redis and its workers notice their
    parent is gone and exit; the socket folder in the temp dir (the store path is too
    long for a unix socket here) is removed too."""
    store = tmp_path / ("s" * 100) / "store"
    serve, url, log = start_serve(tmp_path, store=store)
    pids: list[int] = []
    try:
        wait_until(lambda: serve_ready(url), 120, "vesselzip serve to be ready", interval_s=0.5)
        assert socket_folder(log).is_relative_to(tempfile.gettempdir())
        assert not socket_folder(log).is_relative_to(tmp_path)
        connection = redis.Redis.from_url(redis_socket(log.read_text()))
        pids = [redis_pid(connection)]
        pids += [w.pid for w in Worker.all(connection=connection, serializer=JSONSerializer)]
        assert len(pids) == 2
        connection.close()
    finally:
        serve.kill()
        serve.wait(timeout=10)

    def survivors() -> list[int]:
        return [pid for pid in pids if process_alive(pid) and not zombie(pid)]

    try:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not survivors(), 20, "the killed serve's children to exit")
        assert not survivors(), f"alive 20 s after serve's SIGKILL: {survivors()} (Redis {pids[0]})"
        wait_until(lambda: not socket_folder(log).exists(), 5, "the socket folder to go")
    finally:
        for pid in pids:  # whatever the old behaviour left, do not leave it running
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert_no_temp_folder_left(log, tmp_path)


def test_a_normal_stop_leaves_no_temp_folder(tmp_path):
    """The socket of the embedded Redis lives in the store (`<store>/redis/`), so a
    stopped `serve` leaves nothing in the temp dir."""
    serve, url, log = start_serve(tmp_path, "--workers", "0")
    try:
        wait_until(lambda: "serving on" in log.read_text(), 60, "serve to start", interval_s=0.2)
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()
    assert_embedded_redis_gone(log)
    assert_no_temp_folder_left(log, tmp_path)
    assert socket_folder(log) == tmp_path / "store" / "redis"
    assert not Path(redis_socket(log.read_text()).removeprefix("unix://")).exists()
