"""Models on real TOF-MRA scans that have no labels: how connected each mask is, how
much of the volume it marks, and how well it agrees with itself after compression.

    python bench/real_scans.py VOLUME.nii.gz [...] [--model mvn-small mvn-small-heads]
                               [--figures DIR] [--json OUT]

Per volume and model: the marked share of the voxels, the pieces (26-connected) and
the share of the mask in pieces under 50 voxels (`connectivity_metrics`), seconds; then
the mask after a ZFP round trip at the paper's settings against the mask of the
original (Dice: the model's own instability plus the codec's effect, which is what a
user of the service is told is the codec's). The paper's absolute tolerances (500,
1000, 1500) are for raw scanner intensities; a volume on another scale (an 8-bit
export) gets them scaled by its 99.9th percentile against --reference-p999 (862, the
TopCoW example crop's), and the fixed rates are scale-free. --figures writes an axial
maximum-intensity projection of each volume with each model's mask over it.

Reference volumes are in the team's shared folder (real_tof/, see its SOURCES.md);
nothing of them is part of the project."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vesselzip.codecs import get_codec, parse_codec_spec
from vesselzip.container import decode_volume, encode_volume
from vesselzip.metrics import connectivity_metrics, segmentation_metrics
from vesselzip.model import load_segmenter
from vesselzip.volumes import read_volume

RATES = (8, 4, 2)
TOLERANCES = (500, 1000, 1500)


def settings_for(volume_p999: float, reference_p999: float) -> list[str]:
    """The paper's ZFP grid for a volume: tolerances scaled to its intensity scale."""
    scale = volume_p999 / reference_p999
    specs = [f"zfp:rate={r}" for r in RATES]
    specs += [f"zfp:tolerance={t * scale:.4g}" for t in TOLERANCES]
    return specs


def round_trip(volume, spec: str):
    return decode_volume(encode_volume(volume, get_codec(parse_codec_spec(spec))))


def mip_figure(path: Path, volume, masks: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mip = volume.data.max(axis=2).T
    fig, axes = plt.subplots(1, 1 + len(masks), figsize=(3.2 * (1 + len(masks)), 3.4))
    for ax in axes:
        ax.imshow(mip, cmap="gray", origin="lower")
        ax.set_axis_off()
    axes[0].set_title(path.stem.split("__")[0][:28], fontsize=8)
    for ax, (name, mask) in zip(axes[1:], masks.items(), strict=True):
        overlay = np.zeros((*mip.shape, 4))
        overlay[mask.max(axis=2).T > 0] = (1.0, 0.1, 0.1, 0.55)
        ax.imshow(overlay, origin="lower")
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("volumes", nargs="+", type=Path)
    parser.add_argument("--model", nargs="+", default=["mvn-small", "mvn-small-heads"])
    parser.add_argument("--checkpoint", type=Path, help="for --model mvn-checkpoint")
    parser.add_argument("--reference-p999", type=float, default=862.0)
    parser.add_argument("--no-compression", action="store_true", help="skip the round trips")
    parser.add_argument("--figures", type=Path, help="write MIP figures into this folder")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for path in args.volumes:
        volume = read_volume(path)
        p999 = float(np.percentile(volume.data, 99.9))
        specs = [] if args.no_compression else settings_for(p999, args.reference_p999)
        decoded = {spec: round_trip(volume, spec) for spec in specs}
        masks = {}
        for name in args.model:
            segmenter = load_segmenter(name, checkpoint=args.checkpoint)
            started = time.perf_counter()
            mask = segmenter.segment(volume)
            seconds = time.perf_counter() - started
            masks[name] = mask
            pieces = connectivity_metrics(mask)
            row = {
                "volume": path.name,
                "model": name,
                "shape": list(volume.shape),
                "marked_share": float(np.count_nonzero(mask) / mask.size),
                "pieces": pieces["pieces"],
                "speck_share": pieces["speck_share"],
                "seconds": seconds,
                "agreement": {
                    spec: segmentation_metrics(segmenter.segment(d), mask)["dice"]
                    for spec, d in decoded.items()
                },
            }
            rows.append(row)
            agreement = "  ".join(f"{s.split(':')[1]} {v:.3f}" for s, v in row["agreement"].items())
            print(
                f"{path.name[:40]:40} {name:16} marked {row['marked_share']:.2%}  pieces "
                f"{row['pieces']:4d}  specks {row['speck_share']:.1%}  {seconds:5.1f} s  {agreement}",
                flush=True,
            )
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            name = path.name.removesuffix(".gz").removesuffix(".nii")
            mip_figure(args.figures / f"{name}__mip.png", volume, masks)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
