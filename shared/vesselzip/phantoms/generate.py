"""`make_phantom`: check the arguments, pick the field of view, draw."""

from __future__ import annotations

import numpy as np

from vesselzip.errors import VesselzipError

from .crop import draw_spacing, make_crop_phantom
from .phantom import DEFAULT_SHAPE, DEFAULT_SPACING, FIELDS_OF_VIEW, Phantom, check_shape
from .whole_head import MIN_IN_PLANE_SPACING, draw_whole_head_spacing, make_whole_head

#: The smallest in-plane field of view (mm, both x and y) drawn as a whole head
#: when the field of view is not given: a head's cross-section needs about this.
WHOLE_HEAD_MIN_FOV_MM = 120.0


def make_phantom(
    seed: int,
    shape=DEFAULT_SHAPE,
    spacing=DEFAULT_SPACING,
    *,
    field_of_view: str | None = None,
) -> Phantom:
    """Draw one phantom. Same seed (and arguments) -> same bytes.

    `field_of_view` is "crop" (tissue fills the volume, like a Circle of Willis
    crop), "head" (a small head with air around it), "whole-head" (an anatomical
    head in a clinical axial slab, with named arteries) or None: "whole-head" when
    the in-plane field of view is at least 120 mm in x and y (with `spacing=None`,
    at 0.35 mm, the finest drawn whole-head spacing), otherwise crop or head drawn
    from the seed. `spacing=None` draws a realistic anisotropic spacing from the
    seed (for whole heads a clinical one: 0.35-0.5 mm in-plane, 0.5-0.8 mm slices).
    """
    shape = check_shape(shape)
    if field_of_view is None and _fits_a_head(shape, spacing):
        field_of_view = "whole-head"
    if field_of_view is not None and field_of_view not in FIELDS_OF_VIEW:
        raise VesselzipError(
            f"field_of_view must be one of {FIELDS_OF_VIEW}, got {field_of_view!r}"
        )
    rng = np.random.default_rng(seed)
    if spacing is None:
        spacing = (
            draw_whole_head_spacing(rng) if field_of_view == "whole-head" else draw_spacing(rng)
        )
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise VesselzipError(f"spacing must be three positive numbers in mm, got {spacing}")
    if field_of_view == "whole-head":
        return make_whole_head(rng, int(seed), shape, spacing)
    if field_of_view is None:
        field_of_view = "crop" if rng.random() < 0.65 else "head"
    return make_crop_phantom(rng, seed, shape, spacing, field_of_view)


def _fits_a_head(shape, spacing) -> bool:
    in_plane = (
        (MIN_IN_PLANE_SPACING, MIN_IN_PLANE_SPACING) if spacing is None else tuple(spacing)[:2]
    )
    try:
        sizes = [n * float(s) for n, s in zip(shape[:2], in_plane, strict=True)]
    except (TypeError, ValueError):
        return False  # a malformed spacing is reported below
    return min(sizes) >= WHOLE_HEAD_MIN_FOV_MM
