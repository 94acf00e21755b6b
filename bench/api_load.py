"""Load on the gateway: N concurrent clients posting phantoms to `POST /v1/jobs`.

Starts the embedded service (`vesselzip serve`, no workers, so that inference does not
compete with the gateway for the CPU; jobs stay queued and are deleted afterwards) once
per concurrency level and reports

* uploads/s and the p50/p99 latency of POST /v1/jobs,
* the gateway's share of the time beyond the bare codec work: of each POST's latency,
  what was not reading the NIfTI (from where the web server spooled the upload),
  encoding, decoding and measuring (the gateway records those per job): HTTP, multipart
  parsing and spooling, storing the blob, queueing; target <= 10 %; and, for
  reference, the same work done by the library in this process
  (`vesselzip.jobs.compress_upload`),
* the gateway's peak memory above idle, per concurrent upload and as a multiple of the
  raw volume.

    python bench/api_load.py --clients 1,4 --uploads 6 --shape 128,128,96 --codec zfp:rate=4
    python bench/api_load.py --clients 1 --uploads 4 --shape 128,128,96 512,512,160 \
        --codec zfp:tolerance=500

With several shapes a last table splits each POST into reading the NIfTI, the codec's
encode + decode, measuring and the rest, as multiples of encode + decode, next to the
peak memory per upload as a multiple of the raw volume. The gateway overlaps the
metrics with the codec, so the encode and decode seconds it records are its per-slab
calls summed while metric threads compete for the cores; the last column therefore
also sets the POST against encode + decode run alone (`encode_volume`, then
`decode_volume`, in this process, medians of 5).

To compare with an earlier commit, run it from a worktree of that commit with
PYTHONPATH=shared:services/api:services/worker (absolute paths) pointing into it; the
`vesselzip serve` it starts inherits the variable. docs/api.md has such a comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vesselzip_api.client import VesselzipClient


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class PeakRSS:
    """Samples a process's resident memory every few milliseconds."""

    def __init__(self, pid: int, interval_s: float = 0.005):
        self.pid, self.interval_s = pid, interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def serve_pid(url: str) -> int:
    """The process listening at `url` (the serve process runs the gateway in-process)."""
    port = int(url.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def library_seconds(image: Path, codec_spec: str, repeats: int) -> dict[str, float]:
    """The codec work one upload costs, done in this process without HTTP."""
    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.container import decode_volume, encode_volume
    from vesselzip.jobs import compress_upload
    from vesselzip.volumes import read_volume

    config = parse_codec_spec(codec_spec)
    full, encode, decode = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compress_upload(image, config)
        full.append(time.perf_counter() - t0)
        volume = read_volume(image)
        t0 = time.perf_counter()
        blob = encode_volume(volume, get_codec(config))
        t1 = time.perf_counter()
        decode_volume(blob, order="F")
        encode.append(t1 - t0)
        decode.append(time.perf_counter() - t1)
    return {
        "compress_upload_s": statistics.median(full),
        "encode_s": statistics.median(encode),
        "decode_s": statistics.median(decode),
    }


def post_many(url: str, image: Path, codec: str, clients: int, uploads: int) -> dict:
    def one_client(_: int) -> list[tuple[float, str]]:
        out = []
        with VesselzipClient(url, timeout_s=600) as client:
            for _ in range(uploads):
                t0 = time.perf_counter()
                created = client.post_job(image, codec=codec)
                out.append((time.perf_counter() - t0, created["id"]))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(one_client, range(clients)) for r in batch]
    wall = time.perf_counter() - t0
    latencies = sorted(r[0] for r in results)
    return {
        "uploads": len(results),
        "wall_s": wall,
        "uploads_per_s": len(results) / wall,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "posted": results,
    }


