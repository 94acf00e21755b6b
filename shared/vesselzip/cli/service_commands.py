"""`vesselzip serve`, `vesselzip worker` and `vesselzip demo`.

The service packages (vesselzip_api, vesselzip_worker) are imported inside the
handlers: the domain package never depends on them at import time."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from vesselzip.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the API gateway (plus an embedded Redis and workers when needed)",
        description="Run the HTTP gateway. Without VESSELZIP_REDIS_URL it starts an embedded "
        "Redis in the store directory; it also starts --workers worker processes "
        "(default 1; 0 for a gateway only, e.g. when workers run on GPU hosts).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8000, help="TCP port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes to start")
    serve.set_defaults(handler=run_serve)

    worker = subparsers.add_parser(
        "worker",
        help="run a worker that takes jobs from the queues",
        description="Take jobs from the queues (VESSELZIP_WORKER_QUEUES, default gpu,cpu) "
        "of the Redis at VESSELZIP_REDIS_URL. The model is loaded once and kept warm.",
    )
    worker.add_argument("--queues", help="comma-separated queues, highest priority first")
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.add_argument("--name", help="worker name (default: a random id)")
    # Given by `serve`: exit once that process is gone (even killed with SIGKILL).
    worker.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    worker.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a worker on this host sent a heartbeat recently, else 1 "
        "(a container health check); starts no worker",
    )
    worker.set_defaults(handler=run_worker_command)

    demo = subparsers.add_parser(
        "demo",
        help="post phantoms through the API and print a results table",
        description="Generate TOF-MRA-like phantoms, post each one with several compression "
        "settings (and its truth) to the service, follow the jobs and print CR, PSNR, "
        "Dice and IoU per job. By default the phantoms are whole heads cut to their Circle "
        "of Willis (as TopCoW cuts its regions of interest), scored against their named "
        "arteries. Starts an embedded service unless --url is given.",
    )
    demo.add_argument("--url", help="use a running service instead of starting one")
    demo.add_argument("--api-key", help="API key for --url (X-API-Key)")
    demo.add_argument("--volumes", type=int, default=2, help="number of phantoms")
    demo.add_argument(
        "--field-of-view",
        choices=("cow", "whole-head", "crop"),
        default="cow",
        help="cow: whole heads cut to their Circle of Willis (default); whole-head; crop: "
        "small crops that tissue fills, scored against every vessel",
    )
    demo.add_argument(
        "--shape",
        help="phantom shape in voxels (default 512,512,160 for heads, 64,64,48 for crops)",
    )
    demo.add_argument(
        "--settings",
        default="none,zfp:rate=2,zfp:tolerance=500",
        help="comma-separated codec specs to compare",
    )
    demo.add_argument("--model", help="segmenter (default: the server's default model)")
    demo.add_argument("--seed", type=int, default=0, help="phantom seed")
    demo.add_argument("--timeout", type=float, default=1800, help="give up after N seconds")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("var/demo"),
        help="where to leave the results and pictures: index.html, results.json, "
        "pictures/ (default var/demo)",
    )
    demo.set_defaults(handler=run_demo)


# -- serve -----------------------------------------------------------------------
def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vesselzip.redis_embedded import EmbeddedRedis
    from vesselzip_api.main import create_app
    from vesselzip_api.memory import release_large_arrays_promptly

    release_large_arrays_promptly()

    settings = get_settings()
    store_dir = Path(settings.store_dir).resolve()
    store_dir.mkdir(parents=True, exist_ok=True)
    check_store(settings)
    # SIGTERM (also re-raised by uvicorn once it has shut down) leaves through this
    # stack, not by the default handler, so the workers and embedded Redis stop too,
    # however early it comes.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.ExitStack() as stack:
        overrides = {"VESSELZIP_STORE_DIR": str(store_dir)}
        if not settings.redis_url:
            embedded = RedisSupervisor(EmbeddedRedis(store_dir / "redis"))
            stack.callback(embedded.stop)  # also cleans up after a failed start
            overrides["VESSELZIP_REDIS_URL"] = embedded.start()
            print(f"vesselzip: embedded Redis at {embedded.url}", file=sys.stderr)
        # Workers, callbacks and the gateway all read the same environment.
        os.environ.update(overrides)
        get_settings.cache_clear()
        settings = get_settings()

        workers = WorkerSupervisor(args.workers)
        stack.callback(workers.stop)
        workers.start()

        app = create_app(settings)
        print(
            f"vesselzip: serving on http://{args.host}:{args.port} "
            f"(store {settings.store_location}, {args.workers} worker(s)); "
            "Ctrl-C stops everything",
            file=sys.stderr,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def check_store(settings) -> None:
    """Refuse to start on a store that cannot be written (a missing bucket, refused
    credentials, a read-only folder), saying which."""
    from vesselzip.errors import VesselzipError
    from vesselzip.store import open_store

    problem = open_store(settings.store_location).problem()
    if problem:
        raise VesselzipError(f"cannot start: {problem}")


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


class RedisSupervisor:
    """The embedded Redis, started again when it dies: on the same data (its
    append-only file keeps the queued jobs) and the same socket, so the gateway and
    the workers, which hold that URL, reconnect by themselves."""

    def __init__(self, embedded):
        self.embedded = embedded
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.embedded.url

    def start(self) -> str:
        url = self.embedded.start()
        self._watcher = threading.Thread(target=self._watch, name="redis-watch", daemon=True)
        self._watcher.start()
        return url

    def _watch(self) -> None:
        delay_s, failed = 1.0, False
        while not self._stopping.wait(delay_s):
            if self.embedded.running():
                continue
            if not failed:
                print(
                    f"vesselzip: embedded Redis pid {self.embedded.pid} exited "
                    f"({self.embedded.returncode}); starting it again",
                    file=sys.stderr,
                )
            try:
                self.embedded.start()
                delay_s, failed = 1.0, False
            except Exception as exc:  # e.g. its data cannot be read: try again, less often
                delay_s, failed = min(2 * delay_s, 30.0), True
                print(
                    f"vesselzip: the embedded Redis did not start ({exc}); "
                    f"trying again in {delay_s:.0f} s",
                    file=sys.stderr,
                )

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()  # it may be starting the server
        self.embedded.stop()


class WorkerSupervisor:
    """Worker subprocesses (each in its own session, so Ctrl-C reaches only `serve`,
    which then stops them in order); one that dies is started again. Each exits by
    itself if `serve` is killed outright."""

    def __init__(self, count: int):
        self.count = count
        self.processes: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]
        if self.count:
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "vesselzip", "worker", "--parent-pid", str(os.getpid())],
            start_new_session=True,
        )

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.processes):
                if proc.poll() is not None and not self._stopping.is_set():
                    print(
                        f"vesselzip: worker pid {proc.pid} exited ({proc.returncode}); "
                        "starting a new one",
                        file=sys.stderr,
                    )
                    self.processes[i] = self._spawn()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM lets a worker finish its job; past the grace period it is killed
        (its job is then retried by the next worker to start)."""
        self._stopping.set()
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- worker ----------------------------------------------------------------------
def run_worker_command(args: argparse.Namespace) -> int:
    import redis

    from vesselzip.errors import VesselzipError
    from vesselzip_worker.worker import run_worker

    settings = get_settings()
    if not settings.redis_url:
        raise VesselzipError(
            "VESSELZIP_REDIS_URL is not set; point it at the gateway's Redis "
            "(`vesselzip serve` starts its own workers)"
        )
    if args.check:
        from vesselzip_queue.queues import connect, live_workers

        here = socket.gethostname()
        alive = [
            w for w in live_workers(connect(settings.redis_url), settings) if w.hostname == here
        ]
        print(f"{len(alive)} live worker(s) on {here}")
        return 0 if alive else 1
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    check_store(settings)
    queue_names = args.queues.split(",") if args.queues else None
    try:
        run_worker(settings, queue_names, burst=args.burst, name=args.name)
    except redis.exceptions.ConnectionError:
        if args.parent_pid and os.getppid() != args.parent_pid:
            return 1  # serve went, and its Redis with it: nothing to report to
        raise
    return 0


def _exit_with_parent(parent_pid: int, grace_s: float = 10.0) -> None:
    """Once `parent_pid` is no longer this process's parent (`serve` was killed, even
    with SIGKILL): stop as on SIGTERM (the current job is finished), and exit at once
    past the grace period (the job is then retried, as after any worker's death)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        with contextlib.suppress(OSError):  # serve's stderr may have gone with it
            print(
                f"vesselzip: worker pid {os.getpid()}: serve (pid {parent_pid}) is gone; stopping",
                file=sys.stderr,
            )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# -- demo ------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> int:
    from vesselzip_api.demo import run_demo as demo

    return demo(args)
