"""Whole heads: an anatomical head (`head`, drawn with its sinuses and coil bias by
`background`) in a clinical axial TOF slab, the named arteries and Circle of Willis
variants (`arteries`), cortical trees grown from them by Murray's law (`trees`),
the multi-slab inflow pattern (`inflow`) and the scanner (`fields`). Labels follow the paper: the default mask is the union of
the named arterial territories; every vessel and the territory map come beside it.

Geometry is in millimetres, so any shape and spacing work: a 512x512x160 clinical
volume or a coarse 160x160x64 test volume show the same head."""

from __future__ import annotations

import math

import numpy as np

from .arteries import Centreline, draw_circle_variant, named_arteries
from .background import draw_background, scan_image
from .head import brain_depth, draw_anatomy
from .inflow import shade
from .phantom import Phantom, phantom_affine, plain_json
from .trees import Growth, Stretch, grow_trees
from .tubes import mask_of, rasterise, segment_boxes, voxel_blur_mm

#: Clinical whole-head TOF: 0.35-0.5 mm in-plane (often zero-filled), 0.5-0.8 mm slices.
MIN_IN_PLANE_SPACING = 0.35


def draw_whole_head_spacing(rng) -> tuple[float, float, float]:
    in_plane = round(float(rng.uniform(MIN_IN_PLANE_SPACING, 0.45)), 4)
    return (in_plane, in_plane, round(float(rng.uniform(0.5, 0.8)), 4))


def draw_style(rng) -> dict:
    """Per-seed appearance of a clinical TOF-MRA: head tissue ~100, fat bright,
    CSF and bone dark, inflow up to ~1000-1500, air noise sigma ~3.5-7."""
    level = math.exp(rng.uniform(math.log(85.0), math.log(130.0)))
    inflow = rng.uniform(1000.0, 1600.0)
    if rng.random() < 0.1:  # slow flow or a thick slab: weak inflow contrast
        inflow *= rng.uniform(0.55, 0.8)
    return {
        "field_of_view": "whole-head",
        "tissue_level": level,
        "grey_white_ratio": rng.uniform(0.85, 1.0),
        "texture_mm": rng.uniform(3.0, 8.0),
        "fine_texture": rng.uniform(0.15, 0.3),
        "csf_ratio": rng.uniform(0.2, 0.45),
        "fat_ratio": rng.uniform(2.0, 3.2),
        "skin_ratio": rng.uniform(0.8, 1.1),
        "muscle_ratio": rng.uniform(0.6, 0.85),
        "skull_ratio": rng.uniform(0.08, 0.2),
        "marrow_ratio": rng.uniform(0.3, 0.9),
        "vein_ratio": rng.uniform(0.7, 1.5),
        "veins_visible": bool(rng.random() < 0.3),
        "inflow": inflow,
        # inflow fades with path length along the tree, and within each slab
        "fade_mm": rng.uniform(80.0, 180.0),
        "fade_floor": rng.uniform(0.35, 0.6),
        "min_contrast": rng.uniform(1.3, 1.8),
        "slab_mm": rng.uniform(24.0, 40.0),
        "slab_overlap_mm": rng.uniform(4.0, 10.0),
        "slab_saturation_mm": rng.uniform(50.0, 140.0),
        "slab_ripple": rng.uniform(0.0, 0.1),
        "vessel_scale": rng.uniform(0.9, 1.1),
        "tortuosity": rng.uniform(0.05, 0.35),
        "cortical_tortuosity": rng.uniform(0.2, 0.6),
        # Cortical arteries run far between branchings, shedding thin side branches.
        "branch_asymmetry": rng.uniform(0.2, 0.6),
        "stretch_radii": rng.uniform(22.0, 32.0),
        "min_radius_mm": rng.uniform(0.1, 0.18),
        "cortical_volume": rng.uniform(0.004, 0.01),  # of the brain in view
        "psf_in_plane": rng.uniform(0.6, 1.0),
        "psf_slices": rng.uniform(0.4, 0.9),
        # The Gaussian is cut at 3 sigma: indistinguishable, and a fifth faster.
        "psf_truncate": 3.0,
        "bias_strength": rng.uniform(0.05, 0.2),
        "noise_sigma": math.exp(rng.uniform(math.log(3.5), math.log(7.0))),
        "wall_darkening": rng.uniform(0.0, 0.4),
    }


