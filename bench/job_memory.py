"""What one job costs a worker: peak resident memory and time of the whole job (fetch,
verify, decode, segment, score against the truth, store the mask), per model and
volume size, in bytes per voxel, so the settings' limits translate into memory.

Each (model, shape) runs in a fresh process (peak RSS is per process), on a phantom
with its truth, compressed at the paper's setting.

    python bench/job_memory.py --models frangi,mvn-small --shapes 64,64,48 128,128,96
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(model: str, shape: tuple[int, int, int], codec: str) -> dict:
    """Runs in the child: one job end to end, with the peak RSS above the baseline."""
    import nibabel as nib
    import numpy as np

    from vesselzip.codecs import get_codec, parse_codec_spec
    from vesselzip.container import encode_volume
    from vesselzip.jobs import ImageInfo, JobSpec, new_job_id, run_job
    from vesselzip.model import load_segmenter
    from vesselzip.phantoms import make_phantom
    from vesselzip.store import LocalStore
    from vesselzip.volumes import Volume, volume_to_bytes

    phantom = make_phantom(seed=1, shape=shape)
    volume = Volume(
        phantom.image, phantom.affine, nib.Nifti1Image(phantom.image, phantom.affine).header
    )
    store = LocalStore(tempfile.mkdtemp())
    job_id = new_job_id()
    config = parse_codec_spec(codec)
    store.put_bytes(f"blobs/{job_id}.vz", encode_volume(volume, get_codec(config)))
    store.put_bytes(
        f"truth/{job_id}.nii.gz", volume_to_bytes(phantom.mask.astype(np.uint8), volume)
    )
    segmenter = load_segmenter(model)
    segmenter.segment(volume)  # warm: the first pass allocates the model's buffers
    phantom_spacing = phantom.spacing
    del phantom, volume
    baseline = _rss_bytes()
    spec = JobSpec(
        job_id=job_id,
        blob_key=f"blobs/{job_id}.vz",
        truth_key=f"truth/{job_id}.nii.gz",
        model=model,
        codec=config,
        image=ImageInfo(shape=shape, dtype="int16", spacing=tuple(map(float, phantom_spacing))),
    )
    t0 = time.perf_counter()
    result = run_job(spec, store, segmenter)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    voxels = shape[0] * shape[1] * shape[2]
    return {
        "model": model,
        "shape": list(shape),
        "voxels": voxels,
        "seconds": round(seconds, 2),
        "peak_above_idle_bytes": max(0, peak - baseline),
        "bytes_per_voxel": round(max(0, peak - baseline) / voxels, 1),
        "dice": round((result.segmentation or {}).get("dice", float("nan")), 3),
    }


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="frangi,mvn-small")
    parser.add_argument("--shapes", nargs="+", default=["64,64,48", "128,128,96"])
    parser.add_argument("--codec", default="zfp:tolerance=500")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, shape = args.child.split(":")
        row = measure(model, tuple(int(n) for n in shape.split(",")), args.codec)
        print(json.dumps(row))
        return 0

    rows = []
    print(f"{'model':<10} {'shape':<14} {'seconds':>8} {'peak MiB':>9} {'B/voxel':>8} {'Dice':>6}")
    for model in args.models.split(","):
        for shape in args.shapes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", f"{model}:{shape}", "--codec", args.codec],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{model:<10} {shape:<14} {row['seconds']:>8.2f} "
                f"{row['peak_above_idle_bytes'] / 2**20:>9.0f} {row['bytes_per_voxel']:>8.1f} "
                f"{row['dice']:>6.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
