"""CPU selective scan of the Mamba mixer: the vectorised path the model runs
(``selective_scan``) against the plain sequential recurrence
(``selective_scan_reference``: one Python step per token doing every operation).

    python bench/mixer_scan.py [--batch 1] [--d-inner 256] [--state 16]
                               [--lengths 64 256 1024 4096] [--repeats 5] [--threads 1]
                               [--json]

Inputs look like a trained mixer's: u ~ N(0, 1), delta = softplus(N(0, 1) - 2),
A = -(1..N) per channel (Mamba's initialisation), B and C ~ N(0, 1), D and z given.
Times are medians of --repeats runs (inference mode, no autograd). "max |diff|" is the
largest absolute difference between the two outputs, both in float32; "max |y|" puts
it in scale. L = 64 is what a 64^3 patch gives (4^3 tokens at 1/16 resolution).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from vesselzip.model.mixer import selective_scan, selective_scan_reference


def make_inputs(batch: int, d_inner: int, length: int, n_state: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, d_inner, length, generator=g)
    delta = F.softplus(torch.randn(batch, d_inner, length, generator=g) - 2.0)
    A = -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    B = torch.randn(batch, n_state, length, generator=g)
    C = torch.randn(batch, n_state, length, generator=g)
    D = torch.ones(d_inner)
    z = torch.randn(batch, d_inner, length, generator=g)
    return u, delta, A, B, C, D, z


def median_seconds(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d-inner", type=int, default=256)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with torch.inference_mode():
        for length in args.lengths:
            inputs = make_inputs(args.batch, args.d_inner, length, args.state)
            t_seq, y_seq = median_seconds(
                lambda i=inputs: selective_scan_reference(*i), args.repeats
            )
            t_vec, y_vec = median_seconds(lambda i=inputs: selective_scan(*i), args.repeats)
            rows.append(
                {
                    "batch": args.batch,
                    "d_inner": args.d_inner,
                    "L": length,
                    "N": args.state,
                    "sequential_ms": round(t_seq * 1e3, 2),
                    "vectorised_ms": round(t_vec * 1e3, 2),
                    "speedup": round(t_seq / t_vec, 2),
                    "max_abs_diff": float((y_vec - y_seq).abs().max()),
                    "max_abs_y": float(y_seq.abs().max()),
                }
            )

    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"torch threads: {args.threads}")
    print(
        "| batch | d_inner | L | N | sequential ms | vectorised ms | speed-up | max abs diff | max abs y |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['d_inner']} | {r['L']} | {r['N']} | {r['sequential_ms']} "
            f"| {r['vectorised_ms']} | {r['speedup']}x | {r['max_abs_diff']:.2e} "
            f"| {r['max_abs_y']:.1f} |"
        )


if __name__ == "__main__":
    main()