def gateway_stages(url: str, posted: list[tuple[float, str]]) -> dict[str, float]:
    """Medians of what the gateway recorded for each upload: its upload and compress
    stages, the codec timings (read, encode, decode, measure), the POST latency, and
    the share of each POST's latency that was not codec work (reading the NIfTI,
    encoding, decoding, measuring), taken within the same request."""
    names = ("upload", "compress", "share", "enc", "latency", "read", "encode", "decode")
    values: dict[str, list[float]] = {name: [] for name in (*names, "measure", "beyond")}
    with VesselzipClient(url, timeout_s=60) as client:
        for latency, job_id in posted:
            job = client.job(job_id)
            seconds, comp = job["stage_seconds"], job["compression"]
            codec_s = comp["read_s"] + comp["compress_s"] + comp["decompress_s"] + comp["measure_s"]
            values["upload"].append(seconds["upload"])
            values["compress"].append(seconds["compress"])
            values["share"].append(1 - codec_s / latency)
            values["enc"].append(1 - comp["compress_s"] / latency)
            values["latency"].append(latency)
            values["read"].append(comp["read_s"])
            values["encode"].append(comp["compress_s"])
            values["decode"].append(comp["decompress_s"])
            values["measure"].append(comp["measure_s"])
            # Everything but reading the NIfTI and the codec's own encode + decode.
            values["beyond"].append(
                latency - comp["read_s"] - comp["compress_s"] - comp["decompress_s"]
            )
            client.delete(job_id)
    medians = {name: statistics.median(v) for name, v in values.items()}
    return {
        "upload": medians["upload"],
        "compress": medians["compress"],
        "share_beyond_codec": medians["share"],
        "share_beyond_encode": medians["enc"],
        "latency": medians["latency"],
        "read": medians["read"],
        "encode": medians["encode"],
        "decode": medians["decode"],
        "measure": medians["measure"],
        "beyond_codec": medians["beyond"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4", help="concurrency levels, e.g. 1,4,8")
    parser.add_argument("--uploads", type=int, default=6, help="uploads per client")
    parser.add_argument(
        "--shape", nargs="+", default=["128,128,96"], help="phantom shape(s), e.g. 512,512,160"
    )
    parser.add_argument("--codec", default="zfp:rate=4", help="codec spec")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",")]
    reports = [one_shape(tuple(int(n) for n in s.split(",")), args, levels) for s in args.shape]
    for report in reports:
        print_report(report)
    if len(reports) > 1:
        print_split(reports)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0


def one_shape(shape: tuple[int, ...], args: argparse.Namespace, levels: list[int]) -> dict:
    from vesselzip.phantoms import write_phantom_dataset
    from vesselzip.volumes import read_volume
    from vesselzip_api.local_service import local_service

    report: dict = {"shape": shape, "codec": args.codec, "levels": []}
    with tempfile.TemporaryDirectory(prefix="vesselzip-bench-") as tmp:
        dataset = json.loads(write_phantom_dataset(tmp, 1, seed=1, shape=shape).read_text())
        image = Path(tmp) / dataset["training"][0]["image"]
        raw_nbytes = read_volume(image).data.nbytes
        report.update(raw_nbytes=raw_nbytes, file_nbytes=image.stat().st_size)
        report["library"] = library_seconds(image, args.codec, repeats=5)

        for clients in levels:
            env = {
                "VESSELZIP_STORE_DIR": str(Path(tmp) / f"store-{clients}"),
                "VESSELZIP_REDIS_URL": "",
            }
            log = Path(tmp) / f"serve-{clients}.log"
            with local_service(workers=0, env=env, log_path=log) as url:
                pid = serve_pid(url)
                post_many(url, image, args.codec, 1, 2)  # warm up imports and allocator
                idle = rss_bytes(pid)
                with PeakRSS(pid) as peak:
                    level = post_many(url, image, args.codec, clients, args.uploads)
                level.update(
                    clients=clients,
                    idle_rss=idle,
                    peak_rss=peak.peak,
                    peak_above_idle_per_upload=(peak.peak - idle) / clients,
                    gateway_stages=gateway_stages(url, level.pop("posted")),
                )
                report["levels"].append(level)
    return report


