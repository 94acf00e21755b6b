"""MambaVesselNet++: published state-dict layout, checkpoint loading (model/checkpoints.py),
and logits against the architecture's description written out with plain torch functions."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_mixer import reference_mixer
from vesselzip.errors import ModelNotAvailableError, VesselzipError
from vesselzip.model.checkpoints import infer_config, load_checkpoint_state, load_network
from vesselzip.model.network import MambaVesselNet

MANIFEST = Path(__file__).parent / "data" / "mvn_state_dict_manifest.json"
TINY = [4, 8, 8, 16, 16]


@pytest.fixture(scope="module")
def tiny_net() -> MambaVesselNet:
    torch.manual_seed(0)
    return MambaVesselNet(in_chans=1, out_chans=2, feature_dims=TINY).eval()


def randomised_state(net: torch.nn.Module, seed: int = 0) -> dict:
    """Random weights everywhere (not the init), so every tensor matters in the logits."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g) * (0.5 / math.sqrt(max(v[0].numel(), 1)))
        + (1.0 if k.endswith("norm.weight") or k.endswith(".1.weight") else 0.0)
        for k, v in net.state_dict().items()
    }


def test_full_config_matches_published_manifest():
    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        net = MambaVesselNet(in_chans=1, out_chans=2, feature_dims=[48, 96, 192, 384, 768])
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert len(shapes) == manifest["n_tensors"] == 387
    assert list(shapes) == list(manifest["tensors"])  # same names, same order
    assert shapes == manifest["tensors"]
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 155_124_242  # 155.1 M
    assert round(n_params / 1e6, 1) == 155.1


def test_published_shapes_load_through_load_network():
    # A state dict with the manifest's shapes (on the meta device: nothing allocated)
    # goes through the same checks and size inference as the published file.
    manifest = json.loads(MANIFEST.read_text())["tensors"]
    state = {k: torch.empty(shape, device="meta") for k, shape in manifest.items()}
    net = load_network({"model": state}, device="meta")
    assert net.feature_dims == (48, 96, 192, 384, 768)
    assert (net.in_chans, net.out_chans) == (1, 2)


def test_package_exports_the_network():
    from vesselzip.model import MambaVesselNet as exported

    assert exported is MambaVesselNet


def test_default_config_is_the_published_one():
    with torch.device("meta"):
        net = MambaVesselNet()
    assert net.feature_dims == (48, 96, 192, 384, 768)
    assert (net.in_chans, net.out_chans) == (1, 2)


def test_tiny_forward_shape(tiny_net):
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        logits = tiny_net(x)
    assert logits.shape == (2, 2, 32, 32, 32)
    assert torch.isfinite(logits).all()


def test_non_cubic_input(tiny_net):
    with torch.no_grad():
        assert tiny_net(torch.randn(1, 1, 16, 32, 48)).shape == (1, 2, 16, 32, 48)


def test_sides_not_multiple_of_16_are_refused(tiny_net):
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_net(torch.randn(1, 1, 32, 32, 24))
    assert tiny_net.side_multiple == 16


def test_the_network_raises_plain_errors_without_an_http_status(tiny_net):
    # Wording an error for a user (and its HTTP status) is the loader's job.
    for bad in (
        lambda: MambaVesselNet(feature_dims=[4, 8]),
        lambda: tiny_net(torch.randn(1, 1, 8, 16, 16)),
    ):
        with pytest.raises(ValueError) as info:
            bad()
        assert not isinstance(info.value, VesselzipError)
    with pytest.raises(ModelNotAvailableError, match="cannot build MambaVesselNet.*5 entries"):
        load_network(tiny_net.state_dict(), feature_dims=[4, 8])


# --- The architecture written out with plain torch functions ----------------------


def _instance_norm(x):
    return F.instance_norm(x, eps=1e-5)


def _res_block(sd, prefix, x):
    """MONAI UnetResBlock: conv-IN-LeakyReLU(0.01)-conv-IN, plus (1x1 conv-IN) shortcut."""
    out = F.conv3d(x, sd[prefix + "conv1.conv.weight"], padding=1)
    out = F.leaky_relu(_instance_norm(out), 0.01)
    out = _instance_norm(F.conv3d(out, sd[prefix + "conv2.conv.weight"], padding=1))
    shortcut_name = prefix + "conv3.conv.weight"
    shortcut = _instance_norm(F.conv3d(x, sd[shortcut_name])) if shortcut_name in sd else x
    return F.leaky_relu(out + shortcut, 0.01)


def _channels_first_layer_norm(x, weight, bias, eps):
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1, 1) + bias.view(
        1, -1, 1, 1, 1
    )


def _mamba_block(sd, prefix, x):
    batch, channels, *grid = x.shape
    for i in (0, 1):
        layer = f"{prefix}mamba_layers.{i}."
        tokens = x.reshape(batch, channels, -1).transpose(1, 2)  # C-order flattening
        tokens = F.layer_norm(
            tokens, (channels,), sd[layer + "norm.weight"], sd[layer + "norm.bias"], 1e-5
        )
        tokens = reference_mixer(sd, tokens, prefix=layer + "mamba.")
        x = tokens.transpose(1, 2).reshape(batch, channels, *grid)
    x = _channels_first_layer_norm(x, sd[prefix + "norm.weight"], sd[prefix + "norm.bias"], 1e-6)
    x = F.conv3d(x, sd[prefix + "mlp.fc1.weight"], sd[prefix + "mlp.fc1.bias"])
    x = F.gelu(x)  # exact erf GELU
    return F.conv3d(x, sd[prefix + "mlp.fc2.weight"], sd[prefix + "mlp.fc2.bias"])


