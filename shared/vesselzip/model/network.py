"""MambaVesselNet++ as published with the paper, built from MONAI blocks.

Module names reproduce the published checkpoint's state dict, so its weights load
unchanged with ``strict=True``. For ``feature_dims = [f0..f4]``:

    enc_conv1 (1 -> f0, full res) -> downsample1 -> enc_conv2 (f0 -> f1, 1/2)
    -> downsample2 -> enc_conv3 (f1 -> f2, 1/4) -> downsample3 -> enc_conv4
    (f2 -> f3, 1/8) -> downsample4 -> enc_conv5 (f3 -> f4, 1/16)
    -> enc_mamba1..4 -> dec_mamba1..4 (f4, 1/16)
    -> dec_conv5 (+ enc_conv4 out) -> dec_conv4 (+ enc_conv3 out)
    -> dec_conv3 (+ enc_conv2 out) -> dec_conv2 (+ enc_conv1 out) -> dec_conv1 -> out
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from vesselzip.errors import VesselzipError
from vesselzip.model.mixer import BiMambaMixer

PUBLISHED_FEATURE_DIMS = (48, 96, 192, 384, 768)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (batch, C, D, H, W), per voxel."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


class MambaLayer(nn.Module):
    """Tokens from the grid (C-order), LayerNorm, bidirectional mixer, back to the grid."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-5)
        self.mamba = BiMambaMixer(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *grid = x.shape
        tokens = x.reshape(batch, channels, -1).transpose(1, 2)  # (batch, L, C)
        tokens = self.mamba(self.norm(tokens))
        return tokens.transpose(1, 2).reshape(batch, channels, *grid)


class Mlp(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv3d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv3d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MambaBlock(nn.Module):
    """Two MambaLayers, channels-first LayerNorm, MLP; no residual connections."""

    def __init__(self, channels: int):
        super().__init__()
        self.mamba_layers = nn.Sequential(MambaLayer(channels), MambaLayer(channels))
        self.norm = ChannelsFirstLayerNorm(channels)
        self.mlp = Mlp(channels, 4 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(self.mamba_layers(x)))


def _res_block(in_channels: int, out_channels: int) -> UnetrBasicBlock:
    return UnetrBasicBlock(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        stride=1,
        norm_name="instance",
        res_block=True,
    )


def _up_block(in_channels: int, out_channels: int) -> UnetrUpBlock:
    return UnetrUpBlock(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        upsample_kernel_size=2,
        norm_name="instance",
        res_block=True,
    )


def _downsample(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(channels, channels, kernel_size=2, stride=2),
        ChannelsFirstLayerNorm(channels, eps=1e-6),
    )


class MambaVesselNet(nn.Module):
    """MambaVesselNet++: logits (batch, out_chans, D, H, W); sides must be multiples of 16."""

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 2,
        feature_dims: Sequence[int] = PUBLISHED_FEATURE_DIMS,
    ):
        super().__init__()
        f = [int(d) for d in feature_dims]
        if len(f) != 5:
            raise VesselzipError(f"feature_dims needs 5 entries, got {len(f)}: {f}")
        self.in_chans, self.out_chans, self.feature_dims = in_chans, out_chans, tuple(f)

        # Registration order reproduces the published state-dict order.
        self.enc_conv1 = _res_block(in_chans, f[0])
        self.downsample1 = _downsample(f[0])
        self.enc_conv2 = _res_block(f[0], f[1])
        self.downsample2 = _downsample(f[1])
        self.enc_conv3 = _res_block(f[1], f[2])
        self.downsample3 = _downsample(f[2])
        self.enc_conv4 = _res_block(f[2], f[3])
        self.downsample4 = _downsample(f[3])
        self.enc_conv5 = _res_block(f[3], f[4])
        self.enc_mamba1 = MambaBlock(f[4])
        self.enc_mamba2 = MambaBlock(f[4])
        self.enc_mamba3 = MambaBlock(f[4])
        self.enc_mamba4 = MambaBlock(f[4])
        self.dec_mamba1 = MambaBlock(f[4])
        self.dec_mamba2 = MambaBlock(f[4])
        self.dec_mamba3 = MambaBlock(f[4])
        self.dec_mamba4 = MambaBlock(f[4])
        self.dec_conv5 = _up_block(f[4], f[3])
        self.dec_conv4 = _up_block(f[3], f[2])
        self.dec_conv3 = _up_block(f[2], f[1])
        self.dec_conv2 = _up_block(f[1], f[0])
        self.dec_conv1 = _res_block(f[0], f[0])
        self.out = UnetOutBlock(spatial_dims=3, in_channels=f[0], out_channels=out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(side % 16 for side in x.shape[2:]):
            raise VesselzipError(
                f"MambaVesselNet needs spatial sides that are multiples of 16, got {tuple(x.shape[2:])}"
            )
        enc1 = self.enc_conv1(x)
        enc2 = self.enc_conv2(self.downsample1(enc1))
        enc3 = self.enc_conv3(self.downsample2(enc2))
        enc4 = self.enc_conv4(self.downsample3(enc3))
        hidden = self.enc_conv5(self.downsample4(enc4))
        for block in (
            self.enc_mamba1,
            self.enc_mamba2,
            self.enc_mamba3,
            self.enc_mamba4,
            self.dec_mamba1,
            self.dec_mamba2,
            self.dec_mamba3,
            self.dec_mamba4,
        ):
            hidden = block(hidden)
        dec = self.dec_conv5(hidden, enc4)
        dec = self.dec_conv4(dec, enc3)
        dec = self.dec_conv3(dec, enc2)
        dec = self.dec_conv2(dec, enc1)
        return self.out(self.dec_conv1(dec))

    @classmethod
    def from_checkpoint(
        cls,
        path,
        feature_dims: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
        in_chans: int | None = None,
        out_chans: int | None = None,
    ) -> MambaVesselNet:
        """Build the network a checkpoint was saved from and load it (strict), in eval mode.

        ``path`` is a file or an already loaded checkpoint object. Sizes not given
        are read from the tensor shapes.
        """
        state = load_checkpoint_state(path)
        inferred = infer_config(state)
        config = {
            "in_chans": inferred["in_chans"] if in_chans is None else in_chans,
            "out_chans": inferred["out_chans"] if out_chans is None else out_chans,
            "feature_dims": inferred["feature_dims"] if feature_dims is None else feature_dims,
        }
        # Built on the meta device: no time spent initialising weights we overwrite.
        with torch.device("meta"):
            model = cls(**config)
        check_state_dict(model, state)
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device=device, dtype=torch.float32).eval()


def load_checkpoint_state(path_or_obj) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint file or object.

    Accepts ``{"model": state_dict, ...}`` (the published format) or a bare state
    dict, and strips the ``module.`` prefix DataParallel adds. Files are read with
    ``weights_only=True``: nothing but tensors and plain containers is unpickled.
    """
    obj = _load_file(path_or_obj) if isinstance(path_or_obj, (str, Path)) else path_or_obj
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise VesselzipError(
            "checkpoint holds no state dict: expected {'model': state_dict, ...} or a bare state dict"
        )
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise VesselzipError(
            "checkpoint holds no state dict: expected {'model': state_dict, ...} or a "
            f"bare state dict, found non-tensor entries such as {not_tensors[:3]}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _load_file(path) -> object:
    path = Path(path)
    if not path.is_file():
        raise VesselzipError(f"checkpoint file not found: {path}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if _WEIGHTS_ONLY_REFUSAL not in str(exc):
                raise
        # Training scripts often store numpy scalars (e.g. the best Dice) next to the
        # weights; allow exactly those, still refusing arbitrary objects.
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _WEIGHTS_ONLY_REFUSAL not in str(exc):
            raise VesselzipError(f"cannot read checkpoint {path}: {exc}") from exc
        refused = re.findall(r"Unsupported global: GLOBAL (\S+)", str(exc))
        raise VesselzipError(
            f"checkpoint {path} holds Python objects other than tensors, plain containers "
            f"and numpy scalars ({', '.join(refused) or 'see torch.load'}), and they are not "
            "unpickled for safety. Re-save it as {'model': model.state_dict()} with torch.save."
        ) from exc
    except Exception as exc:  # torch raises several types for files it cannot read
        raise VesselzipError(f"cannot read checkpoint {path}: {exc}") from exc


# How torch.load(weights_only=True) words its refusal of a non-allowlisted object.
_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"


def _numpy_scalar_globals() -> list:
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar

    dtype_classes = [
        type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")
    ]
    return [scalar, np.dtype, *dtype_classes]


def infer_config(state: Mapping[str, torch.Tensor]) -> dict:
    """in_chans, out_chans and feature_dims of the network a state dict belongs to."""
    try:
        convs = [state[f"enc_conv{k}.layer.conv1.conv.weight"] for k in range(1, 6)]
        out_weight = state["out.conv.conv.weight"]
    except KeyError as exc:
        raise VesselzipError(
            f"checkpoint is not a MambaVesselNet state dict: missing tensor {exc.args[0]}"
        ) from None
    return {
        "in_chans": int(convs[0].shape[1]),
        "out_chans": int(out_weight.shape[0]),
        "feature_dims": [int(w.shape[0]) for w in convs],
    }


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise a readable VesselzipError unless names and shapes match the model exactly."""
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
        raise VesselzipError("checkpoint does not fit MambaVesselNet: " + "; ".join(problems))