def print_split(reports: list[dict]) -> None:
    """Each shape's POST (median, one row per concurrency level) split into reading the
    NIfTI, the codec's own encode + decode, measuring, and everything else, each as a
    multiple of encode + decode; and the peak memory per upload as a multiple of raw."""
    print(
        "\nPOST split, as multiples of the codec's own encode + decode time (medians):\n"
        f"{'shape':>12} {'clients':>7} {'POST ms':>8} {'enc+dec ms':>10} {'read':>6} "
        f"{'measure':>7} {'other':>6} {'beyond read+codec':>17} {'peak x raw':>10} "
        f"{'alone ms':>8} {'beyond read+alone':>17}"
    )
    for report in reports:
        for lv in report["levels"]:
            st = lv["gateway_stages"]
            codec_s = st["encode"] + st["decode"]
            other = st["beyond_codec"] - st["measure"]
            alone_s = report["library"]["encode_s"] + report["library"]["decode_s"]
            beyond_alone = (st["latency"] - st["read"] - alone_s) / alone_s
            print(
                f"{'x'.join(map(str, report['shape'])):>12} {lv['clients']:>7} "
                f"{st['latency'] * 1e3:>8.0f} {codec_s * 1e3:>10.0f} {st['read'] / codec_s:>6.2f} "
                f"{st['measure'] / codec_s:>7.2f} {other / codec_s:>6.2f} "
                f"{st['beyond_codec'] / codec_s:>17.2f} "
                f"{lv['peak_above_idle_per_upload'] / report['raw_nbytes']:>10.2f} "
                f"{alone_s * 1e3:>8.0f} {beyond_alone:>17.2f}"
            )
    print(
        "('beyond read+codec' = (POST - read - encode - decode) / (encode + decode), target "
        "<= 1; 'other' is HTTP, spooling, storing and queueing; peak is the gateway's "
        "RSS above idle per concurrent upload, target <= 3; 'alone' is encode + decode "
        "run alone in this process, and 'beyond read+alone' = (POST - read - alone) / alone)"
    )


def print_report(report: dict) -> None:
    mb = 1024**2
    print(
        f"volume {report['shape']} int16: raw {report['raw_nbytes'] / mb:.1f} MiB, "
        f".nii.gz {report['file_nbytes'] / mb:.1f} MiB; codec {report['codec']}"
    )
    lib = report["library"]
    print(
        f"library, in process: compress_upload {lib['compress_upload_s'] * 1e3:.0f} ms "
        f"(read + encode + decode + metrics), encode alone {lib['encode_s'] * 1e3:.0f} ms"
    )
    print(
        f"{'clients':>7} {'uploads':>7} {'uploads/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'upload ms':>9} {'compress ms':>11} {'peak-idle MiB/upload':>20} {'x raw':>6}"
    )
    for lv in report["levels"]:
        per = lv["peak_above_idle_per_upload"]
        print(
            f"{lv['clients']:>7} {lv['uploads']:>7} {lv['uploads_per_s']:>9.2f} "
            f"{lv['p50_s'] * 1e3:>7.0f} {lv['p99_s'] * 1e3:>7.0f} "
            f"{lv['gateway_stages']['upload'] * 1e3:>9.0f} "
            f"{lv['gateway_stages']['compress'] * 1e3:>11.0f} "
            f"{per / mb:>20.1f} {per / report['raw_nbytes']:>6.1f}"
        )
    for lv in report["levels"]:
        stages = lv["gateway_stages"]
        print(
            f"{lv['clients']} client(s): gateway share of a POST beyond the codec work "
            f"(read + encode + decode + metrics, same request, median) "
            f"{stages['share_beyond_codec']:.1%} (target <= 10%); beyond encode alone "
            f"{stages['share_beyond_encode']:.1%}"
        )


if __name__ == "__main__":
    sys.exit(main())
