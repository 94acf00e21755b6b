"""MambaVesselNet++ checkpoints: reading them safely, the state dict and the settings
stored with the weights, checking tensor names and shapes against the network, and
writing them (training checkpoints, shippable weights).

The published format is ``{"model": state_dict, "optimizer", "dice_metric", "epoch"}``;
a bare state dict and DataParallel's ``module.`` prefix also load. Checkpoints written
by `vesselzip train` add ``"config"``: ``{"network": sizes, "inference": settings,
"training": the TrainConfig}``.

This is where a user's weights meet the network, so every failure is a
ModelNotAvailableError with a one-line reason (the network itself raises ValueError).
"""

from __future__ import annotations

import importlib
import json
import math
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vesselzip.errors import ModelNotAvailableError
from vesselzip.model.inference import InferenceConfig
from vesselzip.model.network import MambaVesselNet

#: The keys of the published checkpoint; every checkpoint written here has them.
PUBLISHED_KEYS = ("model", "optimizer", "dice_metric", "epoch")

# How torch.load(weights_only=True) words its refusal of a non-allowlisted object.
_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"


# ----------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> object:
    """The object saved in a checkpoint file, read with ``weights_only=True``: nothing
    but tensors, plain containers and numpy scalars is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"checkpoint file not found: {path}")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            if _WEIGHTS_ONLY_REFUSAL not in str(exc):
                raise
        # Training scripts often store numpy scalars (e.g. the best Dice) next to the
        # weights; allow exactly those, still refusing arbitrary objects.
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _WEIGHTS_ONLY_REFUSAL not in str(exc):
            raise ModelNotAvailableError(f"cannot read checkpoint {path}: {exc}") from exc
        refused = re.findall(r"Unsupported global: GLOBAL (\S+)", str(exc))
        raise ModelNotAvailableError(
            f"checkpoint {path} holds Python objects other than tensors, plain containers "
            f"and numpy scalars ({', '.join(refused) or 'see torch.load'}), and they are not "
            "unpickled for safety. Re-save it as {'model': model.state_dict()} with torch.save."
        ) from exc
    except Exception as exc:  # torch raises several types for files it cannot read
        raise ModelNotAvailableError(f"cannot read checkpoint {path}: {exc}") from exc


def _numpy_scalar_globals() -> list[Any]:
    import numpy as np

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    dtype_classes = [
        type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")
    ]
    return [multiarray.scalar, np.dtype, *dtype_classes]


def load_checkpoint_state(checkpoint: object) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint (a file, or an object already read).

    Accepts ``{"model": state_dict, ...}`` (the published format) or a bare state
    dict, and strips the ``module.`` prefix DataParallel adds.
    """
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise ModelNotAvailableError(
            "checkpoint holds no state dict: expected {'model': state_dict, ...} or a bare state dict"
        )
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelNotAvailableError(
            "checkpoint holds no state dict: expected {'model': state_dict, ...} or a "
            f"bare state dict, found non-tensor entries such as {not_tensors[:3]}"
        )
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def stored_config(checkpoint: object) -> dict[str, Any]:
    """The ``"config"`` entry `vesselzip train` stores with the weights ({} when absent)."""
    config = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def stored_inference_config(config: Mapping[str, Any]) -> InferenceConfig | None:
    """The inference settings in a stored config (a checkpoint's ``"config"`` entry, or
    the JSON written next to exported weights); None when it has none."""
    inference = config.get("inference")
    if not inference:
        return None
    try:
        return InferenceConfig.from_dict(dict(inference))
    except (TypeError, ValueError) as exc:
        raise ModelNotAvailableError(
            f"unusable inference settings stored with the weights: {exc}"
        ) from None


# --------------------------------------------------------- state dict vs network


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """in_chans, out_chans and feature_dims of the network a state dict belongs to."""
    try:
        convs = [state[f"enc_conv{k}.layer.conv1.conv.weight"] for k in range(1, 6)]
        out_weight = state["out.conv.conv.weight"]
    except KeyError as exc:
        raise ModelNotAvailableError(
            f"checkpoint is not a MambaVesselNet state dict: missing tensor {exc.args[0]}"
        ) from None
    return {
        "in_chans": int(convs[0].shape[1]),
        "out_chans": int(out_weight.shape[0]),
        "feature_dims": [int(w.shape[0]) for w in convs],
    }


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise a readable ModelNotAvailableError unless names and shapes match the model."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (model {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    for label, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            problems.append(f"{len(names)} {label}: {shown}")
    if problems:
        raise ModelNotAvailableError(
            "checkpoint does not fit MambaVesselNet: " + "; ".join(problems)
        )


def load_network(
    checkpoint: object,
    *,
    feature_dims: Sequence[int] | None = None,
    in_chans: int | None = None,
    out_chans: int | None = None,
    device: str | torch.device = "cpu",
) -> MambaVesselNet:
    """The network a checkpoint (a file or an object already read) was saved from,
    its weights loaded (strict), float32, in eval mode. Sizes not given are read
    from the tensor shapes."""
    state = load_checkpoint_state(checkpoint)
    inferred = infer_config(state)
    dims = inferred["feature_dims"] if feature_dims is None else feature_dims
    try:
        # Built on the meta device: no time spent initialising weights we overwrite.
        with torch.device("meta"):
            model = MambaVesselNet(
                in_chans=inferred["in_chans"] if in_chans is None else in_chans,
                out_chans=inferred["out_chans"] if out_chans is None else out_chans,
                feature_dims=dims,
            )
    except (TypeError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot build MambaVesselNet: {exc}") from None
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=torch.float32).eval()


# ----------------------------------------------------------------------- writing


def save_checkpoint(payload: Mapping[str, Any], path: Path) -> None:
    """torch.save through a temporary file: never a half-written checkpoint."""
    partial = path.with_suffix(".tmp")
    torch.save(dict(payload), partial)
    partial.replace(path)


def export_weights(checkpoint: Path, out: Path, *, half: bool = True) -> Path:
    """A small copy of a training checkpoint for distribution: the weights (fp16
    by default, loaded back as float32), the published keys, the config, and no
    optimizer state. Also writes the config as JSON next to it."""
    saved = read_checkpoint(checkpoint)
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in load_checkpoint_state(saved).items()
    }
    config = stored_config(saved)
    extras = saved if isinstance(saved, Mapping) else {}
    payload = {
        "model": state,
        "optimizer": {},  # published key kept; training state is not shipped
        "dice_metric": float(extras.get("dice_metric", math.nan)),
        "epoch": int(extras.get("epoch", 0)),
        "config": config,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    summary = {
        "feature_dims": config.get("network", {}).get("feature_dims"),
        "inference": config.get("inference", InferenceConfig().to_dict()),
        "validation_dice": payload["dice_metric"],
        "iteration": payload["epoch"],
        "training": config.get("training"),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return out
