"""Codecs side by side, from the folders `vesselzip sweep --grid comparison` wrote: one
Markdown table per sweep with every setting ranked by compression, what it cost the
segmentation, and for each codec its strongest setting within a Dice budget.

    python bench/codec_comparison.py SWEEP_DIR [...] [--budget 0.005]

Per setting: pooled CR, bits/voxel, mean PSNR, then mean Dice and the paired ΔDice
with its 95 % CI (with truths) and the mean and lowest agreement Dice (each mask against
the model's own mask of the uncompressed volume; with or without truths). The
per-codec line picks, among a codec's settings whose loss (−ΔDice with truths, else
1 − lowest agreement Dice) is within --budget, the one with the highest CR: a reading
of the grid, where `vesselzip tune` searches the whole range instead."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def loss(row: dict) -> float | None:
    if row["delta_dice_mean"] is not None:
        return -row["delta_dice_mean"]
    if row["agreement_dice_min"] is not None:
        return 1.0 - row["agreement_dice_min"]
    return None


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| Setting | CR | Bits/voxel | PSNR (dB) | Mean Dice | ΔDice [95% CI] | Agreement Dice mean (min) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in sorted(rows, key=lambda r: r["cr_pooled"] or 0):
        delta = "reference" if row["group"] == "baseline" else "–"
        if row["delta_dice_mean"] is not None:
            delta = f"{row['delta_dice_mean']:+.4f}"
            if row["delta_dice_ci_low"] is not None:
                delta += f" [{row['delta_dice_ci_low']:+.4f}, {row['delta_dice_ci_high']:+.4f}]"
        agreement = "–"
        if row["agreement_dice_mean"] is not None:
            agreement = f"{row['agreement_dice_mean']:.4f} ({row['agreement_dice_min']:.4f})"
        psnr = "lossless" if row["max_abs_error"] == 0 else _number(row["psnr_mean_db"], ".1f")
        lines.append(
            f"| {row['setting']} | {_number(row['cr_pooled'], '.2f')} | "
            f"{_number(row['bits_per_voxel'], '.3f')} | {psnr} | "
            f"{_number(row['dice_mean'], '.4f')} | {delta} | {agreement} |"
        )
    return lines


def best_per_codec(rows: list[dict], budget: float) -> list[str]:
    codecs: dict[str, list[dict]] = {}
    for row in rows:
        if row["group"] != "baseline":
            codecs.setdefault(str(row["codec"]["id"]), []).append(row)
    lines = [
        f"| Codec | Strongest setting within {budget:g} | CR | Loss |",
        "|---|---|---:|---:|",
    ]
    ranked = []
    for codec, mine in codecs.items():
        within = [r for r in mine if (lost := loss(r)) is not None and lost <= budget]
        best = max(within, key=lambda r: r["cr_pooled"] or 0, default=None)
        ranked.append((best["cr_pooled"] if best else 0.0, codec, best))
    for _, codec, best in sorted(ranked, key=lambda item: -item[0]):
        if best is None:
            lines.append(f"| {codec} | none of the grid | – | – |")
        else:
            lines.append(
                f"| {codec} | {best['setting']} | {best['cr_pooled']:.2f} | {loss(best):.4f} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", type=Path, nargs="+", metavar="SWEEP_DIR")
    parser.add_argument("--budget", type=float, default=0.005)
    args = parser.parse_args()
    for folder in args.sweeps:
        tables = json.loads((folder / "tables.json").read_text())
        rows = tables["settings"]
        print(f"### {folder.name} ({tables['n_volumes']} volumes, model {tables['model']})\n")
        print("\n".join(table(rows)))
        print()
        print("\n".join(best_per_codec(rows, args.budget)))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
