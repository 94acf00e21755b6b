"""Inference speed: voxels per second for a bundled small MambaVesselNet++ (the default,
`mvn-arteries`, unless --model) on a crop and on a whole head in the same run, the
paper's full configuration (155 M parameters) and the Frangi baseline.

    python bench/inference.py [--model mvn-arteries] [--shape 128 128 96] [--head-shape 512 512 160]
                              [--skip-head] [--compare-skip] [--tissue-window K]
                              [--sw-batch-size N] [--device cpu|cuda]
                              [--full-windows 1] [--skip-full] [--json]

"volume" rows segment a whole phantom through `load_segmenter(...).segment` (RAS,
resampling to the model's spacing, sliding window, mapping back, cleanup) and count
the input's voxels. The crop is a "crop" phantom of --shape (tissue throughout); the
whole head a "whole-head" phantom of --head-shape (a head in a clinical slab with air
around it); "air" is the share of the network grid's 4^3 blocks that hold no tissue.
--compare-skip adds the rows with `skip_air` off (every window run), the time before
air windows were skipped. The full configuration has no weights in the package, so it
is timed on --full-windows single 64^3 windows with random weights (the speed does not
depend on the values); its voxels/s are window voxels. Threads: torch's default (set
OMP_NUM_THREADS to pin them).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from vesselzip.model import MambaVesselNet, load_segmenter
from vesselzip.model.foreground import tissue_blocks
from vesselzip.model.inference import autocast_for, preprocess, ras_grid, resolve_device
from vesselzip.model.segmenters import NetworkSegmenter, Segmenter
from vesselzip.phantoms import make_phantom
from vesselzip.volumes import Volume

PAPER_DIMS = (48, 96, 192, 384, 768)


def air_share(segmenter: Segmenter, volume: Volume) -> float | None:
    """Share of the blocks the network sees that hold no tissue."""
    if not isinstance(segmenter, NetworkSegmenter):
        return None
    grid = ras_grid(volume.shape, volume.affine)
    image = preprocess(volume.data, grid, segmenter.config, torch.device("cpu"))
    tissue = tissue_blocks(image)
    return round(1.0 - float(np.mean(tissue)), 3)


def time_volume(segmenter: Segmenter, what: str, volume: Volume, device: str) -> dict:
    started = time.perf_counter()
    segmenter.segment(volume)
    seconds = time.perf_counter() - started
    config = getattr(segmenter, "config", None)
    return {
        "model": segmenter.name,
        "what": f"{what} {'x'.join(map(str, volume.shape))}",
        "device": device if segmenter.name != "frangi" else "cpu",
        "skip_air": None if config is None else config.skip_air,
        "sw_batch_size": None if config is None else config.sw_batch_size,
        "air": air_share(segmenter, volume),
        "seconds": round(seconds, 2),
        "voxels_per_s": round(volume.data.size / seconds),
    }


def time_full_windows(windows: int, device: str) -> dict:
    torch.manual_seed(0)
    compute = resolve_device(device)
    network = MambaVesselNet(feature_dims=PAPER_DIMS).to(compute).eval()
    window = torch.rand(1, 1, 64, 64, 64, device=compute)
    with torch.inference_mode(), autocast_for(compute):
        network(window)  # warm-up (allocator, kernels)
        if compute.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(windows):
            network(window)
        if compute.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "model": "mvn full (paper dims, random weights)",
        "what": f"{windows} window(s) 64^3",
        "device": str(compute),
        "skip_air": None,
        "sw_batch_size": 1,
        "air": None,
        "seconds": round(seconds, 2),
        "voxels_per_s": round(windows * 64**3 / seconds),
    }


def phantom_volume(seed: int, shape, field_of_view: str) -> Volume:
    phantom = make_phantom(seed, shape=tuple(shape), field_of_view=field_of_view)
    return Volume(data=phantom.image, affine=phantom.affine, header=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mvn-arteries", help="a bundled network model")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--head-shape", type=int, nargs=3, default=[512, 512, 160])
    parser.add_argument("--skip-head", action="store_true", help="no whole-head row")
    parser.add_argument("--compare-skip", action="store_true", help="also time with skip_air off")
    parser.add_argument(
        "--tissue-window", type=float, default=None, help="time with this tissue window"
    )
    parser.add_argument("--sw-batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=10000)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--full-windows", type=int, default=1)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--skip-frangi", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    model = load_segmenter(args.model, device=args.device)
    assert isinstance(model, NetworkSegmenter)
    changes: dict = {}
    if args.tissue_window is not None:
        changes.update(window_percentiles=None, tissue_window=args.tissue_window)
    if args.sw_batch_size is not None:
        changes["sw_batch_size"] = args.sw_batch_size
    model = model.with_config(**changes)
    models = [model.with_config(skip_air=False), model] if args.compare_skip else [model]

    volumes = [("crop", phantom_volume(args.seed, args.shape, "crop"))]
    if not args.skip_head:
        volumes.append(("whole head", phantom_volume(args.seed, args.head_shape, "whole-head")))
    rows = [time_volume(m, what, volume, args.device) for what, volume in volumes for m in models]
    if not args.skip_frangi:
        rows.append(time_volume(load_segmenter("frangi"), "crop", volumes[0][1], "cpu"))
    if not args.skip_full:
        rows.append(time_full_windows(args.full_windows, args.device))

    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
        return
    print(f"torch threads: {torch.get_num_threads()}")
    print(
        f"{'model':38} {'what':24} {'device':6} {'skip':>5} {'air':>5} {'seconds':>8} {'voxels/s':>10}"
    )
    for row in rows:
        air = "" if row["air"] is None else f"{row['air']:.2f}"
        skip = "" if row["skip_air"] is None else ("on" if row["skip_air"] else "off")
        print(
            f"{row['model']:38} {row['what']:24} {row['device']:6} {skip:>5} {air:>5} "
            f"{row['seconds']:8.2f} {row['voxels_per_s']:10,d}"
        )


if __name__ == "__main__":
    main()
