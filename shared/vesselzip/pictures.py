"""Pictures of a job for people: maximum-intensity projections of the volume with the
mask over it, and of the difference between the decoded and the original volume.

Each picture is a PNG (imagecodecs, a core dependency: no plotting stack needed).
With a truth, the mask's voxels are coloured by what they are: true positives green,
false positives red, false negatives blue; a ray through both kinds shows the
mistake (red or blue) over green. Without a truth the mask is one colour (orange)."""

from __future__ import annotations

import numpy as np

#: Projections by name: the array axis each one projects along (NIfTI's RAS-ish i, j,
#: k: k runs foot to head, so the axial view looks down it).
VIEWS = {"axial": 2, "coronal": 1, "sagittal": 0}
#: Pictures a job can have: the volume with its mask per view, and the difference.
PICTURES = (*(f"mask_{view}" for view in VIEWS), *(f"difference_{view}" for view in VIEWS))

TRUE_POSITIVE = (40, 200, 70)
FALSE_POSITIVE = (235, 50, 50)
FALSE_NEGATIVE = (60, 120, 255)
MASK_ONLY = (255, 150, 0)
_ALPHA = 0.6


def _oriented(image) -> np.ndarray:
    """A projection as it is looked at: the second axis up the picture."""
    return np.rot90(np.asarray(image))


def _grey(projection: np.ndarray) -> np.ndarray:
    """Window a projection to 0-255 between its 0.5th and 99.9th percentiles."""
    values = projection.astype(np.float64)
    low, high = np.percentile(values, (0.5, 99.9))
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else values * 0
    return (scaled * 255).astype(np.uint8)


#: The longer side of a picture, in pixels, at least (small volumes are enlarged).
MIN_SIDE = 384


def _true_to_scale(rgb: np.ndarray, axis: int, spacing: tuple[float, ...]) -> np.ndarray:
    """Resample (nearest neighbour) so each pixel is square in mm and the picture is at
    least MIN_SIDE pixels on its longer side."""
    kept = [a for a in range(3) if a != axis]
    pixel_mm = (spacing[kept[1]], spacing[kept[0]])  # rows, columns after _oriented
    height, width = rgb.shape[:2]
    unit = min(pixel_mm)
    out_h, out_w = height * pixel_mm[0] / unit, width * pixel_mm[1] / unit
    grow = max(1.0, MIN_SIDE / max(out_h, out_w))
    out_h, out_w = max(1, round(out_h * grow)), max(1, round(out_w * grow))
    rows = np.arange(out_h) * height // out_h
    columns = np.arange(out_w) * width // out_w
    return rgb[rows][:, columns]


def _png(rgb: np.ndarray) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(rgb)))


def _paint(rgb: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> None:
    rgb[where] = (1 - _ALPHA) * rgb[where] + _ALPHA * np.asarray(colour, dtype=np.float64)


def mask_picture(
    volume: np.ndarray,
    mask: np.ndarray,
    truth: np.ndarray | None,
    view: str,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> bytes:
    """PNG: the volume's MIP along `view` in grey, the mask's projection over it."""
    axis = VIEWS[view]
    grey = _grey(_oriented(volume.max(axis=axis)))
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float64)
    predicted = mask > 0
    if truth is None:
        _paint(rgb, _oriented(predicted.any(axis=axis)), MASK_ONLY)
    else:
        true = truth > 0
        _paint(rgb, _oriented((predicted & true).any(axis=axis)), TRUE_POSITIVE)
        _paint(rgb, _oriented((predicted & ~true).any(axis=axis)), FALSE_POSITIVE)
        _paint(rgb, _oriented((~predicted & true).any(axis=axis)), FALSE_NEGATIVE)
    return _png(_true_to_scale(np.rint(rgb).astype(np.uint8), axis, spacing))


def difference_projections(
    original: np.ndarray, decoded: np.ndarray, planes: int = 16
) -> dict[str, np.ndarray]:
    """The largest |decoded − original| along each ray of every view (float32), read a
    few planes at a time: no full-size copy of the volume is made."""
    sagittal = np.zeros(original.shape[1:], np.float32)
    axial, coronal = [], []
    for first in range(0, original.shape[0], planes):
        part = slice(first, first + planes)
        slab = np.abs(decoded[part].astype(np.float32) - original[part].astype(np.float32))
        axial.append(slab.max(axis=2))
        coronal.append(slab.max(axis=1))
        np.maximum(sagittal, slab.max(axis=0), out=sagittal)
    return {
        "axial": np.concatenate(axial, axis=0),
        "coronal": np.concatenate(coronal, axis=0),
        "sagittal": sagittal,
    }


def projections_to_bytes(projections: dict[str, np.ndarray]) -> bytes:
    import io

    out = io.BytesIO()
    np.savez_compressed(
        out,
        axial=projections["axial"],
        coronal=projections["coronal"],
        sagittal=projections["sagittal"],
    )
    return out.getvalue()


def projections_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(data)) as arrays:
        return {view: arrays[view] for view in VIEWS}


def difference_picture(
    projection: np.ndarray, view: str, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> tuple[bytes, float]:
    """PNG of one view of difference_projections, black (no difference) to white (the
    largest anywhere in it); and that largest difference."""
    largest = float(projection.max()) if projection.size else 0.0
    scaled = projection / largest if largest > 0 else projection
    grey = (_oriented(scaled) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return _png(_true_to_scale(rgb, VIEWS[view], spacing)), largest
