"""Augmentations that make real tissue look like tissue rather than vessel.

Exports prepared for viewing (MRIcroGL's sample TOF, many 8-bit MIP sources) are
background-suppressed: everything but the vessels, a rim around them and a few
patches of tissue is set to 0, and the patches left are often flat. A network that
has only seen vessels inside tissue reads the sharp edge of such a patch against 0 as
a vessel wall, and a thin vessel inside 0 as something else. `RandSuppressBackgroundd`
shows it both, with the labels untouched.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

#: A voxel brighter than this many times the patch's median is kept as a vessel
#: (labelled or not: the suppression of an export does not know the labels).
BRIGHT_OVER_MEDIAN = (2.0, 3.5)
#: Voxels of rim kept around the bright structures.
RIM_VOXELS = (1, 3)
#: Share of the patch kept as tissue patches (a low-resolution random field over it).
PATCH_SHARE = (0.0, 0.3)
#: Intensity (in the [0, 1] window) a flattened tissue patch is set to.
FLAT_LEVEL = (0.12, 0.6)


class RandSuppressBackgroundd(RandomizableTransform, MapTransform):
    """With probability `prob`, set the image of a (1, D, H, W) patch to 0 outside
    its bright structures, a rim around them and a few random tissue patches, which
    are flattened to one level half of the time. Labels are left as they are."""

    def __init__(self, keys: str = "image", label_key: str = "label", prob: float = 0.15):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        out = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return out
        label = out[self.label_key]
        for key in self.key_iterator(out):
            out[key] = self._suppressed(out[key], label)
        return out

    def _suppressed(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        values = image[0]
        median = float(values.median())
        bright = (values > self.R.uniform(*BRIGHT_OVER_MEDIAN) * max(median, 1e-3)) | (label[0] > 0)
        keep = ndimage.binary_dilation(
            bright.cpu().numpy(), iterations=int(self.R.randint(RIM_VOXELS[0], RIM_VOXELS[1] + 1))
        )
        blobs = self._blobs(tuple(values.shape)) & ~keep
        suppressed = values.clone()
        if blobs.any() and self.R.rand() < 0.5:
            level = self.R.uniform(*FLAT_LEVEL)
            noise = self.R.normal(0.0, 0.01, size=int(blobs.sum()))
            suppressed[torch.from_numpy(blobs)] = torch.from_numpy(level + noise).to(values.dtype)
        suppressed[torch.from_numpy(~(keep | blobs))] = 0.0
        return suppressed[None]

    def _blobs(self, shape: tuple[int, ...]) -> np.ndarray:
        """A random share of the patch in a few smooth blobs."""
        share = self.R.uniform(*PATCH_SHARE)
        if share <= 0.0:
            return np.zeros(shape, dtype=bool)
        coarse = torch.from_numpy(self.R.random_sample((1, 1, 4, 4, 4)).astype(np.float32))
        field = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]
        return (field >= torch.quantile(field.flatten()[::7], 1.0 - share)).numpy()
