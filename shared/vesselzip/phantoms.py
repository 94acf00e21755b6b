"""TOF-MRA-like cerebrovascular phantoms with exact vessel masks.

Nothing is downloaded: every volume is drawn from a seed. A phantom is a tree of
tubes (decreasing radii, bright inflow signal fading along the tree) rendered with
partial-volume edges into a head-shaped background with tissue texture, a bias
field, a point-spread function and Rician noise, stored as int16 like a clinical
scan. The look (field of view, tissue levels, contrast, noise, blur,
tortuosity...) is drawn per seed as well, so a model trained on many seeds does
not learn a single appearance.

The mask is exact for the geometry: a voxel is vessel when at least half of it
is inside a tube (for tubes wider than a voxel: when its centre is inside).
Twigs with a radius under about a third of a voxel never fill half a voxel, so they
show faintly in the image but not in the mask, as on a real annotation. The
image is further blurred by the scanner's point-spread function; the mask is not.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage, special
from scipy.signal import lfilter

from vesselzip.errors import VesselzipError

#: Bump when the same seed would give different volumes.
GENERATOR_VERSION = "3"
DEFAULT_SHAPE = (128, 128, 96)
#: Typical TOF-MRA voxel: fine in-plane, thicker slices (the paper's model
#: resamples to 0.3542 mm isotropic).
DEFAULT_SPACING = (0.35, 0.35, 0.5)
FIELDS_OF_VIEW = ("crop", "head")
INT16_MAX = 32767


@dataclass
class Phantom:
    image: np.ndarray  # int16, (x, y, z)
    mask: np.ndarray  # uint8 0/1, exact vessel mask
    affine: np.ndarray  # 4x4 float64, voxel -> RAS mm
    spacing: tuple[float, float, float]  # mm
    seed: int = 0
    #: The appearance drawn for this seed (JSON-friendly), for the record.
    style: dict = field(default_factory=dict)
    #: The tubes, one row each: start xyz, end xyz (mm from the first voxel's
    #: centre), start/end radius (mm), start/end brightness. `vessel_mask` turns
    #: them (or an altered copy) back into the mask.
    segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 10)))


def phantom_affine(shape, spacing) -> np.ndarray:
    """Diagonal voxel-to-RAS affine (i -> R, j -> A, k -> S) centred on the volume."""
    spacing = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing
    return affine


def make_phantom(
    seed: int,
    shape=DEFAULT_SHAPE,
    spacing=DEFAULT_SPACING,
    *,
    field_of_view: str | None = None,
) -> Phantom:
    """Draw one phantom. Same seed (and arguments) -> same bytes.

    `spacing=None` draws a realistic anisotropic spacing from the seed.
    `field_of_view` is "crop" (tissue fills the volume, like a Circle of Willis
    crop), "head" (a head with air around it, like a whole-head scan) or None to
    draw it from the seed.
    """
    shape = _check_shape(shape)
    rng = np.random.default_rng(seed)
    if spacing is None:
        spacing = _draw_spacing(rng)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise VesselzipError(f"spacing must be three positive numbers in mm, got {spacing}")
    if field_of_view is None:
        field_of_view = "crop" if rng.random() < 0.65 else "head"
    if field_of_view not in FIELDS_OF_VIEW:
        raise VesselzipError(
            f"field_of_view must be one of {FIELDS_OF_VIEW}, got {field_of_view!r}"
        )

    style = _draw_style(rng, field_of_view)
    spacing_arr = np.asarray(spacing)
    head = _draw_head(rng, shape, spacing_arr, field_of_view)

    tissue, brain = _render_background(rng, shape, spacing_arr, head, style)
    segments = _grow_vessels(rng, shape, spacing_arr, head, style)
    fraction, signal = _rasterise(
        segments, shape, spacing_arr, _voxel_blur_mm(spacing_arr), style["wall_darkening"]
    )
    mask = _mask_of(fraction)

    # Partial-volume mix: vessel signal replaces the tissue it displaces.
    clean = tissue * (1.0 - fraction) + signal
    clean *= _bias_field(rng, shape, spacing_arr, style)
    noisy = _acquire(rng, clean, style)
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
    )


def vessel_mask(segments: np.ndarray, shape, spacing) -> np.ndarray:
    """The exact mask (uint8 0/1) of tubes given as `Phantom.segments` rows, by the
    same rule as the phantom's own mask: vessel where at least half the voxel is
    inside a tube. With a phantom's segments, shape and spacing it reproduces
    `phantom.mask`; with altered ones it shows how much the mask moves when the
    geometry does."""
    spacing = np.asarray(spacing, dtype=np.float64)
    fraction, _ = _rasterise(
        np.asarray(segments), _check_shape(shape), spacing, _voxel_blur_mm(spacing)
    )
    return _mask_of(fraction)


def _voxel_blur_mm(spacing: np.ndarray) -> float:
    """A voxel averages the object over its own box: a Gaussian of the same
    variance (sigma = size / sqrt(12)) stands in for it."""
    return float(np.prod(spacing) ** (1 / 3)) / math.sqrt(12.0)


def _mask_of(fraction: np.ndarray) -> np.ndarray:
    return (fraction >= 0.5).astype(np.uint8)


def write_phantom_dataset(
    outdir,
    n: int,
    *,
    seed: int = 0,
    shape=DEFAULT_SHAPE,
    spacing=None,
    progress=None,
) -> Path:
    """Write `n` phantoms as a MONAI decathlon-style dataset and return dataset.json.

    Volume i is `make_phantom(seed + i, shape, spacing)`, saved as
    imagesTr/phantom_{i:03d}.nii.gz (int16) and labelsTr/phantom_{i:03d}.nii.gz
    (uint8). `spacing=None` (the default) lets each volume draw its own spacing so
    the set is varied. `progress`, if given, is called with (i, phantom) after each
    volume is written.
    """
    if n < 1:
        raise VesselzipError(f"n must be at least 1, got {n}")
    shape = _check_shape(shape)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise VesselzipError(f"{outdir} exists and is not a directory")
    images_dir = outdir / "imagesTr"
    labels_dir = outdir / "labelsTr"
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
        labels_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VesselzipError(f"cannot create {outdir}: {exc.strerror}") from exc

    training = []
    for i in range(n):
        phantom = make_phantom(seed + i, shape, spacing)
        name = f"phantom_{i:03d}.nii.gz"
        _save_nifti(phantom.image, phantom.affine, images_dir / name)
        _save_nifti(phantom.mask, phantom.affine, labels_dir / name)
        training.append(
            {
                "image": f"./imagesTr/{name}",
                "label": f"./labelsTr/{name}",
                "seed": phantom.seed,
                "spacing": list(phantom.spacing),
                "field_of_view": phantom.style["field_of_view"],
            }
        )
        if progress is not None:
            progress(i, phantom)

    dataset = {
        "name": "vesselzip-phantoms",
        "description": "Synthetic TOF-MRA-like cerebrovascular volumes with exact vessel masks",
        "reference": "vesselzip.phantoms",
        "tensorImageSize": "3D",
        "modality": {"0": "MRA"},
        "labels": {"0": "background", "1": "vessel"},
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
        "generator": {
            "name": "vesselzip.phantoms",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "seeds": [seed + i for i in range(n)],
            "shape": list(shape),
            "spacing": None if spacing is None else [float(s) for s in spacing],
        },
    }
    path = outdir / "dataset.json"
    path.write_text(json.dumps(dataset, indent=2) + "\n")
    return path


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)  # scanner
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    img.header.set_data_dtype(array.dtype)
    nib.save(img, path)


def _check_shape(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise VesselzipError(f"shape must be three sizes of at least 8 voxels, got {shape}")
    return shape


# --------------------------------------------------------------------------- style


def _draw_spacing(rng) -> tuple[float, float, float]:
    # Clinical TOF-MRA is reconstructed at about 0.25-0.6 mm in-plane; the coarse
    # end makes most vessels one or two voxels wide, the hardest case to segment.
    in_plane = rng.uniform(0.28, 0.6)
    # Isotropic 3D acquisitions, or thicker slices as in most clinical protocols.
    slices = in_plane if rng.random() < 0.3 else rng.uniform(max(in_plane, 0.45), 0.8)
    return (round(in_plane, 4), round(in_plane, 4), round(slices, 4))


def _draw_style(rng, field_of_view: str) -> dict:
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


# ---------------------------------------------------------------------- geometry


def _voxel_axes(shape, spacing) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm along each axis, broadcastable to 3D."""
    axes = []
    for d, (n, s) in enumerate(zip(shape, spacing, strict=True)):
        view = [1, 1, 1]
        view[d] = n
        axes.append((np.arange(n, dtype=np.float32) * np.float32(s)).reshape(view))
    return axes


