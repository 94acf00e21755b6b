"""Render a TOF-MRA-like volume around each real vessel mask in a folder and report
what it costs and how it looks, for docs/phantoms.md.

    python bench/real_geometry.py --masks DIR [--seed 0]
        [--figure docs/figures/real_geometry_mips.png --figure-of NAME ...]

Mask i (in name order) is rendered with seed SEED + i, as `vesselzip phantom
--geometry` numbers them. One line per mask (*.nii, *.nii.gz in DIR): its grid (shape, spacing, orientation),
how its values were read (binary or TopCoW), the field of view drawn, the drawn
inflow signal (before fading; the look varies per seed), seconds to
read and to render, the peak memory of the process that did it (each mask in a
fresh process, so one mask's peak does not hide another's), the vessel fraction,
the mean vessel signal over the median of the tissue around the vessels (1-3 mm
away), and the image's median, 99th percentile and maximum. `--figure` saves
axial, coronal and sagittal maximum-intensity projections (RAS, in mm) of the
renders of the masks whose names contain a `--figure-of` string, one row each,
beside the axial MIP of the mask.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from pathlib import Path

import numpy as np


def measure(path: Path, seed: int) -> dict:
    """Read and render one mask in this process; the numbers for its line."""
    from scipy import ndimage

    from vesselzip.phantoms.around_mask import render_around_mask
    from vesselzip.phantoms.real_masks import read_real_mask

    started = time.perf_counter()
    mask = read_real_mask(path)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    phantom = render_around_mask(mask, seed)
    render_s = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    image, vessels = phantom.image, phantom.mask > 0
    # Tissue around the vessels: 1 to 3 mm away (clear of their blurred borders).
    spacing = np.asarray(mask.spacing)
    box = _box(vessels, int(np.ceil(3.0 / spacing.min())) + 1)
    distance = ndimage.distance_transform_edt(~vessels[box], sampling=spacing)
    around = (distance >= 1.0) & (distance <= 3.0)
    return {
        "name": mask.name,
        "shape": "x".join(map(str, image.shape)),
        "spacing": "x".join(f"{s:.3g}" for s in mask.spacing),
        "orientation": phantom.style["orientation"],
        "classes": mask.kind,
        "field_of_view": phantom.style["field_of_view"],
        "seed": seed,
        "inflow": phantom.style["inflow"],
        "read_s": read_s,
        "render_s": render_s,
        "peak_gib": peak_gib,
        "vessel_pct": 100.0 * float(vessels.mean()),
        "contrast": float(image[vessels].mean() / np.median(image[box][around])),
        "median": float(np.median(image)),
        "p99": float(np.percentile(image, 99)),
        "max": int(image.max()),
    }


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The mask's bounding box, grown by `margin` voxels."""
    where = np.argwhere(mask)
    low = np.maximum(where.min(axis=0) - margin, 0)
    high = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _measure_in_child(path: Path, seed: int, results) -> None:
    results.put(measure(path, seed))


def figure(paths: list[tuple[Path, int]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    from vesselzip.phantoms.around_mask import render_around_mask
    from vesselzip.phantoms.real_masks import read_real_mask

    fig, axes = plt.subplots(len(paths), 4, figsize=(12.0, 3.2 * len(paths)), squeeze=False)
    for row, (path, seed) in zip(axes, paths, strict=True):
        mask = read_real_mask(path)
        phantom = render_around_mask(mask, seed)
        to_ras = nib.orientations.io_orientation(phantom.affine)
        image = nib.orientations.apply_orientation(phantom.image, to_ras).astype(np.float32)
        vessels = nib.orientations.apply_orientation(phantom.mask, to_ras)
        spacing = np.empty(3)  # of the RAS copy: input axis i became axis to_ras[i, 0]
        for axis, (target, _flip) in enumerate(to_ras):
            spacing[int(target)] = np.sqrt((phantom.affine[:3, axis] ** 2).sum())
        sx, sy, sz = spacing
        nx, ny, nz = image.shape
        top = float(np.percentile(image.max(axis=2), 99.9))
        views = [
            (vessels.max(axis=2).T, (0, nx * sx, 0, ny * sy), "mask, axial", 1.0),
            (image.max(axis=2).T, (0, nx * sx, 0, ny * sy), "render, axial", top),
            (image.max(axis=1).T[:, ::-1], (0, nx * sx, 0, nz * sz), "coronal", top),
            (image.max(axis=0).T, (0, ny * sy, 0, nz * sz), "sagittal", top),
        ]
        for ax, (mip, extent, title, high) in zip(row, views, strict=True):
            ax.imshow(mip, cmap="gray", vmin=0, vmax=high, origin="lower", extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        grid = "x".join(map(str, phantom.image.shape))
        row[0].set_ylabel(f"{mask.name[:34]}\n{grid}, seed {seed}", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=60)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=Path, required=True, help="folder of vessel masks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=None, help="save MIPs here (PNG)")
    parser.add_argument("--figure-of", nargs="+", default=[], metavar="NAME")
    args = parser.parse_args()

    paths = sorted(p for p in args.masks.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    if not paths:
        parser.error(f"no .nii or .nii.gz files in {args.masks}")
    columns = (
        "| mask | shape | spacing (mm) | axes | read as | field of view | seed | inflow "
        "| read s | render s "
        "| peak GiB | vessels % | vessel / tissue | median | p99 | max |"
    )
    print(columns)
    print("|" + "---|" * (columns.count("|") - 1))
    context = multiprocessing.get_context("spawn")
    for index, path in enumerate(paths):
        results = context.Queue()
        seed = args.seed + index
        child = context.Process(target=_measure_in_child, args=(path, seed, results))
        child.start()
        row = results.get()
        child.join()
        print(
            f"| {row['name']} | {row['shape']} | {row['spacing']} | {row['orientation']} "
            f"| {row['classes']} | {row['field_of_view']} | {row['seed']} | {row['inflow']:.0f} "
            f"| {row['read_s']:.1f} "
            f"| {row['render_s']:.1f} | {row['peak_gib']:.2f} | {row['vessel_pct']:.2f} "
            f"| {row['contrast']:.1f} | {row['median']:.0f} | {row['p99']:.0f} | {row['max']} |",
            flush=True,
        )
    if args.figure is not None:
        chosen = [
            (path, args.seed + index)
            for index, path in enumerate(paths)
            if any(name in path.name for name in args.figure_of)
        ]
        if not chosen:
            parser.error("--figure needs --figure-of naming at least one mask in --masks")
        figure(chosen, args.figure)


if __name__ == "__main__":
    main()
