"""Crops and small heads: random vessel trees in a head-shaped background, the
look drawn per seed. This is the generator of versions 1-3, unchanged: the same
seed and arguments give the same bytes."""

from __future__ import annotations

import math

import numpy as np

from .fields import acquire, bias_field, ellipsoid_radius, smooth_noise, smoothstep, voxel_axes
from .phantom import DEFAULT_SHAPE, INT16_MAX, Phantom, phantom_affine
from .trees import Growth, Stretch, grow_trees
from .tubes import mask_of, rasterise, voxel_blur_mm


def make_crop_phantom(rng, seed: int, shape, spacing, field_of_view: str) -> Phantom:
    """A crop ("crop") or a small head in air ("head"); `rng` has already drawn
    the spacing and field of view, if they were drawn."""
    style = draw_style(rng, field_of_view)
    spacing_arr = np.asarray(spacing)
    head = draw_head(rng, shape, spacing_arr, field_of_view)

    tissue, brain = render_background(rng, shape, spacing_arr, head, style)
    segments = grow_vessels(rng, shape, spacing_arr, head, style)
    fraction, signal = rasterise(
        segments, shape, spacing_arr, voxel_blur_mm(spacing_arr), style["wall_darkening"]
    )
    mask = mask_of(fraction)

    # Partial-volume mix: vessel signal replaces the tissue it displaces.
    clean = tissue * (1.0 - fraction) + signal
    clean *= bias_field(rng, shape, spacing_arr, style)
    noisy = acquire(rng, clean, style)
    image = np.clip(np.rint(noisy), 0, INT16_MAX).astype(np.int16)

    style = {
        **style,
        "n_segments": len(segments),
        "vessel_fraction": float(mask.mean()),
        "head_fraction": float(brain.mean()),
    }
    return Phantom(
        image=image,
        mask=mask,
        affine=phantom_affine(shape, spacing),
        spacing=spacing,
        seed=int(seed),
        style=style,
        segments=segments,
        vessels=mask,
    )


def draw_spacing(rng) -> tuple[float, float, float]:
    # Clinical TOF-MRA is reconstructed at about 0.25-0.6 mm in-plane; the coarse
    # end makes most vessels one or two voxels wide, the hardest case to segment.
    in_plane = rng.uniform(0.28, 0.6)
    # Isotropic 3D acquisitions, or thicker slices as in most clinical protocols.
    slices = in_plane if rng.random() < 0.3 else rng.uniform(max(in_plane, 0.45), 0.8)
    return (round(in_plane, 4), round(in_plane, 4), round(slices, 4))


def draw_style(rng, field_of_view: str) -> dict:
    """Per-seed appearance. Ranges follow clinical TOF-MRA: tissue ~80-250,
    inflow 300-1100, Rician noise sigma ~3-15."""
    # Skewed towards dark tissue and bright inflow, the usual TOF look.
    tissue = math.exp(rng.uniform(math.log(80), math.log(250)))
    inflow = 300 + 800 * rng.beta(1.6, 1.0)
    if rng.random() < 0.15:  # poor inflow contrast (slow flow, saturated slab)
        inflow *= rng.uniform(0.45, 0.75)
    return {
        "field_of_view": field_of_view,
        "tissue_level": tissue,
        # grey matter relative to white matter, and the contrast's texture scale
        "grey_white_ratio": rng.uniform(0.8, 1.15),
        "texture_mm": rng.uniform(3.0, 10.0),
        "fine_texture": rng.uniform(0.08, 0.2),
        "csf_ratio": rng.uniform(0.3, 0.7),
        "csf_amount": rng.uniform(0.0, 0.2),
        "fat_level": rng.uniform(1.3, 2.5) * tissue,
        "n_fat_blobs": int(rng.integers(0, 3)),
        "inflow": inflow,
        # inflow signal decays with path length along the tree (saturation)
        "fade_mm": rng.uniform(30.0, 120.0),
        "fade_floor": rng.uniform(0.3, 0.7),
        "min_contrast": rng.uniform(1.2, 1.6),
        "n_trees": int(rng.integers(2, 7)),
        # A whole head has to fit the same matrix, so its trunks are narrower.
        "trunk_radius_mm": rng.uniform(1.0, 2.5)
        if field_of_view == "crop"
        else rng.uniform(0.8, 1.8),
        "min_radius_mm": rng.uniform(0.1, 0.2),
        "tortuosity": rng.uniform(0.05, 0.45),
        "branch_asymmetry": rng.uniform(0.3, 0.9),
        "vessel_volume": rng.uniform(0.02, 0.07),  # target fraction of the FOV / brain
        # Point-spread function (Gaussian sigma in voxels, in-plane and across
        # slices) beyond the voxel itself: TOF is usually acquired coarser than
        # it is reconstructed (zero-filled interpolation), so edges and noise
        # spread over 2-3 voxels.
        "psf_in_plane": rng.uniform(0.8, 1.4),
        "psf_slices": rng.uniform(0.4, 0.9),
        "bias_strength": rng.uniform(0.03, 0.3),
        "slab_ripple": rng.uniform(0.0, 0.12) if rng.random() < 0.4 else 0.0,
        "slab_mm": rng.uniform(12.0, 30.0),
        "noise_sigma": math.exp(rng.uniform(math.log(3.0), math.log(15.0))),
        # Laminar flow is slower, so more saturated, near the wall.
        "wall_darkening": rng.uniform(0.0, 0.5),
    }