def draw_pose(rng, shape, spacing) -> dict:
    """Where the head sits: the Circle of Willis in the lower third of the slab,
    near the middle in-plane, the head tilted a few degrees."""
    extent = (np.asarray(shape) - 1) * spacing
    pitch, roll, yaw = (
        np.radians(rng.uniform(-8, 8)),
        np.radians(rng.uniform(-3, 3)),
        np.radians(rng.uniform(-4, 4)),
    )
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(roll), math.sin(roll)
    cz, sz = math.cos(yaw), math.sin(yaw)
    rotation = (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )
    origin = np.array(
        [
            extent[0] / 2 + rng.uniform(-6, 6),
            extent[1] / 2 + rng.uniform(4, 16),  # the head's centre lies behind the circle
            extent[2] * rng.uniform(0.25, 0.38),
        ]
    )
    return {
        "rotation": rotation,
        "origin": origin,
        "angles_deg": [float(np.degrees(a)) for a in (pitch, roll, yaw)],
    }


def make_whole_head(rng, seed: int, shape, spacing) -> Phantom:
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    extent = (np.asarray(shape) - 1) * spacing_arr
    style = fit_psf_to_voxels(draw_style(rng), spacing_arr)
    anatomy = draw_anatomy(rng)
    variant = draw_circle_variant(rng)
    pose = draw_pose(rng, shape, spacing_arr)
    rotation, origin = pose["rotation"], pose["origin"]

    def to_head(points):  # volume mm -> head frame
        return (np.asarray(points) - origin) @ rotation

    def to_volume(points):
        return np.asarray(points) @ rotation.T + origin

    def head_coords(grid):  # coarse voxel centres, volume mm -> head frame
        grid = grid - origin.astype(np.float32)
        return [grid @ rotation[:, d].astype(np.float32) for d in range(3)]

    background = draw_background(rng, shape, spacing_arr, anatomy, style, head_coords, to_volume)
    tissue_c, brain_c, bias_c = background.tissue, background.brain, background.bias
    coarse_spacing = background.spacing

    # Arteries: the named tree, then cortical trees grown from its branches.
    lines = named_arteries(rng, variant, anatomy["radii"][0] / 74.0, style["tortuosity"])
    named, named_classes = _line_segments(lines, to_volume)
    entry = _entry_path(lines, to_volume)
    named[:, 8:10] -= entry
    trunks = _cortical_trunks(rng, lines, to_volume, rotation, entry)
    brain_volume = float(brain_c.sum() * np.prod(coarse_spacing))

    def outside(points, margin: float = 2.0) -> np.ndarray:
        head = to_head(points)
        # Pial arteries run on the surface, in the CSF under the skull.
        out_of_brain = brain_depth(head[:, 0], head[:, 1], head[:, 2], anatomy) < -1.0
        return out_of_brain | np.any((points < -margin) | (points > extent + margin), axis=1)

    branch_lines = [line for line in lines if line.name.split(" ", 1)[-1] in _SIDE_BRANCHING]

    def side_branch(index: int) -> Stretch | None:
        """Another side branch off a cerebral artery, while the cortex is too empty."""
        line = branch_lines[int(rng.integers(len(branch_lines)))]
        i = int(rng.integers(1, len(line.points) - 1))
        tangent = line.points[i + 1] - line.points[i - 1]
        normal = rng.standard_normal(3)
        normal -= normal.dot(tangent) / tangent.dot(tangent) * tangent
        direction = rotation @ (
            normal / np.linalg.norm(normal) + 0.5 * tangent / np.linalg.norm(tangent)
        )
        radius = float(line.radius[i] * rng.uniform(0.35, 0.6))
        return (to_volume(line.points[i]), direction, radius, float(line.path[i] - entry), 1.0)

    growth = Growth(
        outside=outside,
        extent=extent,
        brightness=lambda path, gain: path,  # shaded below, with the slab and bias
        target_volume=style["cortical_volume"] * brain_volume,
        # A budget that keeps 512x512x160 near 8 s; coarse voxels cannot show as
        # many twigs, so they get fewer.
        max_segments=int(60000 * min(1.0, (0.5 / float(spacing_arr.mean())) ** 2)),
        min_radius=style["min_radius_mm"],
        tortuosity=style["cortical_tortuosity"],
        branch_asymmetry=style["branch_asymmetry"],
        stretch_radii=style["stretch_radii"],
        taper_per_mm=0.003,
        new_tree=side_branch,
        max_trees=600,
    )
    cortical = grow_trees(rng, trunks, growth)
    segments = np.vstack([named, cortical]) if len(cortical) else named
    classes = np.concatenate([named_classes, np.zeros(len(cortical), dtype=np.uint8)])
    lo, hi = segment_boxes(segments, shape, spacing_arr, voxel_blur_mm(spacing_arr))
    keep = np.all(hi > lo, axis=1)  # drop what lies outside the volume
    segments, classes = segments[keep], classes[keep]
    segments[:, 8:10] = shade(segments, style, bias_c, coarse_spacing, spacing_arr)

    blur = voxel_blur_mm(spacing_arr)
    fraction, signal = rasterise(segments, shape, spacing_arr, blur, style["wall_darkening"])
    vessels = mask_of(fraction)
    territories = _territories(segments, classes, vessels, shape, spacing_arr, blur)
    mask = (territories > 0).astype(np.uint8)

    noisy = scan_image(rng, fraction, signal, tissue_c, style)
    del fraction, signal
    image = noisy.astype(np.int16)

    style = {
        **{k: v for k, v in style.items() if k != "psf_truncate"},
        "circle_of_willis": variant,
        "head_size_mm": [float(2 * r) for r in anatomy["radii"][:2]],
        "tilt_deg": pose["angles_deg"],
        "circle_of_willis_height_mm": float(origin[2]),
        "n_segments": int(len(segments)),
        "n_labelled_segments": int((classes > 0).sum()),
        "vessel_fraction": float(vessels.mean()),
        "label_fraction": float(mask.mean()),
        "head_fraction": float(brain_c.mean()),
    }
    return Phantom(
        image=image,
        mask=mask,
        affine=phantom_affine(shape, spacing),
        spacing=tuple(spacing),
        seed=int(seed),
        style=plain_json(style),
        segments=segments,
        vessels=vessels,
        territories=territories,
        segment_territories=classes,
    )


