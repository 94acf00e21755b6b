"""Maximum-intensity projections of whole-head phantoms, for docs/phantoms.md.

    python bench/phantom_figure.py [--n 4] [--seed 200] [--shape 512 512 160]
        [--out docs/figures/whole_head_mips.png]

One row per phantom: axial MIP (seen from above, anterior up), coronal MIP (seen
from the front) and sagittal MIP (seen from the right, anterior to the right), in
millimetres, with the drawn Circle of Willis variant as the row's title.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vesselzip.phantoms import make_phantom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 160])
    parser.add_argument("--out", type=Path, default=Path("docs/figures/whole_head_mips.png"))
    args = parser.parse_args()

    fig, axes = plt.subplots(
        args.n, 3, figsize=(9.0, 2.9 * args.n), gridspec_kw={"width_ratios": [1.0, 1.0, 1.0]}
    )
    axes = np.atleast_2d(axes)
    for row in range(args.n):
        seed = args.seed + row
        phantom = make_phantom(seed, tuple(args.shape), None, field_of_view="whole-head")
        image = phantom.image.astype(np.float32)
        sx, sy, sz = phantom.spacing
        nx, ny, nz = image.shape
        top = float(np.percentile(image.max(axis=2), 99.9))
        views = [
            # axial: x right to the viewer's right, anterior up
            (image.max(axis=2).T, (0, nx * sx, 0, ny * sy), "axial"),
            # coronal: seen from the front, the patient's right on the viewer's left
            (image.max(axis=1).T[:, ::-1], (0, nx * sx, 0, nz * sz), "coronal"),
            # sagittal: seen from the right, anterior to the right
            (image.max(axis=0).T, (0, ny * sy, 0, nz * sz), "sagittal"),
        ]
        for ax, (mip, extent, name) in zip(axes[row], views, strict=True):
            ax.imshow(mip, cmap="gray", vmin=0, vmax=top, origin="lower", extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
        cow = phantom.style["circle_of_willis"]["summary"]
        axes[row, 0].set_ylabel(f"seed {seed}\n{sx:.2f}×{sy:.2f}×{sz:.2f} mm\n{cow}", fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
