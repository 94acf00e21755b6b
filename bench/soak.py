"""Soak: N clients posting and polling against one service for M minutes.

    .venv/bin/python bench/soak.py --clients 4 --minutes 5 [--json soak.json]
    .venv/bin/python bench/soak.py --url http://127.0.0.1:8000 --redis-url redis://127.0.0.1:6379/0

Without --url it starts `vesselzip serve` (embedded Redis, --workers workers, a fresh
store in a temporary directory) and stops it at the end. Loopback only; at most 32
clients and 120 minutes; it stops by itself.

Each client loops until the time is up: post a phantom with its truth mask and the
next codec setting (cycling --codec), poll GET /v1/jobs/{id} every --poll-s until the
job ends, download the mask of a finished job, then delete --delete-share of the jobs
(default 0.5: every other one, so DELETE is exercised and the store and Redis hold half
of what was posted). --fail-share of the posts (default 0.2) are a volume the worker
cannot segment (finite but extreme intensities, frangi): they must fail at once, not be
retried, and are counted apart from errors. Then each client finishes the job it
follows (at most --job-timeout-s). A sampler scrapes /metrics and /v1/ready every
--sample-s and reads memory.

The model is the server's default, mvn-small: the worker's memory lives in the PyTorch
path, which a soak must watch, and on 64x64x48 phantoms it is no slower than frangi (a
median 0.6 s a job on 2 cores, a few up to 6-9 s, by the phantom's voxel spacing), so
the gateway, Redis and the store see as many jobs (35-75 a minute with one worker,
docs/reliability.md). --model frangi runs the same soak without PyTorch. Figures:

* throughput: jobs finished per minute, HTTP requests per second, counted between the
  end of the warm-up and the end of the run (before draining),
* latency: p50/p99 per endpoint, requests started in that same window,
* errors: every HTTP status >= 400 or transport error (by endpoint and status) and every
  job that ended other than finished, over the whole run; the target is 0,
* RSS of the gateway (the serve process) and of each worker at start, after warm-up and
  at the end (after draining); growth = end / after warm-up - 1. A snapshot may catch a
  worker mid-job or idle, so growth is also taken between the peaks sampled in the first
  and in the last minute after warm-up; PASS when both are <= 10 % for every process,
* Redis: INFO used_memory at start and at the end, and its slope (KiB a minute) from
  warm-up plus VESSELZIP_RECORD_TTL_S (--record-ttl-s for the started service, default
  60 s) to the end: RQ keeps an ended job that long, so past it the memory must be flat
  (slope about 0) whatever the number of jobs, failed ones included. At the end, for a
  sample of the jobs of each kind (finished, failed; kept or deleted): what RQ still
  holds of each (queues.rq_keys_of), which must be nothing for a deleted job and must
  all expire within the TTL for a kept one. The keys by pattern (ids replaced by {id}),
  with their exact MEMORY USAGE and how many have no TTL, say which is which.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlparse

import httpx
from api_load import serve_pid  # the process listening on the gateway's port

PROC = Path("/proc")
TERMINAL = ("finished", "failed", "cancelled")
ENDED_AS_MEANT = ("finished", "failed as expected")
POST, JOB, MASK, DELETE = (
    "POST /v1/jobs",
    "GET /v1/jobs/{id}",
    "GET /v1/jobs/{id}/mask",
    "DELETE /v1/jobs/{id}",
)
METRICS, READY = "GET /metrics", "GET /v1/ready"
MIB = 1024**2


# -- pure helpers (tests/test_soak_bench.py) --------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (as bench/api_load.py); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def status_field(text: str, name: str) -> str | None:
    """A field of /proc/<pid>/status, e.g. status_field(text, "VmRSS") -> "1234 kB"."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """Resident memory of `pid`; None when it is gone (or a zombie, which has no VmRSS)."""
    try:
        value = status_field((proc / str(pid) / "status").read_text(), "VmRSS")
    except OSError:
        return None
    return None if value is None else int(value.split()[0]) * 1024


def worker_pids(parent: int, proc: Path = PROC) -> list[int]:
    """The `vesselzip worker` processes whose parent is `parent` (serve starts them in
    their own session, but it stays their parent)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = status_field((entry / "status").read_text(), "PPid")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == str(parent) and b"worker" in argv:
            found.append(int(entry.name))
    return sorted(found)