def _draw_head(rng, shape, spacing, field_of_view: str) -> dict:
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


def _head_radius(points, head) -> np.ndarray:
    """Normalised ellipsoid radius (1 = scalp surface) of points (..., 3) in mm."""
    return np.sqrt((((points - head["centre"]) / head["radii"]) ** 2).sum(axis=-1))


# -------------------------------------------------------------------- background


def _smooth_noise(rng, shape, spacing, feature_mm: float) -> np.ndarray:
    """Zero-mean, unit-std float32 random field with blobs about `feature_mm`
    across, drawn on a coarse grid and interpolated up (much faster than filtering
    at full resolution)."""
    step = np.maximum(feature_mm / 2.0 / np.asarray(spacing), 1.0)
    coarse_shape = tuple(int(math.ceil(n / s)) + 2 for n, s in zip(shape, step, strict=True))
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    # Separable linear interpolation: one small matrix product per axis.
    up = [_linear_upsampling(n, c) for n, c in zip(shape, coarse_shape, strict=True)]
    c0, c1, c2 = coarse_shape
    field = (up[0] @ coarse.astype(np.float32).reshape(c0, c1 * c2)).reshape(-1, c1, c2)
    field = up[1] @ field
    field = (field.reshape(-1, c2) @ up[2].T).reshape(shape)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def _linear_upsampling(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix interpolating n_in samples linearly to n_out."""
    position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.minimum(np.floor(position).astype(int), n_in - 2)
    weight = position - low
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    matrix[np.arange(n_out), low] = 1.0 - weight
    matrix[np.arange(n_out), low + 1] = weight
    return matrix


def _smoothstep(x: np.ndarray, width: float) -> np.ndarray:
    """0 below -width/2, 1 above +width/2, linear in between (a partial-volume edge)."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def _render_background(rng, shape, spacing, head, style) -> tuple[np.ndarray, np.ndarray]:
    """Head-shaped tissue: brain with grey/white texture and CSF, a dark skull, a
    bright fatty scalp, air outside. Returns (tissue intensities, brain mask)."""
    axes = _voxel_axes(shape, spacing)
    # A lumpy rather than perfectly ellipsoidal head.
    rho = _ellipsoid_radius(axes, head["centre"], head["radii"])
    rho *= 1.0 + 0.02 * _smooth_noise(rng, shape, spacing, 25.0)
    edge = float(spacing.mean() / head["radii"].mean())  # one voxel, in units of rho
    inner_scalp = 1.0 - head["scalp"]
    inner_skull = inner_scalp - head["skull"]
    inner_csf = inner_skull - head["csf"]
    in_head = _smoothstep(1.0 - rho, edge)
    in_skull = _smoothstep(inner_scalp - rho, edge)
    in_csf = _smoothstep(inner_skull - rho, edge)
    in_brain = _smoothstep(inner_csf - rho, edge)

    level = float(style["tissue_level"])
    csf_level = level * float(style["csf_ratio"])
    # Grey/white matter: two levels blended by a smooth random field.
    grey = 1.0 / (1.0 + np.exp(-3.0 * _smooth_noise(rng, shape, spacing, style["texture_mm"])))
    brain = level * (1.0 + (style["grey_white_ratio"] - 1.0) * grey)
    brain *= 1.0 + style["fine_texture"] * _smooth_noise(rng, shape, spacing, 1.2)
    # Sulcal CSF: the top tail of another smooth field.
    sulci = _smooth_noise(rng, shape, spacing, 4.0)
    csf_weight = np.clip((sulci - (2.5 - 8.0 * style["csf_amount"])) * 2.0, 0.0, 1.0)
    brain = brain * (1.0 - csf_weight) + csf_level * csf_weight

    scalp = style["fat_level"] * (1.0 + 0.1 * _smooth_noise(rng, shape, spacing, 6.0))
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
        blob_rho = _ellipsoid_radius(axes, centre, radii)
        weight = _smoothstep(1.0 - blob_rho, 3.0 * float(spacing.mean() / radii.mean())) * in_head
        fat = style["fat_level"] * float(rng.uniform(0.7, 1.1))
        tissue = tissue * (1.0 - weight) + fat * weight
    return tissue, in_brain


def _ellipsoid_radius(axes, centre, radii) -> np.ndarray:
    """Normalised radius (1 on the surface) of every voxel centre, float32."""
    squared = [
        ((a - float(c)) / float(r)) ** 2 for a, c, r in zip(axes, centre, radii, strict=True)
    ]
    return np.sqrt(squared[0] + squared[1] + squared[2])


def _bias_field(rng, shape, spacing, style) -> np.ndarray:
    """Smooth multiplicative coil sensitivity, plus the intensity ripple at slab
    boundaries of multi-slab TOF acquisitions."""
    bias = np.exp(float(style["bias_strength"]) * _smooth_noise(rng, shape, spacing, 60.0))
    if style["slab_ripple"] > 0:
        z = np.arange(shape[2]) * spacing[2]
        phase = rng.uniform(0, 2 * np.pi)
        ripple = 1.0 + style["slab_ripple"] * np.cos(2 * np.pi * z / style["slab_mm"] + phase)
        bias *= ripple.astype(np.float32)[None, None, :]
    return bias


def _acquire(rng, clean: np.ndarray, style) -> np.ndarray:
    """What the scanner reports: the complex signal plus white Gaussian noise in
    both channels, both blurred by the point-spread function (so the noise is
    correlated between neighbours, as on real zero-filled reconstructions), then
    the magnitude (Rician statistics). `noise_sigma` is the per-channel standard
    deviation after the blur."""
    psf = (style["psf_in_plane"], style["psf_in_plane"], style["psf_slices"])
    # White noise of std s comes out of the blur with std s * |kernel|_2.
    impulse = np.zeros((25, 25, 25), dtype=np.float32)
    impulse[12, 12, 12] = 1.0
    kernel_norm = float(np.sqrt((ndimage.gaussian_filter(impulse, psf) ** 2).sum()))
    white_sigma = np.float32(style["noise_sigma"] / kernel_norm)
    real = clean + white_sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    imaginary = white_sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    # Blurring is linear, so signal and noise of a channel are blurred together.
    return np.hypot(ndimage.gaussian_filter(real, psf), ndimage.gaussian_filter(imaginary, psf))


# ----------------------------------------------------------------------- vessels


#: A vessel stretch waiting to grow: position and direction (mm), radius (mm), path
#: length from its tree's root (mm) and brightness gain.
_Stretch = tuple[np.ndarray, np.ndarray, float, float, float]


def _grow_vessels(rng, shape, spacing, head, style) -> np.ndarray:
    """Grow vessel trees as short straight segments.

    Returns an (n, 10) array: start xyz, end xyz (mm), start/end radius (mm),
    start/end brightness. Each tree starts as a trunk entering the volume and
    splits by Murray's law (r^3 = r1^3 + r2^3) with asymmetric children until the
    radius falls below the smallest vessel. Trees are grown breadth-first until
    the vessel volume target is met; branches still waiting then taper out
    rather than end bluntly.
    """
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

    def walk(position, direction, radius, path, gain, length, fade_out=False):
        """One unbranched stretch. Returns (segments, end state or None if it ended)."""
        step = min(max(2.0 * radius, 0.5), 2.0)
        n_steps = max(1, int(math.ceil(length / step)))
        # Curvature is itself a random walk (AR(1)), giving smooth loops rather
        # than jitter; wide arteries bend more gently than small ones.
        tortuosity = style["tortuosity"] * rng.uniform(0.5, 1.5) / (0.5 + radius)
        curl = lfilter([tortuosity], [1.0, -0.8], rng.standard_normal((n_steps, 3)), axis=0)
        heading = direction + step * np.cumsum(curl, axis=0)
        heading /= np.linalg.norm(heading, axis=1, keepdims=True)
        points = position + step * np.vstack([np.zeros(3), np.cumsum(heading, axis=0)])
        if fade_out:
            radii = radius * np.linspace(1.0, 0.15, n_steps + 1)
        else:
            radii = radius * (1.0 - 0.01 * step) ** np.arange(n_steps + 1)  # gentle taper
        paths = path + step * np.arange(n_steps + 1)
        outside = _left(points, extent, head, style)
        ended = outside | (radii < min_radius)
        last = int(np.argmax(ended)) if ended.any() else n_steps
        if last == 0:
            return None, None
        points, radii, paths = points[: last + 1], radii[: last + 1], paths[: last + 1]
        if outside[last] and np.all((points[last] >= 0) & (points[last] <= extent)):
            # Stopped at the brain surface inside the image: fade out, not a stump.
            k = min(last + 1, 4)
            radii[-k:] *= np.linspace(1.0, 0.2, k)
        shine = brightness(paths, gain)
        segments = np.column_stack(
            [points[:-1], points[1:], radii[:-1], radii[1:], shine[:-1], shine[1:]]
        )
        if ended[last] or fade_out:
            return segments, None
        return segments, (points[-1], heading[-1], radii[-1], paths[-1], gain)

    def new_tree(index: int) -> _Stretch:
        position, direction = _draw_root(rng, extent, head, style["field_of_view"])
        radius = style["trunk_radius_mm"]
        if index >= 2:  # later trees are thinner, but not born too thin to grow
            radius = max(radius * rng.uniform(0.2, 0.6), 3.0 * min_radius)
        return position, direction, radius, 0.0, rng.uniform(0.85, 1.0)

    def volume_in_view(segments) -> float:
        in_view = ~_left(segments[:, 3:6], extent, head, style, margin=0.0)
        length = np.linalg.norm(segments[:, 3:6] - segments[:, 0:3], axis=1)
        return float(np.sum(math.pi * segments[:, 7] ** 2 * length * in_view))

    queue: deque[_Stretch] = deque(new_tree(i) for i in range(style["n_trees"]))
    n_trees = style["n_trees"]
    branches = []
    n_segments, vessel_volume = 0, 0.0
    # A cap keeps rendering time in check (about 10000 for the default shape).
    max_segments = max(500, int(10000 * np.prod(shape) / np.prod(DEFAULT_SHAPE)))
    max_trees = 80
    while vessel_volume < target_volume and n_segments < max_segments:
        if not queue:
            # Trees that soon left a crop leave the volume too empty: add another.
            if n_trees >= max_trees:
                break
            queue.append(new_tree(n_trees))
            n_trees += 1
        state = queue.popleft()
        length = rng.uniform(0.5, 1.5) * min(max(12.0 * state[2], 2.0), 30.0)
        segments, end = walk(*state, length)
        if segments is None:
            continue
        branches.append(segments)
        n_segments += len(segments)
        vessel_volume += volume_in_view(segments)
        if end is None:
            continue
        # Bifurcation: the larger child bends less.
        position, direction, radius, path, gain = end
        alpha = rng.uniform(style["branch_asymmetry"] * 0.4, 1.0)
        big = radius / (1.0 + alpha**3) ** (1.0 / 3.0)
        small = alpha * big
        side_angle = math.radians(rng.uniform(35.0, 80.0))
        main_angle = side_angle * alpha**2 * 0.8
        normal = _random_perpendicular(rng, direction)
        for child_radius, angle in ((big, -main_angle), (small, side_angle)):
            if child_radius >= min_radius:
                child_dir = math.cos(angle) * direction + math.sin(angle) * normal
                queue.append((position.copy(), child_dir, child_radius, path, gain))
    for state in queue:
        length = rng.uniform(3.0, 8.0) * max(state[2], 0.5)
        segments, _ = walk(*state, length, fade_out=True)
        if segments is not None:
            branches.append(segments)
    if not branches:
        return np.zeros((0, 10))
    return np.vstack(branches)


def _draw_root(rng, extent, head, field_of_view) -> tuple[np.ndarray, np.ndarray]:
    """Where a trunk enters, and its direction. In a whole head, large trunks rise
    from the skull base (as the carotid and vertebrobasilar arteries do) and
    others dive in from the brain surface; in a crop they enter through a face,
    mostly from below."""
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


def _left(points, extent, head, style, margin: float = 2.0) -> np.ndarray:
    """Which points (n, 3) lie outside the brain or outside the volume (plus a
    margin, so that vessels run out of the image rather than stop at its face)."""
    brain = 1.0 - head["scalp"] - head["skull"] - head["csf"]
    outside = _head_radius(points, head) > brain - 0.02
    if style["field_of_view"] == "head":
        return outside
    return outside | np.any((points < -margin) | (points > extent + margin), axis=1)


def _random_perpendicular(rng, direction) -> np.ndarray:
    v = rng.standard_normal(3)
    v -= v.dot(direction) * direction
    return v / np.linalg.norm(v)


def _rasterise(
    segments, shape, spacing, blur_mm, wall_darkening=0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fraction and vessel signal of the union of tubes.

    Each segment is evaluated only in its bounding box; per voxel the largest
    fraction (and largest fraction x brightness) over segments wins. Segments with
    boxes of the same (rounded-up) size are evaluated together as one array.
    `wall_darkening` dims the lumen towards the wall (slower laminar flow there
    is more saturated), 0 for a flat profile.
    """
    shape_arr = np.asarray(shape)
    fraction = np.zeros(int(np.prod(shape_arr)), dtype=np.float32)
    signal = np.zeros_like(fraction)
    if len(segments) == 0:
        return fraction.reshape(shape), signal.reshape(shape)
    start, end = segments[:, 0:3], segments[:, 3:6]
    reach = segments[:, 6:8].max(axis=1, keepdims=True) + 3.0 * blur_mm
    lo = np.floor((np.minimum(start, end) - reach) / spacing).astype(int)
    hi = np.ceil((np.maximum(start, end) + reach) / spacing).astype(int) + 1
    lo, hi = np.clip(lo, 0, shape_arr), np.clip(hi, 0, shape_arr)
    keep = np.all(hi > lo, axis=1)
    segments, lo, hi = segments[keep], lo[keep], hi[keep]
    box = -(-(hi - lo) // 2) * 2  # round box sizes up to even numbers of voxels
    for size in np.unique(box, axis=0):
        group = np.flatnonzero(np.all(box == size, axis=1))
        per_chunk = max(1, 2_000_000 // int(np.prod(size)))
        for first in range(0, len(group), per_chunk):
            rows = group[first : first + per_chunk]
            flat, frac, shine = _segment_voxels(
                segments[rows], lo[rows], size, hi[rows], spacing, shape, blur_mm, wall_darkening
            )
            np.maximum.at(fraction, flat, frac)
            np.maximum.at(signal, flat, frac * shine)
    return fraction.reshape(shape), signal.reshape(shape)


def _segment_voxels(segments, lo, size, hi, spacing, shape, blur_mm, wall_darkening):
    """For segments whose boxes share `size`: flat indices of the voxels they
    touch, the fill fraction there and the lumen brightness."""
    n = len(segments)
    start = segments[:, 0:3]
    direction = segments[:, 3:6] - start
    length2 = np.maximum((direction**2).sum(axis=1), 1e-12)
    index, offset, inside = [], [], []
    for d in range(3):
        view = [n, 1, 1, 1]
        view[d + 1] = int(size[d])
        voxel = lo[:, d : d + 1] + np.arange(size[d])  # (n, size)
        index.append(voxel.reshape(view))
        inside.append((voxel < hi[:, d : d + 1]).reshape(view))
        offset.append((voxel * spacing[d] - start[:, d : d + 1]).reshape(view).astype(np.float32))

    def per_segment(values):
        return values.reshape(n, 1, 1, 1).astype(np.float32)

    dx, dy, dz = (per_segment(direction[:, d]) for d in range(3))
    t = (offset[0] * dx + offset[1] * dy + offset[2] * dz) / per_segment(length2)
    np.clip(t, 0.0, 1.0, out=t)
    dist = np.sqrt(
        (offset[0] - t * dx) ** 2 + (offset[1] - t * dy) ** 2 + (offset[2] - t * dz) ** 2
    )
    r_a, r_b, b_a, b_b = (per_segment(segments[:, c]) for c in range(6, 10))
    radius = r_a + (r_b - r_a) * t
    # Only voxels within reach of the tube surface get the (costly) profile.
    near = inside[0] & inside[1] & inside[2] & (dist < radius + 3.0 * blur_mm)
    frac = _tube_fraction(dist[near], radius[near], math.sqrt(2.0) * blur_mm)
    useful = frac > 1e-3
    flat = np.broadcast_to((index[0] * shape[1] + index[1]) * shape[2] + index[2], near.shape)
    shine = np.broadcast_to(b_a + (b_b - b_a) * t, near.shape)[near][useful]
    wall = np.minimum(dist[near][useful] / radius[near][useful], 1.0) ** 2
    return flat[near][useful], frac[useful], shine * (1.0 - wall_darkening * wall)


def _tube_fraction(dist, radius, sqrt2_blur):
    """Fraction of a blurred voxel filled by a tube of `radius` at distance `dist`.

    Across the tube this is a slab profile (difference of error functions), scaled
    so that the centre matches the exact value for a Gaussian-blurred disc,
    1 - exp(-r^2 / 2 sigma^2). That keeps sub-voxel vessels faint instead of
    bright and thin.
    """
    scale = np.float32(1.0 / sqrt2_blur)
    slab = 0.5 * (special.erf((radius - dist) * scale) + special.erf((radius + dist) * scale))
    centre_disc = -np.expm1(-((radius * scale) ** 2))
    centre_slab = special.erf(radius * scale)
    return slab * (centre_disc / centre_slab)
