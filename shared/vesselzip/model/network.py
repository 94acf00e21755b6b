"""MambaVesselNet++ as published with the paper, built from MONAI blocks.

Module names reproduce the published checkpoint's state dict, so its weights load
unchanged with ``strict=True`` (reading checkpoints is `vesselzip.model.checkpoints`).
Bad arguments raise ValueError: whoever loads a model for a user words the error.
For ``feature_dims = [f0..f4]``:

    enc_conv1 (1 -> f0, full res) -> downsample1 -> enc_conv2 (f0 -> f1, 1/2)
    -> downsample2 -> enc_conv3 (f1 -> f2, 1/4) -> downsample3 -> enc_conv4
    (f2 -> f3, 1/8) -> downsample4 -> enc_conv5 (f3 -> f4, 1/16)
    -> enc_mamba1..4 -> dec_mamba1..4 (f4, 1/16)
    -> dec_conv5 (+ enc_conv4 out) -> dec_conv4 (+ enc_conv3 out)
    -> dec_conv3 (+ enc_conv2 out) -> dec_conv2 (+ enc_conv1 out) -> dec_conv1 -> out
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

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

    #: Every spatial side of the input must be a multiple of this (four 2x downsamplings).
    side_multiple: ClassVar[int] = 16

    def __init__(
        self,
        in_chans: int = 1,
        out_chans: int = 2,
        feature_dims: Sequence[int] = PUBLISHED_FEATURE_DIMS,
    ):
        super().__init__()
        f = [int(d) for d in feature_dims]
        if len(f) != 5:
            raise ValueError(f"feature_dims needs 5 entries, got {len(f)}: {f}")
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
        if any(side % self.side_multiple for side in x.shape[2:]):
            raise ValueError(
                f"MambaVesselNet needs spatial sides that are multiples of {self.side_multiple}, "
                f"got {tuple(x.shape[2:])}"
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