def in_share(n: int, share: float) -> bool:
    """Whether item number n (0, 1, ...) is among exactly `share` of every run of items."""
    return int((n + 1) * share) > int(n * share)


def extreme_volume() -> bytes:
    """A float64 volume of +-1e308 (finite, so the upload takes it) whose Frangi filter
    fails: a failure the same input repeats, so the job fails at once."""
    import gzip

    import nibabel as nib
    import numpy as np

    data = np.zeros((24, 24, 16), np.float64)
    data[::2], data[1::2] = 1e308, -1e308
    return gzip.compress(nib.Nifti1Image(data, np.diag([0.5, 0.5, 0.8, 1])).to_bytes(), mtime=0)


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) points, per minute; None under 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def growth(warm: int | None, end: int | None) -> float | None:
    return None if not warm or end is None else end / warm - 1


def key_pattern(key: bytes) -> str:
    """A Redis key with job ids (32 hex digits) replaced by {id}."""
    return re.sub(r"[0-9a-f]{32}", "{id}", key.decode(errors="replace"))


def redis_keys(connection) -> dict[str, dict[str, int]]:
    """Per key pattern: how many keys, their MEMORY USAGE and how many have no TTL."""
    keys = list(connection.scan_iter(count=1000))
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)  # every field: exact, not sampled
            pipe.ttl(key)
        values = pipe.execute()
    out: dict[str, dict[str, int]] = {}
    for key, usage, ttl in zip(keys, values[::2], values[1::2], strict=True):
        entry = out.setdefault(key_pattern(key), {"keys": 0, "bytes": 0, "no_ttl": 0})
        entry["keys"] += 1
        entry["bytes"] += usage or 0
        entry["no_ttl"] += ttl == -1
    return dict(sorted(out.items()))


def rss_in(sample: dict, process: str) -> int | None:
    """RSS of `process` ("gateway" or a worker pid) in a memory sample."""
    return sample["gateway"] if process == "gateway" else sample["workers"].get(process)


def window_peak(samples: list[dict], process: str, lo: float, hi: float) -> int | None:
    """Largest RSS of `process` sampled in [lo, hi) seconds."""
    values = [rss_in(s, process) for s in samples if lo <= s["t_s"] < hi]
    return max((v for v in values if v), default=None)


