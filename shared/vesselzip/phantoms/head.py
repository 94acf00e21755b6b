"""The anatomy of a whole head around the arteries, in millimetres of the head
frame (origin at the Circle of Willis, x right, y anterior, z superior): scalp
(skin, subcutaneous fat), skull with marrow, CSF, grey and white matter, the skull
base with the orbits and air sinuses, brainstem, ventricles and dural sinuses.

Everything here is evaluated on a coarse grid (about 1 mm) and interpolated up:
the point-spread function blurs these edges anyway, and it keeps a 512x512x160
volume fast. Vessels are drawn at full resolution elsewhere."""

from __future__ import annotations

import numpy as np

from .fields import smooth_noise, smoothstep, upsample_fast


def draw_anatomy(rng) -> dict:
    """Head size and layer thicknesses (mm), drawn per seed."""
    return {
        # Scalp ellipsoid: centre above and behind the Circle of Willis; the part
        # below its centre is taller (face and neck are not a half-ellipsoid).
        "centre": np.array([0.0, rng.uniform(-16.0, -8.0), rng.uniform(18.0, 26.0)]),
        "radii": np.array(
            [rng.uniform(68.0, 80.0), rng.uniform(86.0, 100.0), rng.uniform(95.0, 108.0)]
        ),
        "lower_stretch": rng.uniform(1.3, 1.5),
        "skin": rng.uniform(1.5, 2.5),
        "fat": rng.uniform(2.0, 6.0),
        "skull": rng.uniform(5.0, 8.0),
        "csf": rng.uniform(1.5, 4.0),
        # skull-base floor (z, mm) under the middle, anterior and posterior fossae
        "middle_fossa": rng.uniform(-24.0, -18.0),
        "anterior_fossa": rng.uniform(2.0, 8.0),
        "posterior_fossa": rng.uniform(-46.0, -38.0),
        "brainstem_radius": rng.uniform(11.0, 14.0),
        "ventricle_size": rng.uniform(0.7, 1.4),
    }


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def scalp_depth(x, y, z, anatomy) -> np.ndarray:
    """Depth below the scalp surface in mm (negative outside the head), from the
    normalised ellipsoid radius and its gradient (exact on the surface)."""
    # Plain floats keep float32 grids in float32.
    cx, cy, cz = (float(v) for v in anatomy["centre"])
    rx, ry, rz = (float(v) for v in anatomy["radii"])
    low = rz * float(anatomy["lower_stretch"])
    inv_rz = np.where(z < cz, np.float32(1.0 / low), np.float32(1.0 / rz))
    qx, qy, qz = (x - cx) / rx, (y - cy) / ry, (z - cz) * inv_rz
    rho = np.sqrt(qx * qx + qy * qy + qz * qz) + 1e-6
    gradient = np.sqrt((qx / rx) ** 2 + (qy / ry) ** 2 + (qz * inv_rz) ** 2) / rho + 1e-9
    return (1.0 - rho) / gradient


def skull_base(x, y, anatomy) -> np.ndarray:
    """Height (z, mm) of the floor of the cranial cavity: the anterior fossa over
    the orbits, the middle fossae under the temporal lobes, the sella between
    them, the posterior fossa under the cerebellum."""
    middle = anatomy["middle_fossa"]
    floor = middle + (anatomy["anterior_fossa"] - middle) * _sigmoid((y - 22.0) / 4.0)
    floor = floor + (anatomy["posterior_fossa"] - middle) * _sigmoid((-y - 22.0) / 6.0)
    sella = (
        _sigmoid((14.0 - np.abs(x)) / 2.5) * _sigmoid((y + 6.0) / 2.5) * _sigmoid((24.0 - y) / 2.5)
    )
    return floor + (-10.0 - floor) * sella


def brainstem_depth(x, y, z, anatomy) -> np.ndarray:
    """Depth inside the brainstem and upper cord (mm), a column leaning back as it
    descends through the foramen magnum, thinning from pons to cord."""
    axis_y = -24.0 + 0.15 * np.minimum(z, 5.0)
    radius = anatomy["brainstem_radius"] * np.clip(0.55 + 0.45 * (z + 50.0) / 35.0, 0.5, 1.0)
    radius = np.where(z > 8.0, radius * np.clip(1.0 - (z - 8.0) / 12.0, 0.0, 1.0), radius)
    return radius - np.hypot(x, (y - axis_y) * 0.9)


