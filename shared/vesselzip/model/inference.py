"""Whole-volume inference for a segmentation network, following the paper's test
protocol: orient to RAS, resample to a target spacing, window intensities to [0, 1],
MONAI sliding-window inference, softmax, and the label map carried back to the
input's own grid so that it overlays the input voxel for voxel.

Everything stays float32 (or the autocast dtype on CUDA); no float64 copy of the
volume is ever made.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import cast

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from scipy import ndimage

from vesselzip.errors import InvalidVolumeError, ModelNotAvailableError
from vesselzip.model.foreground import (
    TissueRegion,
    grown,
    near_tissue,
    remove_small_pieces,
    tissue_blocks,
    tissue_region,
    window_holds_tissue,
)
from vesselzip.volumes import nifti_scaling as nifti_scaling  # where it lived before

# The paper resamples RSNA MRA to this isotropic spacing (mm) before inference.
PAPER_SPACING_MM = 0.3542
#: Resampling may grow a volume at most this many times in voxels (2x per axis).
MAX_UPSAMPLING = 8

Progress = Callable[[float], None]
#: Background logit of windows that are not run (others 0): vessel probability ~2e-9.
AIR_LOGIT = 20.0
#: Every subset of the three spatial axes of a (N, C, D, H, W) tensor: the 8 flips.
FLIPS = [axes for k in range(4) for axes in itertools.combinations((2, 3, 4), k)]


@dataclass(frozen=True)
class InferenceConfig:
    """How a network sees a volume. Stored next to the weights it belongs to."""

    # Isotropic or per-axis (RAS order) spacing in mm; None keeps the input grid.
    target_spacing: tuple[float, float, float] | None = (PAPER_SPACING_MM,) * 3
    # Intensities in [low, high] map linearly to [0, 1]; outside is clipped.
    window: tuple[float, float] = (0.0, 1000.0)
    # When set, [low, high] are these percentiles of each volume instead of `window`:
    # the same result whatever the scanner's gain (a fixed window is the paper's way),
    # but not whatever the field of view (air, tissue and vessel shift percentiles).
    window_percentiles: tuple[float, float] | None = None
    # When set, [0, tissue_window x the volume's tissue level] maps to [0, 1] instead
    # (the level: vesselzip.model.foreground): the same whatever the gain and however
    # much air surrounds the head.
    tissue_window: float | None = None
    roi_size: int = 64
    overlap: float = 0.25
    sw_batch_size: int = 2
    blend_mode: str = "constant"  # MONAI BlendMode: constant | gaussian
    # A voxel is vessel when its vessel probability (1 - background) reaches this;
    # None takes the most likely class (argmax, the paper's way). A threshold
    # chosen on validation data corrects a network that is over- or under-confident.
    vessel_threshold: float | None = None
    # Gaussian smoothing (sigma in voxels of the network's grid) of the vessel
    # probability before the threshold: image noise and compression error make a
    # vessel's rim ragged, voxel by voxel, and the ragged part is what moves between
    # a volume and its compressed copy. 0 leaves the probability as it is.
    probability_sigma: float = 0.0
    # Average the logits over the 8 flips of the three axes (test-time augmentation):
    # measured +0.009 Dice for the bundled model on held-out phantoms, at 8x the time.
    flip_averaging: bool = False
    # Windows holding no tissue (all air, one block of margin) are not run through the
    # network: they are background. Saves a third to a half of a whole head's time.
    skip_air: bool = True
    # Cleanup of the mask: nothing marked in air (farther than a block, 4 voxels of the
    # network's grid, from tissue) ...
    clear_air: bool = False
    # ... and no piece (26-connectivity) under this many voxels of the input; 0 keeps all.
    min_piece_voxels: int = 0
    # A piece touching the edge of the field of view is kept from this size on (it may
    # go on outside the view); None: the same rule as for every piece.
    edge_piece_voxels: int | None = None

    @classmethod
    def from_dict(cls, values: dict) -> InferenceConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if known.get("target_spacing") is not None:
            spacing = known["target_spacing"]
            if isinstance(spacing, (int, float)):
                spacing = [spacing] * 3
            known["target_spacing"] = tuple(float(s) for s in spacing)
        for key in ("window", "window_percentiles"):
            if known.get(key) is not None:
                known[key] = tuple(float(w) for w in known[key])
        if known.get("tissue_window") is not None:
            known["tissue_window"] = float(known["tissue_window"])
        return cls(**known)

    def __post_init__(self):
        percentiles = self.window_percentiles
        if percentiles is not None and not (0.0 <= percentiles[0] < percentiles[1] <= 100.0):
            raise ValueError(
                f"window percentiles must satisfy 0 <= low < high <= 100: {percentiles}"
            )
        if self.tissue_window is not None:
            if percentiles is not None:
                raise ValueError("give window percentiles or a tissue window, not both")
            if not self.tissue_window > 0:
                raise ValueError(f"tissue window must be positive: {self.tissue_window}")
        threshold = self.vessel_threshold
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"vessel threshold must be between 0 and 1: {threshold}")
        if not 0.0 <= self.probability_sigma <= 8.0:
            raise ValueError(
                f"probability sigma must be between 0 and 8 voxels: {self.probability_sigma}"
            )
        if self.min_piece_voxels < 0:
            raise ValueError(f"min piece voxels must be 0 or more: {self.min_piece_voxels}")
        if self.edge_piece_voxels is not None and self.edge_piece_voxels < 0:
            raise ValueError(f"edge piece voxels must be 0 or more: {self.edge_piece_voxels}")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["target_spacing"] = (
            None if self.target_spacing is None else list(self.target_spacing)
        )
        values["window"] = list(self.window)
        if self.window_percentiles is not None:
            values["window_percentiles"] = list(self.window_percentiles)
        return values


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailableError("device 'cuda' requested but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelNotAvailableError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


@dataclass
class RasGrid:
    """How the input array maps onto its RAS-oriented copy (axis permutation and flips
    only, so the mapping is exact both ways)."""

    to_ras: np.ndarray  # nibabel orientation transform, input -> RAS
    from_ras: np.ndarray  # RAS -> input
    ras_shape: tuple[int, int, int]
    ras_spacing: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis, in mm, read from the affine."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def ras_grid(shape: Sequence[int], affine: np.ndarray) -> RasGrid:
    current = nib.orientations.io_orientation(affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    to_ras = nib.orientations.ornt_transform(current, ras)
    from_ras = nib.orientations.ornt_transform(ras, current)
    spacing = voxel_spacing(affine)
    ras_shape = [0, 0, 0]
    ras_spacing = [0.0, 0.0, 0.0]
    for axis, (target_axis, _flip) in enumerate(to_ras):
        ras_shape[int(target_axis)] = int(shape[axis])
        ras_spacing[int(target_axis)] = float(spacing[axis])
    return RasGrid(
        to_ras,
        from_ras,
        (ras_shape[0], ras_shape[1], ras_shape[2]),
        (ras_spacing[0], ras_spacing[1], ras_spacing[2]),
    )


def resampled_shape(grid: RasGrid, target_spacing: Sequence[float] | None) -> tuple[int, ...]:
    """The grid's shape at `target_spacing`; refuses to grow the volume more than
    MAX_UPSAMPLING times (a coarse grid would otherwise cost any amount of memory)."""
    if target_spacing is None:
        return grid.ras_shape
    shape = tuple(
        max(1, round(n * s / t))
        for n, s, t in zip(grid.ras_shape, grid.ras_spacing, target_spacing, strict=True)
    )
    if math.prod(shape) > MAX_UPSAMPLING * math.prod(grid.ras_shape):
        spacing = " x ".join(f"{s:g}" for s in grid.ras_spacing)
        raise InvalidVolumeError(
            f"the model resamples to {target_spacing} mm: {spacing} mm voxels would grow "
            f"the volume from {grid.ras_shape} to {shape}, over {MAX_UPSAMPLING}x its voxels"
        )
    return shape


def preprocess(
    data: np.ndarray,
    grid: RasGrid,
    config: InferenceConfig,
    device: torch.device,
    *,
    scaling: tuple[float, float] = (1.0, 0.0),
    clip: bool = True,
) -> torch.Tensor:
    """Input array -> (1, 1, D, H, W) float32 tensor on `device`: RAS, resampled, windowed.

    `scaling` is the NIfTI (slope, intercept) turning stored values into intensities.
    Training leaves `clip` off so that intensity augmentation acts before clipping;
    otherwise training and inference share this function, window included."""
    image = intensities(data, grid, config, device, scaling)
    region = tissue_region(image) if windowed_by_tissue(config) else None
    return windowed(image, config, region, clip=clip)


def intensities(
    data: np.ndarray,
    grid: RasGrid,
    config: InferenceConfig,
    device: torch.device,
    scaling: tuple[float, float] = (1.0, 0.0),
) -> torch.Tensor:
    """Input array -> (1, 1, D, H, W) float32 intensities on the network's grid: RAS,
    resampled, NIfTI `scaling` (slope, intercept) applied."""
    ras = nib.orientations.apply_orientation(data, grid.to_ras)
    # A copy even when `data` is already float32 in RAS order: the steps below work in
    # place and must not write into the caller's array.
    image = torch.from_numpy(np.array(ras, dtype=np.float32, order="C")).to(device)
    image = image[None, None]
    shape = resampled_shape(grid, config.target_spacing)
    if shape != tuple(image.shape[2:]):
        image = F.interpolate(image, size=shape, mode="trilinear", align_corners=False)
    slope, intercept = scaling
    if (slope, intercept) != (1.0, 0.0):
        image.mul_(slope).add_(intercept)
    return image


def windowed_by_tissue(config: InferenceConfig) -> bool:
    """Whether the window is measured on the volume (within its tissue box)."""
    return config.tissue_window is not None or config.window_percentiles is not None


def windowed(
    image: torch.Tensor,
    config: InferenceConfig,
    region: TissueRegion | None,
    *,
    clip: bool = True,
) -> torch.Tensor:
    """Intensities -> [0, 1], in place: the fixed window, or the one measured within
    the tissue box of `region` (its percentiles, or K × its tissue level), so that the
    air around a crop does not change it."""
    if region is None:
        low, high = config.window
    elif config.tissue_window is not None:
        low, high = 0.0, config.tissue_window * region.levels.level
        high = high if high > 0 else 1.0  # no signal at all: any positive width
    else:
        inside = image[(slice(None), slice(None)) + region.box]
        low, high = intensity_window(inside.cpu().numpy(), config)
    image.sub_(low).div_(high - low)
    if clip:
        image.clamp_(0.0, 1.0)
    return image


def intensity_window(
    data: np.ndarray, config: InferenceConfig, scaling: tuple[float, float] = (1.0, 0.0)
) -> tuple[float, float]:
    """The [low, high] intensities that map to [0, 1]: the fixed window, or the
    volume's percentiles (read from every 4th voxel along the flattened array: ample
    for a percentile and cheap)."""
    if config.window_percentiles is None:
        return config.window
    sample = np.ravel(data, order="K")[::4]
    low, high = np.percentile(sample, config.window_percentiles).astype(np.float64)
    slope, intercept = scaling
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    # A flat volume would divide by zero: any positive width maps it to one value.
    return float(low), float(high if high > low else low + 1.0)


def autocast_for(device: torch.device) -> torch.autocast:
    """Mixed precision on CUDA (bf16 where the GPU has it), plain float32 on CPU."""
    if device.type != "cuda":
        return torch.autocast(device_type="cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def count_windows(image_shape: Sequence[int], config: InferenceConfig) -> int:
    """How many predictor calls MONAI's sliding window will make (for progress)."""
    roi = [config.roi_size] * 3
    size = [max(n, r) for n, r in zip(image_shape, roi, strict=True)]
    interval = [
        r if r == n else max(1, int(r * (1 - config.overlap)))
        for n, r in zip(size, roi, strict=True)
    ]
    windows = len(dense_patch_slices(size, roi, interval))
    return math.ceil(windows / config.sw_batch_size)


