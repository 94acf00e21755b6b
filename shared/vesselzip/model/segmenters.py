"""Segmenters by name: the bundled small MambaVesselNets++, named by the truth they
answer ("mvn-arteries", the default: the named arteries the paper scores; "mvn-vessels":
every visible vessel; their earlier names "mvn-small-heads" and "mvn-small" still
work), a user's checkpoint such as the paper's full model ("mvn-checkpoint"), and the
training-free Frangi baseline ("frangi").

Loaded segmenters are cached per (name, checkpoint, device) so that a worker process
reads its weights once and keeps the model warm.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vesselzip.errors import ModelNotAvailableError
from vesselzip.model.baselines import FrangiConfig, frangi_mask
from vesselzip.model.foreground import BLOCK
from vesselzip.model.inference import (
    InferenceConfig,
    NetworkLogits,
    Progress,
    mask_from_logits,
    network_logits,
    nifti_scaling,
    resolve_device,
    voxel_spacing,
)
from vesselzip.model_info import ModelInfo
from vesselzip.weights import (
    BUNDLED_MODELS,
    MODEL_ALIASES,
    MODEL_ANSWERS,
    bundled_files,
    model_name,
)

log = logging.getLogger("vesselzip.model")


class Segmenter(ABC):
    """Turns a volume into a uint8 0/1 vessel mask on the volume's own grid."""

    name: str

    @abstractmethod
    def segment(self, volume, progress: Progress | None = None) -> np.ndarray: ...

    def info(self) -> ModelInfo:
        """What this segmenter can take (the workers announce it to the gateway)."""
        return ModelInfo(
            name=self.name,
            aliases=sorted(alias for alias, name in MODEL_ALIASES.items() if name == self.name),
            answers=MODEL_ANSWERS.get(self.name),
            summary=SUMMARIES.get(self.name, ""),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class NetworkSegmenter(Segmenter):
    """A segmentation network plus the preprocessing it was trained with."""

    def __init__(
        self,
        name: str,
        network: torch.nn.Module,
        config: InferenceConfig = InferenceConfig(),
        device: str | torch.device = "cpu",
    ):
        multiple = getattr(network, "side_multiple", 1)
        if config.roi_size % multiple:
            raise ValueError(
                f"the network needs windows whose sides are multiples of {multiple}, "
                f"not roi_size {config.roi_size}"
            )
        self.name = name
        self.config = config
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()
        # One volume at a time per process: the network and its buffers are shared.
        self._lock = threading.Lock()

    def info(self) -> ModelInfo:
        # Tissue is found on blocks of BLOCK voxels a side (foreground), and the
        # network's stem has kernels of that size: a thinner volume cannot go through.
        return (
            super()
            .info()
            .model_copy(update={"min_side": BLOCK, "target_spacing": self.config.target_spacing})
        )

    def with_config(self, **changes) -> NetworkSegmenter:
        """The same network with other inference settings (e.g. flip_averaging=True)."""
        return NetworkSegmenter(
            self.name, self.network, replace(self.config, **changes), self.device
        )

    def segment(self, volume, progress: Progress | None = None) -> np.ndarray:
        mask = mask_from_logits(self.logits(volume, progress), self.config)
        if progress is not None:
            progress(1.0)
        return mask

    def logits(self, volume, progress: Progress | None = None) -> NetworkLogits:
        """The network's output for `volume`, for `mask_from_logits` under any
        threshold, smoothing or cleanup (a scan over settings runs the network once)."""
        with self._lock:
            return network_logits(
                self.network,
                volume.data,
                volume.affine,
                self.config,
                self.device,
                progress,
                scaling=nifti_scaling(getattr(volume, "header", None)),
            )


class FrangiSegmenter(Segmenter):
    name = "frangi"

    def __init__(self, config: FrangiConfig = FrangiConfig()):
        self.config = config

    def segment(self, volume, progress: Progress | None = None) -> np.ndarray:
        # Vesselness is scale-free, so NIfTI intensity scaling does not matter here.
        return frangi_mask(volume.data, voxel_spacing(volume.affine), self.config, progress)


def load_network_segmenter(
    name: str, checkpoint: Path, device: str, config: InferenceConfig | None = None
) -> NetworkSegmenter:
    """A MambaVesselNet++ checkpoint (published format or bare state dict) with its
    inference settings: explicit `config`, else the checkpoint's own "config" entry
    (written by `vesselzip train`), else the paper's protocol. Every failure is a
    ModelNotAvailableError naming the checkpoint."""
    # Imported here so that the Frangi baseline and the registry work even while the
    # network is being changed or is unavailable.
    from vesselzip.model import checkpoints

    if not checkpoint.is_file():
        raise ModelNotAvailableError(f"checkpoint not found: {checkpoint}")
    try:
        stored = checkpoints.read_checkpoint(checkpoint)
        if config is None:
            saved = checkpoints.stored_inference_config(checkpoints.stored_config(stored))
            config = saved or InferenceConfig()
        network = checkpoints.load_network(stored, device="cpu")
    except ModelNotAvailableError as exc:
        raise ModelNotAvailableError(f"{checkpoint}: {exc}") from exc
    try:
        return NetworkSegmenter(name, network, config, device)
    except ValueError as exc:
        raise ModelNotAvailableError(f"{checkpoint}: {exc}") from exc


def _bundled_loader(name: str) -> Callable[[Path | None, str], Segmenter]:
    def load(checkpoint: Path | None, device: str) -> Segmenter:
        from vesselzip.model.checkpoints import stored_inference_config

        weights, settings = bundled_files(name)
        if not weights.is_file():
            raise ModelNotAvailableError(
                f"the weights of {name} are missing from this installation; "
                "use --model frangi or a checkpoint"
            )
        config = stored_inference_config(json.loads(settings.read_text()))
        return load_network_segmenter(name, weights, device, config)

    return load


def _load_mvn_checkpoint(checkpoint: Path | None, device: str) -> Segmenter:
    if checkpoint is None:
        raise ModelNotAvailableError(
            "model 'mvn-checkpoint' needs a checkpoint: pass one or set VESSELZIP_CHECKPOINT"
        )
    return load_network_segmenter("mvn-checkpoint", Path(checkpoint), device)


def _load_frangi(checkpoint: Path | None, device: str) -> Segmenter:
    return FrangiSegmenter()


_LOADERS: dict[str, Callable[[Path | None, str], Segmenter]] = {
    **{name: _bundled_loader(name) for name in BUNDLED_MODELS},
    "mvn-checkpoint": _load_mvn_checkpoint,
    "frangi": _load_frangi,
}
#: What each segmenter is for, one line each (`vesselzip models`).
SUMMARIES = {
    "mvn-arteries": "bundled, the default: the named arteries of the Circle of Willis and "
    "their main branches, like the paper's and TopCoW's labels (was mvn-small-heads)",
    "mvn-vessels": "bundled: every visible vessel, like IXI's and VesselVerse's labels "
    "(was mvn-small)",
    "mvn-checkpoint": "your MambaVesselNet++ checkpoint, e.g. the paper's full model "
    "(--checkpoint or VESSELZIP_CHECKPOINT)",
    "frangi": "multi-scale Frangi vesselness and a threshold, no training",
}
_cache: dict[tuple[str, str | None, str], Segmenter] = {}
_cache_lock = threading.Lock()


def available_segmenters() -> list[str]:
    return list(_LOADERS)


def loadable_models(
    *, checkpoint: str | Path | None = None, device: str = "auto"
) -> list[ModelInfo]:
    """What this process can really load, each model loaded once to find out (and so
    kept warm): a worker announces only these. A model that cannot load (no
    checkpoint configured, missing weights) is left out, with the reason logged."""
    infos = []
    for name in available_segmenters():
        try:
            infos.append(load_segmenter(name, checkpoint=checkpoint, device=device).info())
        except ModelNotAvailableError as exc:
            log.info("model %s is not offered: %s", name, exc)
    return infos


def load_segmenter(
    name: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    device: str = "auto",
) -> Segmenter:
    """The segmenter called `name` (default: settings' default_model), loaded once per
    process for each (name, checkpoint, device)."""
    from vesselzip.settings import get_settings

    name = model_name(name or get_settings().default_model)
    if name not in _LOADERS:
        raise ModelNotAvailableError(
            f"unknown model {name!r}; available: {', '.join(available_segmenters())}"
        )
    if name == "mvn-checkpoint" and checkpoint is None:
        checkpoint = get_settings().checkpoint
    if checkpoint is not None:
        checkpoint = Path(checkpoint).expanduser().resolve()
    resolved = "cpu" if name == "frangi" else str(resolve_device(device))
    key = (name, None if checkpoint is None else str(checkpoint), resolved)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _LOADERS[name](checkpoint, resolved)
        return _cache[key]


def segment(volume, model: str | Segmenter | None = None, **kwargs) -> np.ndarray:
    """Vessel mask of `volume` with `model` (a name, a Segmenter, or the default).
    Extra keywords go to load_segmenter (checkpoint, device) or segment (progress)."""
    progress = kwargs.pop("progress", None)
    segmenter = model if isinstance(model, Segmenter) else load_segmenter(model, **kwargs)
    return segmenter.segment(volume, progress=progress)