def brain_depth(x, y, z, anatomy) -> np.ndarray:
    """Depth inside the brain (mm; negative outside): under the CSF layer of the
    skull, above the skull base, or inside the brainstem."""
    shell = anatomy["skin"] + anatomy["fat"] + anatomy["skull"] + anatomy["csf"]
    cavity = np.minimum(scalp_depth(x, y, z, anatomy) - shell, z - skull_base(x, y, anatomy) - 2.0)
    return np.maximum(cavity, brainstem_depth(x, y, z, anatomy))


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    return np.sqrt(
        ((x - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((z - centre[2]) / radii[2]) ** 2
    )


def render_tissue(rng, coords, grid_spacing, anatomy, style) -> tuple[np.ndarray, np.ndarray]:
    """Stationary-tissue signal on the coarse grid whose voxel centres are at head
    coordinates `coords` (x, y, z arrays). Returns (tissue, brain weight)."""
    x, y, z = coords
    shape = x.shape
    edge = float(np.mean(grid_spacing))  # one coarse voxel, in mm
    level = float(style["tissue_level"])

    def ramp(depth):  # 0 outside, 1 inside, one coarse voxel wide
        return smoothstep(depth, edge)

    depth = scalp_depth(x, y, z, anatomy)
    depth += 1.2 * smooth_noise(rng, shape, grid_spacing, 30.0, upsample_fast)  # a lumpy head
    skin, fat, skull = anatomy["skin"], anatomy["fat"], anatomy["skull"]
    in_head = ramp(depth)
    in_fat = ramp(depth - skin)
    in_skull = ramp(depth - skin - fat)
    in_marrow = ramp(depth - skin - fat - 0.3 * skull) * ramp(skin + fat + 0.7 * skull - depth)
    in_cavity = ramp(depth - skin - fat - skull)

    floor = skull_base(x, y, anatomy)
    above_floor = ramp(z - floor)
    stem = ramp(brainstem_depth(x, y, z, anatomy))
    brain = np.maximum(
        ramp(depth - skin - fat - skull - anatomy["csf"]) * ramp(z - floor - 2.0), stem
    )
    csf_space = np.maximum(in_cavity * above_floor, ramp(brainstem_depth(x, y, z, anatomy) + 3.0))

    # Brain: white matter, a grey ribbon under the surface, deep grey nuclei,
    # texture, and sulcal CSF near the surface.
    surface_depth = np.minimum(depth - skin - fat - skull - anatomy["csf"], z - floor)
    grey = np.clip(1.0 - surface_depth / 3.5, 0.0, 1.0)
    for side in (-1.0, 1.0):
        nucleus = _ellipsoid(x, y, z, (side * 20.0, 4.0, 12.0), (9.0, 16.0, 10.0))
        grey = np.maximum(grey, np.clip(1.5 - nucleus, 0.0, 1.0))
    grey = np.clip(
        grey + 0.3 * smooth_noise(rng, shape, grid_spacing, style["texture_mm"], upsample_fast),
        0,
        1,
    )
    matter = level * (1.0 + (style["grey_white_ratio"] - 1.0) * grey)
    csf_level = level * style["csf_ratio"]
    sulci = smooth_noise(rng, shape, grid_spacing, 5.0, upsample_fast)
    sulcal = np.clip((sulci - 1.6 + 0.6 * grey) * 1.5, 0.0, 1.0) * (surface_depth < 10.0)
    csf = np.maximum(sulcal, _csf_spaces(x, y, z, anatomy))
    matter = matter * (1.0 - csf) + csf_level * csf

    # Below the floor of the skull: bone plate, then muscle with fat and air.
    below = (1.0 - above_floor) * in_cavity
    plate = ramp(z - floor + 5.0)
    patches = smooth_noise(rng, shape, grid_spacing, 8.0, upsample_fast)
    base = level * style["muscle_ratio"] * (1.0 + 0.15 * patches)
    base = np.where(patches > 1.0, level * style["fat_ratio"] * 0.8, base)
    base = np.where(patches < -1.3, level * style["skull_ratio"], base)
    base = base * (1.0 - plate) + level * style["skull_ratio"] * plate
    air = np.zeros(shape, dtype=np.float32)
    for centre, radii in (
        ((0.0, 18.0, -22.0), (13.0, 11.0, 9.0)),  # sphenoid sinus
        ((0.0, 35.0, -48.0), (11.0, 16.0, 10.0)),  # nasopharynx
        ((0.0, 45.0, -15.0), (9.0, 14.0, 12.0)),  # ethmoid cells, nasal cavity
    ):
        air = np.maximum(air, ramp((1.0 - _ellipsoid(x, y, z, centre, radii)) * 8.0))
    base *= 1.0 - air

    # Outside in: skin, fat, skull (with fatty marrow), the cranial cavity.
    fat_level = level * style["fat_ratio"] * (1.0 + 0.08 * patches)
    skull_level = level * style["skull_ratio"]
    skull_level = skull_level * (1.0 - in_marrow) + level * style["marrow_ratio"] * in_marrow
    cavity = csf_space * (csf_level * (1.0 - brain) + matter * brain)
    cavity += below * base
    # The neck has no skull: muscle takes the bony shell's place well below the floor.
    neck = ramp(floor - 8.0 - z)
    shell = skull_level * (1.0 - neck) + level * style["muscle_ratio"] * neck
    inside = shell * (1.0 - in_cavity) + in_cavity * cavity
    tissue = in_head * (
        level * style["skin_ratio"] * (1.0 - in_fat)
        + in_fat * (fat_level * (1.0 - in_skull) + in_skull * inside)
    )

    # Orbits: bright fat around a dark eyeball, under the anterior fossa.
    for side in (-1.0, 1.0):
        orbit = ramp(
            (1.0 - _ellipsoid(x, y, z, (side * 31.0, 55.0, -4.0), (15.0, 20.0, 14.0))) * 12.0
        )
        globe = ramp(
            (1.0 - _ellipsoid(x, y, z, (side * 32.0, 66.0, -2.0), (12.0, 12.0, 12.0))) * 10.0
        )
        orbit_level = level * style["fat_ratio"] * (1.0 - globe) + 0.35 * level * globe
        tissue = tissue * (1.0 - orbit) + orbit * orbit_level
    return tissue.astype(np.float32), (brain * in_head).astype(np.float32)


def _csf_spaces(x, y, z, anatomy) -> np.ndarray:
    """Ventricles, the interhemispheric fissure and the basal cisterns around the
    Circle of Willis, as CSF weights 0-1."""
    size = anatomy["ventricle_size"]
    csf = np.zeros(x.shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        lateral = _ellipsoid(x, y, z, (side * 9.0, -4.0, 30.0), (5.0 * size, 26.0, 8.0 * size))
        csf = np.maximum(csf, np.clip((1.0 - lateral) * 4.0, 0.0, 1.0))
        # Sylvian fissure: where the middle cerebral artery runs.
        sylvian = _ellipsoid(x, y, z, (side * 36.0, 2.0, 8.0), (14.0, 16.0, 4.0))
        csf = np.maximum(csf, np.clip((1.0 - sylvian) * 2.0, 0.0, 1.0))
    third = _ellipsoid(x, y, z, (0.0, -8.0, 12.0), (2.0 * size, 12.0, 7.0))
    cistern = _ellipsoid(x, y, z, (0.0, 4.0, 0.0), (20.0, 22.0, 7.0))
    fissure = np.clip(1.5 - np.abs(x), 0.0, 1.0) * (z > 12.0)
    for part in (third, cistern):
        csf = np.maximum(csf, np.clip((1.0 - part) * 3.0, 0.0, 1.0))
    return np.maximum(csf, fissure.astype(np.float32))


def dural_sinuses(anatomy) -> list[tuple[np.ndarray, float]]:
    """Centrelines (head frame, mm) and radii of the main venous sinuses: superior
    sagittal, straight, transverse and sigmoid down to the jugular bulbs. They run
    just inside the skull."""
    c, r = anatomy["centre"], anatomy["radii"]
    inset = anatomy["skin"] + anatomy["fat"] + anatomy["skull"] + 2.5
    torcula_z = anatomy["posterior_fossa"] + 30.0

    def on_wall(direction) -> np.ndarray:
        direction = direction / np.linalg.norm(direction)
        scale = r.copy()
        if direction[2] < 0:
            scale[2] = scale[2] * anatomy["lower_stretch"]
        reach = 1.0 / np.linalg.norm(direction / scale)
        return c + direction * (reach - inset)

    angles = np.radians(np.linspace(60.0, 200.0, 40))
    sagittal = np.array([on_wall(np.array([0.0, np.cos(a), np.sin(a)])) for a in angles])
    sagittal = sagittal[sagittal[:, 2] > torcula_z]
    torcula = sagittal[-1] if len(sagittal) else np.array([0.0, c[1] - r[1] + inset, torcula_z])
    sinuses = [(sagittal, 4.0)] if len(sagittal) > 1 else []
    sinuses.append((np.array([[0.0, -30.0, 18.0], [0.0, -50.0, 10.0], torcula]), 2.5))
    for side in (-1.0, 1.0):
        sweep = np.radians(np.linspace(180.0, 125.0, 12))
        transverse = [
            on_wall(np.array([side * np.sin(a), np.cos(a), (torcula_z - c[2]) / r[2]]))
            for a in sweep
        ]
        lateral = transverse[-1]
        sigmoid = [
            lateral + np.array([-side * 3.0, 6.0, -12.0]),
            lateral + np.array([-side * 6.0, 10.0, -26.0]),
            lateral + np.array([-side * 8.0, 12.0, -60.0]),
        ]
        sinuses.append((np.vstack([torcula, *transverse, *sigmoid]), 4.0))
    return sinuses
