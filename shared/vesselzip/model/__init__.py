"""MambaVesselNet++ and friends: the network, its checkpoints, whole-volume inference,
named segmenters (bundled weights, a user checkpoint, a Frangi baseline) and training."""

from vesselzip.model.segmenters import (
    Segmenter,
    available_segmenters,
    load_segmenter,
    loadable_models,
    segment,
)

__all__ = [
    "MambaVesselNet",
    "Segmenter",
    "available_segmenters",
    "load_segmenter",
    "loadable_models",
    "segment",
]


def __getattr__(name: str):
    # The network module is imported on first use so that the Frangi baseline and
    # the registry work even while the network is being changed or is unavailable.
    if name == "MambaVesselNet":
        from vesselzip.model.network import MambaVesselNet

        return MambaVesselNet
    raise AttributeError(f"module 'vesselzip.model' has no attribute {name!r}")