def sliding_window_logits(
    network: torch.nn.Module,
    image: torch.Tensor,
    config: InferenceConfig,
    progress: Progress | None = None,
    tissue: np.ndarray | None = None,
) -> torch.Tensor:
    """Logits (1, C, D, H, W) float32 for a preprocessed image, window by window;
    with `flip_averaging`, the mean over the image flipped every way. With `skip_air`,
    windows farther than a block from any block of `tissue` (`tissue_blocks` of the
    image, computed when not given) get background logits without running the network."""
    flips = FLIPS if config.flip_averaging else [()]
    total = count_windows(image.shape[2:], config) * len(flips)
    done = 0
    shape = tuple(image.shape[2:])
    # MONAI pads an image smaller than a window; such an image is one window anyway.
    skipping = config.skip_air and min(shape) >= config.roi_size
    # A window is run when it comes within a block of tissue.
    reach = grown(tissue_blocks(image) if tissue is None else tissue) if skipping else None
    flipped: tuple[int, ...] = ()

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done / total, 1.0))

    def run(windows: torch.Tensor) -> torch.Tensor:
        logits = network(windows).float()  # stitch in float32 even under autocast
        advance()
        return logits

    def run_near_tissue(windows: torch.Tensor, places: Sequence[Sequence[slice]]) -> torch.Tensor:
        assert reach is not None
        keep = [
            i
            for i, place in enumerate(places)
            if window_holds_tissue(reach, place[2:], shape, flipped)
        ]
        if len(keep) == len(places):
            return run(windows)
        channels = getattr(network, "out_chans", 2)  # vessel and background by default
        logits = windows.new_zeros((len(places), channels, *windows.shape[2:]), dtype=torch.float32)
        logits[:, 0] = AIR_LOGIT
        if keep:
            logits[keep] = network(windows[keep]).float()
        advance()
        return logits

    summed: torch.Tensor | None = None
    with torch.inference_mode(), autocast_for(image.device):
        for axes in flips:
            flipped = tuple(axis - 2 for axis in axes)
            # A predictor that returns one tensor gets one tensor back.
            logits = cast(
                torch.Tensor,
                sliding_window_inference(
                    image.flip(axes) if axes else image,
                    roi_size=config.roi_size,
                    sw_batch_size=config.sw_batch_size,
                    predictor=run_near_tissue if skipping else run,
                    overlap=config.overlap,
                    mode=config.blend_mode,
                    with_coord=skipping,
                ),
            )
            logits = logits.flip(axes) if axes else logits
            summed = logits if summed is None else summed.add_(logits)
        assert summed is not None  # FLIPS and [()] are never empty
        return summed if len(flips) == 1 else summed.div_(len(flips))


