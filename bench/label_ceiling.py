"""How much Dice the phantoms' exact masks leave to win, and how much of it a model gets.

    python bench/label_ceiling.py [--phantoms 8] [--seed 10000] [--model mvn-small | --no-model]
                                  [--json]

The phantoms' vessels are mostly thinner than two voxels, so their masks are rims:
a quarter-voxel error in where a vessel runs, or a tenth in how wide it is, moves
many of its voxels in or out. This bench redraws each phantom's mask
(`vesselzip.phantoms.vessel_mask`) from the same tubes, moved or widened, and
scores it against the true mask: what an observer who knew the geometry to that
precision would get, with no noise and no blur in the way.

Rows:

- "moved N voxel": every tube shifted by N voxels (one random direction per volume).
- "radius xK": every radius multiplied by K.
- "moved 0.25 + radius x0.9/x1.1": both at once, radius factor drawn per volume.
- with a model: its Dice at its own settings, and at the threshold on the vessel
  probability that would be best for each volume separately (a bound on what any
  global threshold or calibration could give).

Also printed per volume: its grid and field of view, the share of vessel voxels on
the rim (touching the background, 6-neighbourhood) and, with a model, how much
vessel it marks against the mask (model / true vessel volume).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy import ndimage

from vesselzip.metrics.segmentation import segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.model.inference import (
    logits_to_mask,
    preprocess,
    ras_grid,
    sliding_window_logits,
    vessel_probability,
)
from vesselzip.phantoms import make_phantom, vessel_mask
from vesselzip.volumes import Volume

THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.1), 2)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return segmentation_metrics(pred, truth)["dice"]


def moved(segments: np.ndarray, offset_mm: np.ndarray) -> np.ndarray:
    out = segments.copy()
    out[:, 0:3] += offset_mm
    out[:, 3:6] += offset_mm
    return out


def widened(segments: np.ndarray, factor: float) -> np.ndarray:
    out = segments.copy()
    out[:, 6:8] *= factor
    return out


def geometry_rows(phantom, rng) -> dict[str, float]:
    """Dice of the true mask against masks of slightly wrong geometry."""
    shape, spacing, segments = phantom.mask.shape, np.asarray(phantom.spacing), phantom.segments
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    rows = {}
    for voxels in (0.15, 0.25, 0.5):
        other = vessel_mask(moved(segments, direction * voxels * spacing), shape, spacing)
        rows[f"moved {voxels} voxel"] = dice(other, phantom.mask)
    for factor in (0.8, 0.9, 1.1, 1.2):
        rows[f"radius x{factor}"] = dice(
            vessel_mask(widened(segments, factor), shape, spacing), phantom.mask
        )
    both = widened(moved(segments, direction * 0.25 * spacing), rng.choice([0.9, 1.1]))
    rows["moved 0.25 + radius x0.9/x1.1"] = dice(vessel_mask(both, shape, spacing), phantom.mask)
    return rows


def model_rows(segmenter, phantom) -> tuple[dict[str, float], np.ndarray]:
    """The model's Dice at its settings and at the best threshold for this volume,
    from one pass of the network, and its mask."""
    network = getattr(segmenter, "network", None)
    if network is None:
        volume = Volume(data=phantom.image, affine=phantom.affine, header=None)
        mask = segmenter.segment(volume)
        return {"model": dice(mask, phantom.mask)}, mask
    # The steps of `predict_mask`, keeping the logits for the threshold scan.
    config = segmenter.config
    grid = ras_grid(phantom.image.shape, phantom.affine)
    logits = sliding_window_logits(
        network, preprocess(phantom.image, grid, config, segmenter.device), config
    )
    mask = logits_to_mask(logits, grid, config.vessel_threshold)
    rows = {"model": dice(mask, phantom.mask)}
    # Phantoms are stored in RAS order, so on their own grid the probabilities line
    # up with the mask without being mapped back.
    if tuple(logits.shape[2:]) == phantom.mask.shape:
        probability = vessel_probability(logits).cpu().numpy()
        rows["model, best threshold per volume"] = max(
            dice(probability >= t, phantom.mask) for t in THRESHOLDS
        )
    return rows, mask


def rim_share(mask: np.ndarray) -> float:
    inside = mask.astype(bool)
    return float((inside & ~ndimage.binary_erosion(inside)).sum() / max(inside.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=10000, help="first phantom seed")
    parser.add_argument("--model", default="mvn-small")
    parser.add_argument("--no-model", action="store_true", help="geometry rows only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    segmenter = None if args.no_model else load_segmenter(args.model)
    torch.set_grad_enabled(False)
    scores: dict[str, list[float]] = {}
    for index in range(args.phantoms):
        seed = args.seed + index
        phantom = make_phantom(seed, spacing=None)
        rows = geometry_rows(phantom, np.random.default_rng(seed))
        grid = "x".join(f"{s:.2f}" for s in phantom.spacing)
        about = f"{grid} mm, {phantom.style['field_of_view']}"
        about += f", rim share {rim_share(phantom.mask):.2f}"
        if segmenter is not None:
            model, mask = model_rows(segmenter, phantom)
            rows |= model
            # Over one means the model marks more vessel than the mask holds.
            about += f", model/true vessel volume {mask.sum() / max(phantom.mask.sum(), 1):.2f}"
        for name, value in rows.items():
            scores.setdefault(name, []).append(value)
        if not args.json:
            print(
                f"[{index + 1}/{args.phantoms}] seed {seed} ({about}): "
                + ", ".join(f"{name} {value:.3f}" for name, value in rows.items()),
                flush=True,
            )
    table = [
        {
            "case": name,
            "mean_dice": round(float(np.mean(v)), 4),
            "min_dice": round(float(np.min(v)), 4),
        }
        for name, v in scores.items()
    ]
    if args.json:
        print(
            json.dumps(
                {"seeds": [args.seed, args.seed + args.phantoms - 1], "rows": table}, indent=2
            )
        )
        return
    print("\n| mask from | mean Dice | min Dice |\n|---|---:|---:|")
    for row in table:
        print(f"| {row['case']} | {row['mean_dice']:.4f} | {row['min_dice']:.4f} |")


if __name__ == "__main__":
    main()
