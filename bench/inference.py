"""Inference speed: voxels per second for the bundled small MambaVesselNet++, the
paper's full configuration (155 M parameters) and the Frangi baseline.

    python bench/inference.py [--shape 128 128 96] [--device cpu|cuda] [--full-windows 1]
                              [--skip-full] [--json]

"volume" rows segment a whole phantom of --shape through `load_segmenter(...).segment`
(RAS, resampling to the model's spacing, sliding window, mapping back) and count the
input's voxels. The full configuration has no weights in the package, so it is timed
on --full-windows single 64^3 windows with random weights (the speed does not depend
on the values); its voxels/s are window voxels. Threads: torch's default (set
OMP_NUM_THREADS to pin them).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vesselzip.model import MambaVesselNet, load_segmenter
from vesselzip.model.inference import autocast_for, resolve_device
from vesselzip.phantoms import make_phantom
from vesselzip.volumes import Volume

PAPER_DIMS = (48, 96, 192, 384, 768)


def time_volume(name: str, volume: Volume, device: str) -> dict:
    segmenter = load_segmenter(name, device=device)
    started = time.perf_counter()
    segmenter.segment(volume)
    seconds = time.perf_counter() - started
    return {
        "model": name,
        "what": f"volume {'x'.join(map(str, volume.shape))}",
        "device": device if name != "frangi" else "cpu",
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
        "seconds": round(seconds, 2),
        "voxels_per_s": round(windows * 64**3 / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 96])
    parser.add_argument("--seed", type=int, default=10000)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--full-windows", type=int, default=1)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    phantom = make_phantom(args.seed, shape=tuple(args.shape))
    volume = Volume(data=phantom.image, affine=phantom.affine, header=None)
    rows = [time_volume("mvn-small", volume, args.device), time_volume("frangi", volume, "cpu")]
    if not args.skip_full:
        rows.append(time_full_windows(args.full_windows, args.device))

    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
        return
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':40} {'what':22} {'device':7} {'seconds':>8} {'voxels/s':>12}")
    for row in rows:
        print(
            f"{row['model']:40} {row['what']:22} {row['device']:7} "
            f"{row['seconds']:8.2f} {row['voxels_per_s']:12,d}"
        )


if __name__ == "__main__":
    main()