def draw_head(rng, shape, spacing, field_of_view: str) -> dict:
    """An ellipsoidal head in mm. For a crop it is much larger than the FOV, with
    its edge occasionally cutting one side; for "head" it sits inside with air."""
    half = (np.asarray(shape) - 1) * spacing / 2.0
    centre = half.copy()
    if field_of_view == "head":
        radii = half * rng.uniform(0.72, 0.95, size=3)
        centre += (half - radii) * rng.uniform(-0.9, 0.9, size=3)
    else:
        radii = half * rng.uniform(1.8, 3.0, size=3)
        centre += half * rng.uniform(-0.3, 0.3, size=3)
        if rng.random() < 0.25:
            # Crop at the periphery: scalp, skull and maybe air enter on one side.
            axis = int(rng.integers(0, 3))
            side = rng.choice([-1.0, 1.0])
            edge = half[axis] + side * half[axis] * rng.uniform(0.4, 1.0)
            centre[axis] = edge - side * radii[axis]
    return {
        "centre": centre,
        "radii": radii,
        # layers as fractions of the radius, outside in
        "scalp": rng.uniform(0.04, 0.08),
        "skull": rng.uniform(0.04, 0.08),
        "csf": rng.uniform(0.01, 0.03),
    }


def head_radius(points, head) -> np.ndarray:
    """Normalised ellipsoid radius (1 = scalp surface) of points (..., 3) in mm."""
    return np.sqrt((((points - head["centre"]) / head["radii"]) ** 2).sum(axis=-1))


def render_background(rng, shape, spacing, head, style) -> tuple[np.ndarray, np.ndarray]:
    """Head-shaped tissue: brain with grey/white texture and CSF, a dark skull, a
    bright fatty scalp, air outside. Returns (tissue intensities, brain mask)."""
    axes = voxel_axes(shape, spacing)
    # A lumpy rather than perfectly ellipsoidal head.
    rho = ellipsoid_radius(axes, head["centre"], head["radii"])
    rho *= 1.0 + 0.02 * smooth_noise(rng, shape, spacing, 25.0)
    edge = float(spacing.mean() / head["radii"].mean())  # one voxel, in units of rho
    inner_scalp = 1.0 - head["scalp"]
    inner_skull = inner_scalp - head["skull"]
    inner_csf = inner_skull - head["csf"]
    in_head = smoothstep(1.0 - rho, edge)
    in_skull = smoothstep(inner_scalp - rho, edge)
    in_csf = smoothstep(inner_skull - rho, edge)
    in_brain = smoothstep(inner_csf - rho, edge)

    level = float(style["tissue_level"])
    csf_level = level * float(style["csf_ratio"])
    # Grey/white matter: two levels blended by a smooth random field.
    grey = 1.0 / (1.0 + np.exp(-3.0 * smooth_noise(rng, shape, spacing, style["texture_mm"])))
    brain = level * (1.0 + (style["grey_white_ratio"] - 1.0) * grey)
    brain *= 1.0 + style["fine_texture"] * smooth_noise(rng, shape, spacing, 1.2)
    # Sulcal CSF: the top tail of another smooth field.
    sulci = smooth_noise(rng, shape, spacing, 4.0)
    csf_weight = np.clip((sulci - (2.5 - 8.0 * style["csf_amount"])) * 2.0, 0.0, 1.0)
    brain = brain * (1.0 - csf_weight) + csf_level * csf_weight

    scalp = style["fat_level"] * (1.0 + 0.1 * smooth_noise(rng, shape, spacing, 6.0))
    skull = 0.3 * level
    tissue = in_head * (
        scalp * (1.0 - in_skull)
        + in_skull * (skull * (1.0 - in_csf) + in_csf * (csf_level * (1.0 - in_brain)))
    )
    tissue += in_brain * brain

    # Bright non-vessel structures (orbital / skull-base fat) that must not be
    # labelled as vessel.
    extent = (np.asarray(shape) - 1) * spacing
    for _ in range(style["n_fat_blobs"]):
        centre = rng.uniform(0, 1, size=3) * extent
        radii = rng.uniform(1.5, 5.0, size=3)
        blob_rho = ellipsoid_radius(axes, centre, radii)
        weight = smoothstep(1.0 - blob_rho, 3.0 * float(spacing.mean() / radii.mean())) * in_head
        fat = style["fat_level"] * float(rng.uniform(0.7, 1.1))
        tissue = tissue * (1.0 - weight) + fat * weight
    return tissue, in_brain