# -- the run ----------------------------------------------------------------------
class Soak:
    def __init__(self, args, url: str, phantoms: list[tuple[bytes, bytes]], redis_url: str | None):
        self.args, self.url, self.phantoms = args, url, phantoms
        self.codecs = [s.strip() for s in args.codec.split(",") if s.strip()]
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)
        self.gateway: int | None = None
        self.workers: list[int] = []
        self.headers = {"X-API-Key": args.api_key} if args.api_key else {}
        self.numbers = itertools.count()
        self.requests: list[tuple[float, str, int | str, float]] = []  # t, endpoint, status, s
        self.jobs: list[tuple[float, str, str | None, bool]] = []  # t end, state, error, deleted
        self.job_ids: dict[tuple[str, bool], list[str]] = defaultdict(list)  # (state, deleted)
        self.extreme = extreme_volume()
        self.details: dict[tuple[str, int | str], str] = {}  # first error detail per kind
        self.samples: list[dict] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.warmup_end = self.deadline = self.t0

    def call(self, http: httpx.Client, endpoint: str, method: str, path: str, **kw):
        t = time.monotonic()
        try:
            response = http.request(method, path, **kw)
            status: int | str = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, type(exc).__name__
            self.details.setdefault((endpoint, status), str(exc))
        self.requests.append((t - self.t0, endpoint, status, time.monotonic() - t))
        if response is not None and response.status_code >= 400:
            self.details.setdefault((endpoint, status), response.text[:300])
        return response

    def client(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=120) as http:
            while time.monotonic() < self.deadline:
                try:
                    self.one_job(http, next(self.numbers))
                except Exception as exc:  # e.g. a 200 without JSON: count it, go on
                    t = time.monotonic() - self.t0
                    self.jobs.append((t, "exception", f"{type(exc).__name__}: {exc}", False))
                    time.sleep(1)

    def one_job(self, http: httpx.Client, n: int) -> None:
        failing = in_share(n, self.args.fail_share)
        if failing:
            form = {"codec": "none", "model": "frangi"}
            files = {"image": ("extreme.nii.gz", self.extreme)}
        else:
            image, truth = self.phantoms[n % len(self.phantoms)]
            form = {"codec": self.codecs[n % len(self.codecs)], "model": self.args.model}
            files = {"image": ("image.nii.gz", image), "truth": ("truth.nii.gz", truth)}
        r = self.call(http, POST, "POST", "/v1/jobs", data=form, files=files)
        if r is None or r.status_code != 202:
            time.sleep(1)  # do not spin on a failing service
            return
        job_id = r.json()["id"]
        body = self.follow(http, job_id)
        state = body["state"] if body else "lost"
        if state == "finished":
            self.call(http, MASK, "GET", f"/v1/jobs/{job_id}/mask")
        deleted = in_share(n, self.args.delete_share)
        if deleted:
            self.call(http, DELETE, "DELETE", f"/v1/jobs/{job_id}")
        error = (body or {}).get("error") or (None if body else "no end seen")
        if failing and state == "failed" and body and body["attempts"] == 1:
            state = "failed as expected"  # at once, not retried
        self.jobs.append((time.monotonic() - self.t0, state, error, deleted))
        self.job_ids[(state, deleted)].append(job_id)

    def follow(self, http: httpx.Client, job_id: str) -> dict | None:
        give_up = time.monotonic() + self.args.job_timeout_s
        while time.monotonic() < give_up:
            r = self.call(http, JOB, "GET", f"/v1/jobs/{job_id}")
            if r is not None and r.status_code == 404:
                return None
            if r is not None and r.status_code == 200 and r.json()["state"] in TERMINAL:
                return r.json()
            time.sleep(self.args.poll_s)
        return None

    def memory(self, key_patterns: bool = False) -> dict:
        workers = worker_pids(self.gateway) if self.gateway and not self.args.worker_pids else []
        workers = workers or self.workers
        out = {
            "t_s": round(time.monotonic() - self.t0, 1),
            "gateway": rss_bytes(self.gateway) if self.gateway else None,
            "workers": {str(p): rss_bytes(p) for p in workers},
            "redis": None,
        }
        if self.redis is not None:
            with contextlib.suppress(Exception):
                info = self.redis.info("memory")
                out["redis"] = {
                    "used_memory": info["used_memory"],
                    "used_memory_rss": info["used_memory_rss"],
                    "keys": self.redis.dbsize(),
                }
                if key_patterns:
                    out["redis"]["key_patterns"] = redis_keys(self.redis)
        return out

    def sampler(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.wait(self.args.sample_s):
                self.call(http, METRICS, "GET", "/metrics")
                self.call(http, READY, "GET", "/v1/ready")
                self.samples.append(self.memory())

    def run(self, progress) -> dict:
        self.t0 = time.monotonic()
        self.warmup_end = self.t0 + self.args.warmup_s
        self.deadline = self.t0 + self.args.minutes * 60
        snapshots = {"start": self.memory(key_patterns=True)}
        threads = [threading.Thread(target=self.client) for _ in range(self.args.clients)]
        sampler = threading.Thread(target=self.sampler, daemon=True)
        for thread in [*threads, sampler]:
            thread.start()
        task = progress.add_task("soak", total=self.args.minutes * 60, info="")
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if "warm" not in snapshots and now >= self.warmup_end:
                snapshots["warm"] = self.memory()
            gw = rss_bytes(self.gateway) if self.gateway else None
            info = (
                f"finished {sum(j[1] == 'finished' for j in self.jobs)}  "
                f"errors {self.error_count()}  "
                + (f"gateway {gw / MIB:.0f} MiB" if gw else "")
                + ("  draining" if now > self.deadline else "")
            )
            progress.update(task, completed=min(now, self.deadline) - self.t0, info=info)
            time.sleep(0.5)
        self.stop.set()
        sampler.join()
        snapshots.setdefault("warm", self.memory())
        snapshots["end"] = self.memory(key_patterns=True)
        return self.report(snapshots, time.monotonic() - self.t0)

    def error_count(self) -> int:
        http = sum(1 for r in self.requests if not isinstance(r[2], int) or r[2] >= 400)
        return http + sum(1 for j in self.jobs if j[1] not in ENDED_AS_MEANT)

    def left_in_redis(self, per_kind: int = 25) -> dict[str, dict]:
        """For up to `per_kind` jobs of each kind: what RQ still holds of them."""
        from vesselzip_queue.queues import rq_keys_of

        out = {}
        for (state, deleted), ids in sorted(self.job_ids.items()):
            kept = [rq_keys_of(job_id, self.redis) for job_id in ids[-per_kind:]]
            lasting = [s for keys in kept for s in keys.values()]
            out[f"{state}, {'deleted' if deleted else 'kept'}"] = {
                "jobs": len(kept),
                "keys_per_job": sum(map(len, kept)) / max(1, len(kept)),
                "for_good": sum(1 for s in lasting if s < 0),
                "longest_s": max(lasting, default=0.0),
            }
        return out

    def report(self, snapshots: dict, wall_s: float) -> dict:
        lo, hi = self.warmup_end - self.t0, self.deadline - self.t0
        window = [r for r in self.requests if lo <= r[0] < hi]
        latencies = defaultdict(list)
        for _, endpoint, _, seconds in window:
            latencies[endpoint].append(seconds)
        errors = Counter(
            f"{endpoint} {status}"
            for _, endpoint, status, _ in self.requests
            if not isinstance(status, int) or status >= 400
        )
        for _, state, error, _ in self.jobs:
            if state not in ENDED_AS_MEANT:
                errors[f"job {state}: {error}"] += 1
        finished = [j for j in self.jobs if j[1] == "finished"]
        kept = [j for j in finished if not j[3]]
        measured_s = hi - lo
        flat_from = lo + self.args.record_ttl_s
        redis_points = [
            (s["t_s"], s["redis"]["used_memory"] / 1024)
            for s in self.samples
            if s.get("redis") and flat_from <= s["t_s"] < hi
        ]
        return {
            "url": self.url,
            "clients": self.args.clients,
            "minutes": self.args.minutes,
            "warmup_s": self.args.warmup_s,
            "model": self.args.model,
            "codecs": self.codecs,
            "delete_share": self.args.delete_share,
            "wall_s": wall_s,
            "jobs_posted": sum(1 for r in self.requests if r[1] == POST and r[2] == 202),
            "jobs_finished": len(finished),
            "jobs_deleted": sum(1 for j in self.jobs if j[3]),
            "jobs_kept": len(kept),
            "jobs_failed_as_expected": sum(1 for j in self.jobs if j[1] == "failed as expected"),
            "fail_share": self.args.fail_share,
            "record_ttl_s": self.args.record_ttl_s,
            "redis_kib_per_min_after_ttl": slope_per_min(redis_points),
            "redis_points_after_ttl": len(redis_points),
            "left_in_redis": self.left_in_redis() if self.redis is not None else {},
            "finished_per_min": sum(1 for j in finished if lo <= j[0] < hi) / measured_s * 60,
            "requests_per_s": len(window) / measured_s,
            "latency": {
                e: {"n": len(v), "p50_s": percentile(v, 0.5), "p99_s": percentile(v, 0.99)}
                for e, v in sorted(latencies.items())
            },
            "errors": dict(errors),
            "error_details": {f"{e} {s}": d for (e, s), d in self.details.items()},
            "memory": snapshots,
            "samples": self.samples,
        }


def memory_verdict(report: dict, limit: float = 0.10) -> tuple[list[tuple], str]:
    """Rows (process, start, warm, end, growth, peak early, peak late, peak growth) and
    PASS / FAIL / SKIPPED. Snapshots catch a worker busy or idle by chance, so growth is
    also taken between the peaks of the samples in the first and the last minute (at
    most half the window each) after warm-up; both must stay <= limit."""
    memory, samples = report["memory"], report["samples"]
    lo, hi = report["warmup_s"], report["minutes"] * 60
    span = min(60.0, (hi - lo) / 2)
    start, warm, end = memory["start"], memory["warm"], memory["end"]
    names = ["gateway"] if warm["gateway"] else []
    names += sorted(set(start["workers"]) | set(warm["workers"]) | set(end["workers"]))
    rows = []
    for name in names:
        early = window_peak(samples, name, lo, lo + span)
        late = window_peak(samples, name, hi - span, hi)
        label = name if name == "gateway" else f"worker {name}"
        snaps = [rss_in(m, name) for m in (start, warm, end)]
        rows.append((label, *snaps, growth(snaps[1], snaps[2]), early, late, growth(early, late)))
    if not rows:
        return rows, "SKIPPED"
    ok = all(g is not None and g <= limit for row in rows for g in (row[4], row[7]))
    return rows, "PASS" if ok else "FAIL"


def notable_log_lines(log: Path | None, offset: int = 0, limit: int = 20) -> list[str]:
    """Warnings, errors, tracebacks, restarted workers and 4xx/5xx access lines written
    to the service log from byte `offset` on (the soak's start)."""
    if log is None or not log.exists():
        return []
    pattern = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|exited|HTTP/1\.1\" [45]\d\d")
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    lines = [line for line in text.splitlines() if pattern.search(line)]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def print_report(report: dict, console) -> None:
    from rich.table import Table

    mb = lambda n: "-" if n is None else f"{n / MIB:.0f}"  # noqa: E731
    console.print(
        f"{report['clients']} clients, {report['minutes']} min ({report['warmup_s']:.0f} s "
        f"warm-up), model {report['model']}, codecs {', '.join(report['codecs'])}, "
        f"delete share {report['delete_share']:.0%}; wall {report['wall_s']:.0f} s"
    )
    console.print(
        f"jobs: posted {report['jobs_posted']}, finished {report['jobs_finished']}, failed "
        f"at once as meant {report['jobs_failed_as_expected']} ({report['fail_share']:.0%} "
        f"posted to fail), deleted {report['jobs_deleted']}; after warm-up "
        f"{report['finished_per_min']:.1f} finished/min, {report['requests_per_s']:.1f} requests/s"
    )
    table = Table("endpoint", "n", "p50 ms", "p99 ms", title="latency after warm-up")
    for endpoint, lat in report["latency"].items():
        table.add_row(
            endpoint, str(lat["n"]), f"{lat['p50_s'] * 1e3:.0f}", f"{lat['p99_s'] * 1e3:.0f}"
        )
    console.print(table)
    errors = report["errors"]
    console.print(f"errors: {sum(errors.values())} (target 0)")
    for kind, n in sorted(errors.items()):
        console.print(f"  {n:>5}  {kind}", markup=False)
    for kind, detail in report["error_details"].items():
        console.print(f"  first {kind}: {detail}", markup=False)
    rows, verdict = memory_verdict(report)
    pct = lambda g: "-" if g is None else f"{g:+.1%}"  # noqa: E731
    table = Table("process", "start MiB", "warm MiB", "end MiB", "growth", title="RSS")
    for col in ("peak 1st min MiB", "peak last min MiB", "growth"):
        table.add_column(col)
    for name, start, warm, end, g, early, late, pg in rows:
        table.add_row(name, mb(start), mb(warm), mb(end), pct(g), mb(early), mb(late), pct(pg))
    console.print(table)
    console.print(f"RSS growth after warm-up <= 10 % for every process: {verdict}")
    for note in report.get("notes", []):
        console.print(f"note: {note}")
    redis = {k: report["memory"][k]["redis"] for k in ("start", "warm", "end")}
    if all(redis.values()):
        delta = redis["end"]["used_memory"] - redis["start"]["used_memory"]
        console.print(
            "Redis used_memory start/warm/end "
            + " / ".join(f"{redis[k]['used_memory'] / MIB:.1f}" for k in redis)
            + f" MiB (keys {redis['start']['keys']} -> {redis['end']['keys']}, rss "
            f"{mb(redis['end']['used_memory_rss'])} MiB); per finished job "
            f"{delta / max(1, report['jobs_finished']) / 1024:.1f} KiB, per kept job "
            f"{delta / max(1, report['jobs_kept']) / 1024:.1f} KiB"
        )
        slope = report["redis_kib_per_min_after_ttl"]
        console.print(
            f"Redis used_memory from warm-up + {report['record_ttl_s']:.0f} s (the TTL of an "
            f"ended job) to the end: "
            + ("not enough samples" if slope is None else f"{slope:+.1f} KiB/min")
            + f" over {report['redis_points_after_ttl']} samples (flat: about 0)"
        )
        table = Table("jobs (sample)", "n", "RQ keys/entries per job", "for good", "longest s")
        for kind, left in report["left_in_redis"].items():
            table.add_row(
                kind,
                str(left["jobs"]),
                f"{left['keys_per_job']:.1f}",
                str(left["for_good"]),
                f"{left['longest_s']:.0f}",
            )
        console.print(table)
        table = Table("Redis key pattern", "keys start", "keys end", "KiB end", "B/key", "no TTL")
        start, end = (redis[k].get("key_patterns", {}) for k in ("start", "end"))
        none = {"keys": 0, "bytes": 0, "no_ttl": 0}
        for pattern in sorted(set(start) | set(end)):
            a, b = start.get(pattern, none), end.get(pattern, none)
            per_key = b["bytes"] / b["keys"] if b["keys"] else 0
            row = (a["keys"], b["keys"], f"{b['bytes'] / 1024:.1f}", f"{per_key:.0f}", b["no_ttl"])
            table.add_row(pattern, *map(str, row))
        console.print(table)
    else:
        console.print("Redis memory: not measured (no Redis URL; give --redis-url)")
    for line in report.get("log_lines", []):
        console.print(f"  log: {line}", markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service on this machine (loopback only)")
    parser.add_argument("--api-key", help="X-API-Key for --url")
    parser.add_argument("--redis-url", help="with --url: its Redis, for INFO memory")
    parser.add_argument("--gateway-pid", type=int, help="with --url: the gateway's pid")
    parser.add_argument("--worker-pids", default="", help="with --url: comma-separated pids")
    parser.add_argument("--workers", type=int, default=1, help="workers to start (no --url)")
    parser.add_argument("--log", type=Path, help="keep the started service's log here")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--minutes", type=float, default=2, help="run time, warm-up included")
    parser.add_argument("--warmup-s", type=float, default=30, help="warm-up seconds")
    parser.add_argument("--shape", default="64,64,48", help="phantom shape (as the demo)")
    parser.add_argument("--volumes", type=int, default=4, help="distinct phantoms")
    parser.add_argument("--codec", default="none,zfp:rate=2,zfp:tolerance=500", help="cycled")
    parser.add_argument("--model", default="mvn-small", help="segmenter (see the docstring)")
    parser.add_argument("--delete-share", type=float, default=0.5, help="share deleted")
    parser.add_argument("--fail-share", type=float, default=0.2, help="share posted to fail")
    parser.add_argument(
        "--record-ttl-s", type=float, default=60, help="the started service's RECORD_TTL_S"
    )
    parser.add_argument("--poll-s", type=float, default=0.25, help="poll interval per client")
    parser.add_argument("--sample-s", type=float, default=5, help="metrics/memory interval")
    parser.add_argument("--job-timeout-s", type=float, default=300, help="give up on a job")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--url must be a loopback address (127.0.0.1, localhost, ::1)")
    if not (1 <= args.clients <= 32 and 0 < args.minutes <= 120):
        parser.error("--clients 1..32, --minutes up to 120")
    if not (0 <= args.warmup_s < args.minutes * 60 and 0 <= args.delete_share <= 1):
        parser.error("--warmup-s must be shorter than the run; --delete-share 0..1")
    if not (0 <= args.fail_share <= 1 and args.record_ttl_s > 0):
        parser.error("--fail-share 0..1; --record-ttl-s above 0")

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vesselzip.phantoms import write_phantom_dataset
    from vesselzip_api.local_service import local_service

    console = Console()
    if not console.is_terminal:  # e.g. piped into a file: do not squeeze the tables
        console = Console(width=120)
    shape = tuple(int(n) for n in args.shape.split(","))
    notes = []
    with tempfile.TemporaryDirectory(prefix="vesselzip-soak-") as tmp:
        dataset = write_phantom_dataset(tmp, args.volumes, seed=1, shape=shape)
        phantoms = [
            ((Path(tmp) / e["image"]).read_bytes(), (Path(tmp) / e["label"]).read_bytes())
            for e in json.loads(dataset.read_text())["training"]
        ]
        log, log_offset = None, 0
        with contextlib.ExitStack() as stack:
            if args.url:
                url, redis_url = args.url.rstrip("/"), args.redis_url
            else:
                log = args.log or Path(tmp) / "serve.log"
                env = {
                    "VESSELZIP_STORE_DIR": str(Path(tmp) / "store"),
                    "VESSELZIP_REDIS_URL": "",
                    "VESSELZIP_RECORD_TTL_S": str(int(args.record_ttl_s)),
                }
                console.print(f"starting vesselzip serve --workers {args.workers} (log {log})")
                url = stack.enter_context(
                    local_service(workers=args.workers, env=env, log_path=log)
                )
                found = re.findall(r"embedded Redis at (\S+)", log.read_text())
                redis_url = found[-1] if found else None
                log_offset = log.stat().st_size  # before: the wait for readiness (503s)
            soak = Soak(args, url, phantoms, redis_url)
            soak.workers = [int(p) for p in args.worker_pids.split(",") if p]
            soak.gateway = args.gateway_pid
            if soak.gateway is None:
                try:
                    soak.gateway = serve_pid(url)
                except (RuntimeError, ValueError, OSError) as exc:
                    notes.append(f"gateway memory skipped: {exc} (give --gateway-pid)")
            if soak.gateway and not soak.workers and not worker_pids(soak.gateway):
                notes.append("no worker is a child of the gateway: give --worker-pids")
            columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
            with Progress(*columns, TextColumn("{task.fields[info]}"), console=console) as bar:
                report = soak.run(bar)
        pids = [set(report["memory"][k]["workers"]) for k in ("start", "warm", "end")]
        if pids[0] != pids[2]:
            notes.append(f"worker pids changed during the run: {[sorted(p) for p in pids]}")
        report["notes"] = notes
        report["log_lines"] = notable_log_lines(log, log_offset)
    print_report(report, console)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    _, verdict = memory_verdict(report)
    return 1 if report["errors"] or verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
