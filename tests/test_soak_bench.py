"""The soak bench's pure helpers (no service is started)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import soak  # noqa: E402


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert soak.percentile(values, 0.5) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert soak.percentile(values, 0.99) == 99.0
    assert soak.percentile([3.0], 0.99) == 3.0
    assert soak.percentile([], 0.5) is None


def fake_process(proc: Path, pid: int, ppid: int, argv: list[str], rss_kb: int | None) -> None:
    (proc / str(pid)).mkdir(parents=True)
    lines = ["Name:\tpython", "State:\tS (sleeping)", f"PPid:\t{ppid}"]
    if rss_kb is not None:
        lines.append(f"VmRSS:\t  {rss_kb} kB")
    (proc / str(pid) / "status").write_text("\n".join(lines) + "\n")
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_rss_and_workers_from_proc(tmp_path):
    fake_process(tmp_path, 100, 1, ["python", "-m", "vesselzip", "serve"], 2048)
    fake_process(tmp_path, 101, 100, ["python", "-m", "vesselzip", "worker"], 4096)
    fake_process(tmp_path, 102, 100, ["redis-server", "unix:/tmp/x"], 512)
    fake_process(tmp_path, 103, 7, ["python", "-m", "vesselzip", "worker"], 4096)
    fake_process(tmp_path, 104, 100, ["python", "-m", "vesselzip", "worker"], None)  # zombie
    (tmp_path / "self").mkdir()
    assert soak.rss_bytes(100, tmp_path) == 2048 * 1024
    assert soak.rss_bytes(104, tmp_path) is None
    assert soak.rss_bytes(999, tmp_path) is None
    assert soak.worker_pids(100, tmp_path) == [101, 104]


def test_rss_of_this_process():
    assert soak.rss_bytes(os.getpid()) > 1024 * 1024


def test_shares_are_exact():
    assert [soak.in_share(n, 0.5) for n in range(4)] == [False, True, False, True]
    assert sum(soak.in_share(n, 0.25) for n in range(100)) == 25
    assert not any(soak.in_share(n, 0.0) for n in range(10))
    assert all(soak.in_share(n, 1.0) for n in range(10))


def test_slope_per_minute():
    assert soak.slope_per_min([(0.0, 5.0), (60.0, 5.0), (120.0, 5.0)]) == 0.0
    assert abs(soak.slope_per_min([(0.0, 0.0), (30.0, 1.0), (60.0, 2.0)]) - 2.0) < 1e-9
    assert soak.slope_per_min([(0.0, 1.0), (1.0, 2.0)]) is None


def test_key_pattern_and_growth():
    assert soak.key_pattern(b"rq:job:" + b"ab" * 16) == "rq:job:{id}"
    assert soak.growth(100, 111) > 0.10
    assert soak.growth(None, 5) is None


def test_memory_verdict_fails_on_growth_and_on_a_vanished_worker():
    def sample(t, gw, worker):
        return {"t_s": t, "gateway": gw, "workers": {"7": worker}, "redis": None}

    report = {"warmup_s": 30, "minutes": 4}
    flat = [sample(t, 100, 200) for t in range(30, 240, 5)]
    report |= {"samples": flat, "memory": dict.fromkeys(("start", "warm", "end"), flat[0])}
    assert soak.memory_verdict(report)[1] == "PASS"
    leaking = [sample(t, 100 + t, 200) for t in range(30, 240, 5)]
    assert soak.memory_verdict({**report, "samples": leaking})[1] == "FAIL"
    end = sample(240, 100, None)
    end["workers"] = {}
    memory = {"start": flat[0], "warm": flat[0], "end": end}
    assert soak.memory_verdict({**report, "memory": memory})[1] == "FAIL"
