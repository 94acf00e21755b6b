"""A TOF-MRA-like volume rendered around a real vessel mask, on the mask's own grid.

The vessels are the mask's: the label is the mask, unchanged. Everything else is
the whole-head generator's: the look drawn per seed (`whole_head.draw_style`), the
anatomical head (`head`) with its dural sinuses and coil bias on a coarse grid,
the inflow signal fading with the path travelled and saturating within each slab
(`inflow`), and the scanner (`fields.acquire`: point-spread function, Rician
noise). What a mask lacks is filled in: the path along the vessels from the
inflow (`mask_paths`) and the partial volume at their borders (`mask_edges`).

The work is done on a copy of the mask permuted and flipped to the nearest RAS
axes (no resampling), so that axis 2 is the slab axis and points up; the image is
turned back to the mask's voxel order at the end. The head is placed in the
world frame of the mask's affine (RAS mm, obliquity included), with its Circle of
Willis where the vessels suggest (`place_head`): a fit, not the subject's
anatomy.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .background import draw_background, scan_image
from .generate import WHOLE_HEAD_MIN_FOV_MM
from .head import draw_anatomy
from .inflow import coarse_value, inflow_signal
from .mask_edges import occupancy
from .mask_paths import inflow_paths, vessel_graph, vessel_voxels
from .phantom import Phantom, plain_json
from .real_masks import RealMask, named_territories
from .whole_head import draw_style, fit_psf_to_voxels

#: A crop's first slice lies this far (mm, drawn) above where its slab, and the
#: inflow, begin: a Circle of Willis crop starts some 10-60 mm up the carotids.
CROP_ENTRY_MM = (10.0, 60.0)
#: Whole heads: the Circle of Willis at this percentile of the vessel voxels'
#: heights (the carotids and vertebrals below it are few voxels; the cortical
#: branches above it many), and the brain this much wider than the vessels.
CIRCLE_HEIGHT_PERCENTILE = 30.0
BRAIN_MARGIN_MM = 3.0
#: The coil's bias field is drawn over a head-sized cube around any volume.
HEAD_SPAN_MM = 200.0
#: Style entries of the whole-head generator that only shape its own trees.
_TREE_STYLE = (
    "vessel_scale",
    "tortuosity",
    "cortical_tortuosity",
    "branch_asymmetry",
    "stretch_radii",
    "min_radius_mm",
    "cortical_volume",
    "wall_darkening",
    "psf_truncate",
)


def render_around_mask(mask: RealMask, seed: int) -> Phantom:
    """Draw the look and the head from `seed` and render them around the mask's
    vessels. Same mask and seed -> same bytes."""
    rng = np.random.default_rng(seed)
    affine, shape = mask.volume.affine, mask.volume.shape
    to_ras = nib.orientations.io_orientation(affine)
    from_ras = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), to_ras)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(to_ras, shape)
    vessels = np.ascontiguousarray(nib.orientations.apply_orientation(mask.vessels, to_ras))
    spacing = np.sqrt((ras_affine[:3, :3] ** 2).sum(axis=0))
    direction = ras_affine[:3, :3] / spacing  # world direction of each voxel axis
    first_voxel = ras_affine[:3, 3]
    in_plane_mm = np.asarray(vessels.shape[:2]) * spacing[:2]
    field_of_view = "whole-head" if in_plane_mm.min() >= WHOLE_HEAD_MIN_FOV_MM else "crop"

    style = fit_psf_to_voxels(draw_style(rng), spacing)
    style["field_of_view"] = field_of_view
    anatomy = draw_anatomy(rng)
    entry_mm = 0.0 if field_of_view == "whole-head" else float(rng.uniform(*CROP_ENTRY_MM))

    flat, coords = vessel_voxels(vessels)
    points = coords * spacing  # mm along the voxel axes from the first voxel
    world = points @ direction.T + first_voxel
    circle = place_head(world, anatomy, field_of_view)
    to_head = (direction.T.astype(np.float32), (first_voxel - circle).astype(np.float32))
    from_head = np.linalg.inv(direction)

    def head_coords(grid):  # coarse voxel centres, volume mm -> head frame
        head = grid @ to_head[0] + to_head[1]
        return [np.ascontiguousarray(head[..., d]) for d in range(3)]

    def to_volume(head_points):
        return (np.asarray(head_points) + circle - first_voxel) @ from_head.T

    background = draw_background(
        rng, vessels.shape, spacing, anatomy, style, head_coords, to_volume, entry_mm, HEAD_SPAN_MM
    )
    graph = vessel_graph(flat, coords, vessels.shape, spacing)
    path = inflow_paths(coords, graph, spacing) + entry_mm
    del graph
    brightness = coarse_value(background.bias, points, background.spacing, spacing)
    brightness *= inflow_signal(points[:, 2] + entry_mm, path, style)
    fraction, signal = occupancy(vessels, flat, coords, spacing, brightness)

    noisy = scan_image(rng, fraction, signal, background.tissue, style)
    del fraction, signal
    image = np.ascontiguousarray(
        nib.orientations.apply_orientation(noisy.astype(np.int16), from_ras)
    )

    label = mask.vessels.astype(np.uint8)
    record = {k: v for k, v in style.items() if k not in _TREE_STYLE}
    record.update(
        mask=str(mask.path),
        mask_classes=mask.kind,
        orientation="".join(nib.orientations.aff2axcodes(affine)),
        inflow_entry_below_mm=entry_mm,
        longest_path_mm=float(path.max()),
        circle_of_willis_mm=circle,
        head_size_mm=[float(2 * r) for r in anatomy["radii"]],
        vessel_fraction=float(len(flat) / vessels.size),
        head_fraction=float(background.brain.mean()),
    )
    return Phantom(
        image=image,
        mask=label,
        affine=affine.copy(),
        spacing=mask.spacing,
        seed=int(seed),
        style=plain_json(record),
        vessels=label,
        territories=named_territories(mask),
    )


def place_head(world, anatomy, field_of_view: str) -> np.ndarray:
    """Where the head frame's origin, the Circle of Willis, goes (world mm), given the
    vessel voxels' world positions (n, 3); a whole head's `anatomy` is grown, where
    needed, so that its brain holds the vessels.

    A crop is taken to be centred on the circle, as Circle of Willis crops are. In a
    whole head the brain's centre is put midway across the vessels (1st to 99th
    percentile, right-left and front-back) and the circle at a low percentile of
    their heights."""
    if field_of_view != "whole-head":
        return world.mean(axis=0)
    low, high = np.percentile(world, [1.0, 99.0], axis=0)
    middle = (low + high) / 2.0
    circle = np.array(
        [
            middle[0] - anatomy["centre"][0],
            middle[1] - anatomy["centre"][1],
            np.percentile(world[:, 2], CIRCLE_HEIGHT_PERCENTILE),
        ]
    )
    centre = circle + anatomy["centre"]
    shell = anatomy["skin"] + anatomy["fat"] + anatomy["skull"] + anatomy["csf"]
    reach = np.maximum(high - centre, centre - low) + BRAIN_MARGIN_MM + shell
    radii = anatomy["radii"]
    radii[:2] = np.maximum(radii[:2], reach[:2])
    radii[2] = max(radii[2], high[2] - centre[2] + BRAIN_MARGIN_MM + shell)
    return circle
