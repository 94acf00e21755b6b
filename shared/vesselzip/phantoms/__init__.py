"""TOF-MRA-like cerebrovascular phantoms with exact vessel masks.

Nothing is downloaded: every volume is drawn from a seed. A phantom is a set of
tubes (decreasing radii, bright inflow signal fading along the tree) rendered with
partial-volume edges into a head-shaped background with tissue texture, a bias
field, a point-spread function and Rician noise, stored as int16 like a clinical
scan. The look (field of view, tissue levels, contrast, noise, blur,
tortuosity...) is drawn per seed as well, so a model trained on many seeds does
not learn a single appearance.

Three fields of view: "crop" and "head" (random trees in a small volume, `crop`)
and "whole-head" (an anatomical head in a clinical axial slab with the named
arteries of the Circle of Willis and their variants, `whole_head`). Real vessel
masks can be rendered around too, on their own grids (`around_mask`,
`write_geometry_dataset`): the generator's head, inflow and scanner, the real
mask as the label.

The masks are exact for the geometry: a voxel is vessel when at least half of it
is inside a tube (for tubes wider than a voxel: when its centre is inside).
Twigs with a radius under about a third of a voxel never fill half a voxel, so they
show faintly in the image but not in the mask, as on a real annotation. The
image is further blurred by the scanner's point-spread function; the mask is not.
"""

from .around_mask import render_around_mask
from .arteries import TERRITORY_LABELS
from .dataset import write_phantom_dataset
from .generate import make_phantom
from .geometry_dataset import write_geometry_dataset
from .phantom import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    FIELDS_OF_VIEW,
    GENERATOR_VERSION,
    INT16_MAX,
    Phantom,
    phantom_affine,
)
from .real_masks import TOPCOW_CLASSES, TOPCOW_TERRITORIES, RealMask, read_real_mask
from .tubes import rasterise as _rasterise
from .tubes import vessel_mask

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "FIELDS_OF_VIEW",
    "GENERATOR_VERSION",
    "INT16_MAX",
    "TERRITORY_LABELS",
    "TOPCOW_CLASSES",
    "TOPCOW_TERRITORIES",
    "Phantom",
    "RealMask",
    "_rasterise",
    "make_phantom",
    "phantom_affine",
    "read_real_mask",
    "render_around_mask",
    "vessel_mask",
    "write_geometry_dataset",
    "write_phantom_dataset",
]