def fit_psf_to_voxels(style: dict, spacing) -> dict:
    """The point-spread function is drawn in voxels of a clinical reconstruction
    (zero-filled, finer than acquired); coarser voxels get correspondingly less."""
    spacing = np.asarray(spacing, dtype=np.float64)
    for key, clinical_mm in (("psf_in_plane", 0.45), ("psf_slices", 0.65)):
        voxel = float(spacing[2] if key == "psf_slices" else spacing[:2].mean())
        style[key] = max(style[key] * min(1.0, clinical_mm / voxel), 0.3)
    return style


#: Named arteries that shed side branches into the cortex.
_SIDE_BRANCHING = ("M1", "M2 superior", "M2 inferior", "A2", "P2", "SCA", "AICA", "PICA")


def _line_segments(lines: list[Centreline], to_volume) -> tuple[np.ndarray, np.ndarray]:
    """Segments (n, 10) in volume mm, with path lengths where brightness goes."""
    rows, classes = [], []
    for line in lines:
        p = to_volume(line.points)
        rows.append(
            np.column_stack(
                [p[:-1], p[1:], line.radius[:-1], line.radius[1:], line.path[:-1], line.path[1:]]
            )
        )
        classes.append(line.classes)
    return np.vstack(rows), np.concatenate(classes).astype(np.uint8)


def _entry_path(lines: list[Centreline], to_volume) -> float:
    """Mean path length of the carotids and vertebrals where they enter the slab:
    inflow is fresh there, so paths count from it."""
    entries = []
    for line in lines:
        if line.name.endswith(("ICA", "vertebral")):
            inside = np.flatnonzero(to_volume(line.points)[:, 2] >= 0.0)
            entries.append(float(line.path[inside[0]]) if len(inside) else float(line.path[-1]))
    return float(np.mean(entries))