def reference_forward(sd, x):
    skips = []
    for k in (1, 2, 3, 4):
        x = _res_block(sd, f"enc_conv{k}.layer.", x)
        skips.append(x)
        x = F.conv3d(x, sd[f"downsample{k}.0.weight"], sd[f"downsample{k}.0.bias"], stride=2)
        x = _channels_first_layer_norm(
            x, sd[f"downsample{k}.1.weight"], sd[f"downsample{k}.1.bias"], 1e-6
        )
    x = _res_block(sd, "enc_conv5.layer.", x)
    for name in [f"enc_mamba{k}" for k in (1, 2, 3, 4)] + [f"dec_mamba{k}" for k in (1, 2, 3, 4)]:
        x = _mamba_block(sd, name + ".", x)
    for k, skip in zip((5, 4, 3, 2), reversed(skips), strict=True):
        x = F.conv_transpose3d(x, sd[f"dec_conv{k}.transp_conv.conv.weight"], stride=2)
        x = _res_block(sd, f"dec_conv{k}.conv_block.", torch.cat([x, skip], dim=1))
    x = _res_block(sd, "dec_conv1.layer.", x)
    return F.conv3d(x, sd["out.conv.conv.weight"], sd["out.conv.conv.bias"])


def test_logits_match_the_written_out_architecture():
    dims = [4, 8, 8, 12, 20]  # d_inner 40, dt_rank 2
    net = MambaVesselNet(in_chans=1, out_chans=3, feature_dims=dims)
    state = randomised_state(net, seed=1)
    net.load_state_dict(state, strict=True)
    x = torch.randn(1, 1, 32, 32, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = net.eval()(x)
        want = reference_forward(state, x)
    assert want.abs().max() > 1e-2  # random weights give non-trivial logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# --- Checkpoints -------------------------------------------------------------------


def published_style_checkpoint(net, tmp_path, name="best_model.ckpt", state=None):
    state = net.state_dict() if state is None else state
    path = tmp_path / name
    torch.save(
        {
            "model": state,
            "optimizer": torch.optim.Adam(net.parameters()).state_dict(),
            "dice_metric": np.float64(0.8123),
            "epoch": 4999,
        },
        path,
    )
    return path


def test_published_checkpoint_round_trip(tmp_path):
    net = MambaVesselNet(feature_dims=TINY)
    state = randomised_state(net, seed=3)
    path = published_style_checkpoint(net, tmp_path, state=state)

    loaded = load_network(path)
    plain = MambaVesselNet(feature_dims=TINY)
    plain.load_state_dict(load_checkpoint_state(path), strict=True)
    net.load_state_dict(state, strict=True)

    x = torch.randn(1, 1, 16, 16, 32)
    with torch.no_grad():
        expected = net.eval()(x)
        assert torch.equal(loaded(x), expected)
        assert torch.equal(plain.eval()(x), expected)
    assert not loaded.training
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.parameters())
    assert all(p.requires_grad for p in loaded.parameters())


def test_load_network_infers_sizes(tmp_path):
    dims = [4, 8, 12, 16, 16]
    net = MambaVesselNet(in_chans=2, out_chans=3, feature_dims=dims)
    loaded = load_network(published_style_checkpoint(net, tmp_path))
    assert (loaded.in_chans, loaded.out_chans, loaded.feature_dims) == (2, 3, tuple(dims))
    assert infer_config(net.state_dict()) == {
        "in_chans": 2,
        "out_chans": 3,
        "feature_dims": dims,
    }


def test_bare_and_data_parallel_state_dicts(tmp_path, tiny_net):
    state = tiny_net.state_dict()
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, wrapped)
    for source in (bare, str(wrapped), {"model": state}, state):
        loaded = load_checkpoint_state(source)
        assert list(loaded) == list(state)
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_missing_and_extra_keys_are_named(tmp_path, tiny_net):
    state = dict(tiny_net.state_dict())
    del state["dec_mamba4.mlp.fc2.bias"]
    state["head.weight"] = torch.zeros(2)
    with pytest.raises(ModelNotAvailableError) as info:
        load_network({"model": state})
    message = str(info.value)
    assert "1 missing: dec_mamba4.mlp.fc2.bias" in message
    assert "1 unexpected: head.weight" in message


def test_wrong_feature_dims_give_a_shape_error(tiny_net):
    with pytest.raises(ModelNotAvailableError, match="wrong shape"):
        load_network(tiny_net.state_dict(), feature_dims=[4, 8, 8, 16, 32])


def test_not_a_mambavesselnet_checkpoint():
    with pytest.raises(ModelNotAvailableError, match="missing tensor"):
        load_network({"model": {"weight": torch.zeros(3)}})
    with pytest.raises(ModelNotAvailableError, match="no state dict"):
        load_checkpoint_state({"model": "nothing here", "epoch": 3})


class NotAllowed:
    pass


def test_arbitrary_objects_are_not_unpickled(tmp_path, tiny_net):
    path = tmp_path / "unsafe.ckpt"
    torch.save({"model": tiny_net.state_dict(), "extra": NotAllowed()}, path)
    with pytest.raises(ModelNotAvailableError, match="not unpickled for safety") as info:
        load_checkpoint_state(path)
    assert "NotAllowed" in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="not found"):
        load_checkpoint_state(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelNotAvailableError, match="junk.ckpt"):
        load_checkpoint_state(junk)