def grow_vessels(rng, shape, spacing, head, style) -> np.ndarray:
    """Random trees: trunks enter through the faces (crop) or from the skull base
    and brain surface (head) and grow until the vessel volume target is met."""
    extent = (np.asarray(shape) - 1) * spacing
    if style["field_of_view"] == "head":
        brain_radii = head["radii"] * (1.0 - head["scalp"] - head["skull"] - head["csf"])
        target_volume = style["vessel_volume"] * 4.0 / 3.0 * math.pi * float(np.prod(brain_radii))
    else:
        target_volume = style["vessel_volume"] * float(np.prod(extent))
    min_radius = style["min_radius_mm"]

    def brightness(path_mm: np.ndarray, gain: float) -> np.ndarray:
        fade = style["fade_floor"] + (1 - style["fade_floor"]) * np.exp(-path_mm / style["fade_mm"])
        return np.maximum(
            style["inflow"] * gain * fade, style["min_contrast"] * style["tissue_level"]
        )

    def new_tree(index: int) -> Stretch:
        position, direction = draw_root(rng, extent, head, style["field_of_view"])
        radius = style["trunk_radius_mm"]
        if index >= 2:  # later trees are thinner, but not born too thin to grow
            radius = max(radius * rng.uniform(0.2, 0.6), 3.0 * min_radius)
        return position, direction, radius, 0.0, rng.uniform(0.85, 1.0)

    def outside(points, margin: float = 2.0) -> np.ndarray:
        return left(points, extent, head, style, margin)

    trunks = [new_tree(i) for i in range(style["n_trees"])]
    growth = Growth(
        outside=outside,
        extent=extent,
        brightness=brightness,
        target_volume=target_volume,
        # A cap keeps rendering time in check (about 10000 for the default shape).
        max_segments=max(500, int(10000 * np.prod(shape) / np.prod(DEFAULT_SHAPE))),
        min_radius=min_radius,
        tortuosity=style["tortuosity"],
        branch_asymmetry=style["branch_asymmetry"],
        new_tree=new_tree,
    )
    return grow_trees(rng, trunks, growth)


def draw_root(rng, extent, head, field_of_view) -> tuple[np.ndarray, np.ndarray]:
    """Where a trunk enters, and its direction. In a small head, large trunks rise
    from the skull base and others dive in from the brain surface; in a crop they
    enter through a face, mostly from below."""
    if field_of_view == "head":
        centre, radii = head["centre"], head["radii"]
        if rng.random() < 0.5:
            offset = rng.uniform(-0.35, 0.35, size=3) * radii
            offset[2] = -0.6 * radii[2]
            position = centre + offset
            direction = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.4, size=3)
        else:
            outward = rng.standard_normal(3)
            outward /= np.linalg.norm(outward)
            position = centre + 0.8 * outward * radii
            direction = -outward + rng.normal(0, 0.5, size=3)
    else:
        position = rng.uniform(0.1, 0.9, size=3) * extent
        inward = np.zeros(3)
        face = rng.choice(["bottom", "side", "side", "bottom", "bottom", "top"])
        if face == "bottom":
            position[2], inward[2] = 0.0, 1.0
        elif face == "top":
            position[2], inward[2] = extent[2], -1.0
        else:
            axis = int(rng.integers(0, 2))
            at_start = rng.random() < 0.5
            position[axis] = 0.0 if at_start else extent[axis]
            inward[axis] = 1.0 if at_start else -1.0
        direction = inward + rng.normal(0, 0.5, size=3)
    return position, direction / np.linalg.norm(direction)


def left(points, extent, head, style, margin: float = 2.0) -> np.ndarray:
    """Which points (n, 3) lie outside the brain or outside the volume (plus a
    margin, so that vessels run out of the image rather than stop at its face)."""
    brain = 1.0 - head["scalp"] - head["skull"] - head["csf"]
    outside = head_radius(points, head) > brain - 0.02
    if style["field_of_view"] == "head":
        return outside
    return outside | np.any((points < -margin) | (points > extent + margin), axis=1)