def _cortical_trunks(rng, lines, to_volume, rotation, entry) -> list[Stretch]:
    """Where the unlabelled trees start: the ends of M2, A2, P2 and the cerebellar
    arteries, fanning out over the surface the way cortical branches do, and side
    branches along M1 (temporal, perforators), A2 (frontopolar) and P2."""
    by_name = {line.name: line for line in lines}
    trunks: list[Stretch] = []

    def add(name, where: float, direction, radius_ratio):
        line = by_name[name]
        i = min(int(where * (len(line.points) - 1)), len(line.points) - 1)
        d = rotation @ (np.asarray(direction, float) / np.linalg.norm(direction))
        radius = float(line.radius[i] * radius_ratio)
        trunks.append((to_volume(line.points[i]), d, radius, float(line.path[i] - entry), 1.0))

    # (vessel, where along it, direction with x pointing outwards, radius ratio)
    fans = [
        ("M2 superior", 1.0, (0.3, 0.6, 0.8), 0.75),  # frontal
        ("M2 superior", 1.0, (0.3, -0.2, 1.0), 0.75),  # central
        ("M2 superior", 1.0, (0.3, -0.8, 0.6), 0.75),  # parietal
        ("M2 superior", 0.3, (0.2, 1.0, 0.2), 0.55),  # orbitofrontal
        ("M2 superior", 0.6, (0.4, 0.3, 0.8), 0.55),  # prefrontal
        ("M2 inferior", 1.0, (0.3, -1.0, 0.1), 0.75),  # posterior temporal
        ("M2 inferior", 1.0, (0.3, -0.5, -0.6), 0.75),  # temporal
        ("M2 inferior", 1.0, (0.2, -0.9, 0.5), 0.75),  # angular
        ("M2 inferior", 0.5, (0.5, 0.2, -0.6), 0.55),  # middle temporal
        ("M1", 0.45, (0.5, 0.6, -0.6), 0.45),  # anterior temporal
        ("M1", 0.2, (0.15, 0.0, 1.0), 0.18),  # lenticulostriate perforators
        ("M1", 0.35, (0.15, 0.0, 1.0), 0.18),
        ("M1", 0.5, (0.15, 0.0, 1.0), 0.18),
        ("A2", 1.0, (0.0, -0.3, 1.0), 0.85),  # pericallosal
        ("A2", 1.0, (0.1, 0.3, 1.0), 0.75),  # callosomarginal
        ("A2", 0.5, (0.1, 1.0, 0.3), 0.55),  # frontopolar
        ("P2", 1.0, (0.1, -1.0, 0.1), 0.8),  # calcarine
        ("P2", 1.0, (0.2, -0.6, 0.7), 0.8),  # parieto-occipital
        ("P2", 0.5, (0.6, -0.3, -0.3), 0.55),  # posterior temporal
    ]
    for side, s in (("left", -1.0), ("right", 1.0)):
        for vessel, where, (x, y, z), ratio in fans:
            spread = rng.normal(0.0, 0.25, 3)
            add(f"{side} {vessel}", where, np.array([s * x, y, z]) + spread, ratio)
        for vessel in ("SCA", "AICA", "PICA"):
            line = by_name[f"{side} {vessel}"]
            add(f"{side} {vessel}", 1.0, line.points[-1] - line.points[-3], 1.0)
    return trunks


def _territories(segments, classes, vessels, shape, spacing, blur) -> np.ndarray:
    """uint8 territory map: where the labelled tubes fill at least half a voxel,
    the class whose tube fills it most (one class per voxel)."""
    territories = np.zeros(shape, dtype=np.uint8)
    labelled = classes > 0
    if not labelled.any():
        return territories
    lo, hi = segment_boxes(segments[labelled], shape, spacing, blur)
    box_lo, box_hi = lo.min(axis=0), hi.max(axis=0)
    box = tuple(slice(int(a), int(b)) for a, b in zip(box_lo, box_hi, strict=True))
    best = np.zeros(tuple(int(n) for n in box_hi - box_lo), dtype=np.float32)
    label = np.zeros(best.shape, dtype=np.uint8)
    for number in np.unique(classes[labelled]):
        rows = segments[classes == number]
        c_lo, c_hi = segment_boxes(rows, shape, spacing, blur)
        c_lo, c_hi = c_lo.min(axis=0), c_hi.max(axis=0)
        fraction, _ = rasterise(rows, shape, spacing, blur, region=(c_lo, c_hi))
        part = tuple(
            slice(int(a - o), int(b - o)) for a, b, o in zip(c_lo, c_hi, box_lo, strict=True)
        )
        better = fraction > best[part]
        best[part][better] = fraction[better]
        label[part][better] = number
    # The same rule as `vessels` (and a subset of it, whatever the rounding).
    label[(best < 0.5) | (vessels[box] == 0)] = 0
    territories[box] = label
    return territories