def vessel_probability(logits: torch.Tensor) -> torch.Tensor:
    """(1, C, D, H, W) logits -> (D, H, W) probability of any vessel class."""
    if logits.shape[1] == 2:
        # One channel's worth of memory: softmax of two classes is a sigmoid.
        return torch.sigmoid(logits[0, 1] - logits[0, 0])
    return 1.0 - torch.softmax(logits, dim=1)[0, 0]


def smoothed(probability: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (D, H, W) probability smoothed with a Gaussian of `sigma` voxels; the edges
    are mirrored, so a vessel leaving the field of view keeps its rim there."""
    if sigma <= 0.0:
        return probability
    values = ndimage.gaussian_filter(probability.cpu().numpy(), sigma, mode="mirror")
    return torch.from_numpy(values).to(probability.device)


def logits_to_mask(
    logits: torch.Tensor,
    grid: RasGrid,
    vessel_threshold: float | None = None,
    box: Sequence[slice] | None = None,
    network_shape: Sequence[int] | None = None,
    probability_sigma: float = 0.0,
) -> np.ndarray:
    """Softmax, back to the RAS grid of the input, argmax (or the vessel probability,
    smoothed by `probability_sigma`, against `vessel_threshold`), then undo the
    orientation: a uint8 0/1 mask in the input's own array order. With `box`, the
    logits cover only that box of an image of `network_shape`; the rest is background."""
    with torch.inference_mode():
        shape = tuple(logits.shape[2:]) if network_shape is None else tuple(network_shape)
        resample = shape != grid.ras_shape
        by_classes = vessel_threshold is None and probability_sigma <= 0.0
        if logits.shape[1] > 2 and by_classes:
            probabilities = _placed(torch.softmax(logits, dim=1), box, shape, background=0)
            del logits
            if resample:
                probabilities = F.interpolate(
                    probabilities, size=grid.ras_shape, mode="trilinear", align_corners=False
                )
            vessel = probabilities.argmax(dim=1)[0] > 0
        else:
            # The vessel probability alone: one channel of memory. With two classes
            # argmax is p > 1/2, also after interpolation (the two still sum to 1).
            probability = smoothed(vessel_probability(logits), probability_sigma)
            probability = _placed(probability[None, None], box, shape)
            del logits
            if resample:
                probability = F.interpolate(
                    probability, size=grid.ras_shape, mode="trilinear", align_corners=False
                )
            if vessel_threshold is None:
                vessel = probability[0, 0] > 0.5
            else:
                vessel = probability[0, 0] >= vessel_threshold
        ras_mask = vessel.to(torch.uint8).cpu().numpy()
    mask = nib.orientations.apply_orientation(ras_mask, grid.from_ras)
    return np.ascontiguousarray(mask, dtype=np.uint8)


def _placed(
    values: torch.Tensor,
    box: Sequence[slice] | None,
    shape: tuple[int, ...],
    background: int | None = None,
) -> torch.Tensor:
    """(1, C, ...) `values` of `box` put into a (1, C, *shape) volume that is 0
    elsewhere (1 in channel `background`, when given: probabilities of air)."""
    if box is None or tuple(values.shape[2:]) == shape:
        return values
    full = values.new_zeros((*values.shape[:2], *shape))
    if background is not None:
        full[:, background] = 1.0
    full[(slice(None), slice(None)) + tuple(box)] = values
    return full


def clean_mask(
    mask: np.ndarray,
    grid: RasGrid,
    config: InferenceConfig,
    region: TissueRegion | None,
    network_shape: Sequence[int],
) -> np.ndarray:
    """The cleanup `config` asks for, in place on a mask in the input's array order:
    nothing outside the tissue box or farther than a block from the tissue of `region`
    (on the network's grid of `network_shape`), no piece under `min_piece_voxels`
    (`edge_piece_voxels` for a piece touching the edge of the field of view)."""
    if config.clear_air and region is not None:
        in_tissue = near_tissue(region.tissue, region.box, network_shape, grid.ras_shape)
        in_tissue = nib.orientations.apply_orientation(in_tissue, grid.from_ras)
        np.multiply(mask, in_tissue, out=mask, casting="unsafe")
    view = None
    edge_rule = config.edge_piece_voxels is not None and config.min_piece_voxels > 1
    if edge_rule and config.skip_air and region is not None:
        view = box_on_input(region.box, network_shape, grid)
    return remove_small_pieces(mask, config.min_piece_voxels, config.edge_piece_voxels, view)


def box_on_input(
    box: Sequence[slice], network_shape: Sequence[int], grid: RasGrid
) -> tuple[slice, ...]:
    """A box of the network's grid as slices of the input's own array (the voxels
    whose centres it covers, at least one per axis)."""
    spans: list[slice] = [slice(0)] * 3
    for axis, (part, n_network, n) in enumerate(
        zip(box, network_shape, grid.ras_shape, strict=True)
    ):
        start = min(int(part.start * n / n_network), n - 1)
        stop = max(min(math.ceil(part.stop * n / n_network), n), start + 1)
        # RAS axis `axis` is the input's axis `target`, reversed when flipped.
        target, flip = int(grid.from_ras[axis, 0]), grid.from_ras[axis, 1] < 0
        spans[target] = slice(n - stop, n - start) if flip else slice(start, stop)
    return tuple(spans)


@dataclass
class NetworkLogits:
    """What the network said about a volume, with what turning it into a mask needs:
    logits (1, C, ...) of the `box` of an image of `network_shape`, the input's grid
    and its tissue (None when no setting needs it)."""

    logits: torch.Tensor
    grid: RasGrid
    box: tuple[slice, ...]
    network_shape: tuple[int, ...]
    region: TissueRegion | None


def network_logits(
    network: torch.nn.Module,
    data: np.ndarray,
    affine: np.ndarray,
    config: InferenceConfig,
    device: torch.device,
    progress: Progress | None = None,
    scaling: tuple[float, float] = (1.0, 0.0),
) -> NetworkLogits:
    """A 3D array and its affine through preprocessing and the sliding window.
    `network` must already be on `device` and in eval mode."""
    if data.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {data.shape}")
    grid = ras_grid(data.shape, affine)
    image = intensities(data, grid, config, device, scaling)
    network_shape = tuple(image.shape[2:])
    by_tissue = windowed_by_tissue(config)
    needed = by_tissue or config.skip_air or config.clear_air
    region = tissue_region(image) if needed else None
    image = windowed(image, config, region if by_tissue else None)
    box = tuple(slice(0, n) for n in network_shape)
    tissue = None
    if config.skip_air and region is not None:
        # Only the box that holds the tissue goes through the sliding window: air
        # around a head costs nothing, and a crop is seen the same however much air
        # its field of view adds (the network normalises each window as a whole).
        box, tissue = tuple(region.box), region.tissue
    logits = sliding_window_logits(
        network, image[(slice(None), slice(None)) + box], config, progress, tissue
    )
    return NetworkLogits(logits, grid, box, network_shape, region)


def mask_from_logits(output: NetworkLogits, config: InferenceConfig) -> np.ndarray:
    """The threshold (after smoothing) and the cleanup of `config`: a uint8 0/1 mask
    in the input's own array order. Called again with other settings, it gives their
    mask without running the network again."""
    mask = logits_to_mask(
        output.logits,
        output.grid,
        config.vessel_threshold,
        output.box,
        output.network_shape,
        config.probability_sigma,
    )
    return clean_mask(mask, output.grid, config, output.region, output.network_shape)


def predict_mask(
    network: torch.nn.Module,
    data: np.ndarray,
    affine: np.ndarray,
    config: InferenceConfig,
    device: torch.device,
    progress: Progress | None = None,
    scaling: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """The whole pipeline: a 3D array and its affine in, a uint8 0/1 mask of the same
    shape out. `network` must already be on `device` and in eval mode."""
    output = network_logits(network, data, affine, config, device, progress, scaling)
    mask = mask_from_logits(output, config)
    del output
    if progress is not None:
        progress(1.0)
    return mask
