"""The bidirectional Mamba mixer: CPU scan against the plain recurrence, and the mixer
against the architecture's description written out independently."""

import sys

import pytest
import torch
import torch.nn.functional as F

from vesselzip.model.mixer import (
    BiMambaMixer,
    cuda_kernels,
    selective_scan,
    selective_scan_reference,
)


def scan_inputs(batch, d_inner, length, n_state=16, dt_scale=1.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u = randn(batch, d_inner, length)
    delta = F.softplus(randn(batch, d_inner, length) - 2.0) * dt_scale
    A = -torch.exp(randn(d_inner, n_state).clamp(-2, 2))
    B, C = randn(batch, n_state, length), randn(batch, n_state, length)
    D, z = randn(d_inner), randn(batch, d_inner, length)
    return [t.to(dtype) for t in (u, delta, A, B, C, D, z)]


@pytest.mark.parametrize(
    "batch, length, segment_length",
    [(1, 1, None), (2, 7, None), (3, 64, None), (2, 100, 16), (2, 37, 5), (1, 300, None)],
)
def test_scan_matches_sequential_recurrence(batch, length, segment_length):
    inputs64 = scan_inputs(batch, 12, length)
    expected = selective_scan_reference(*[t.double() for t in inputs64])
    got = selective_scan(*[t.float() for t in inputs64], segment_length=segment_length)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_scan_without_skip_and_gate():
    u, delta, A, B, C, _, _ = scan_inputs(2, 8, 20)
    torch.testing.assert_close(
        selective_scan(u, delta, A, B, C),
        selective_scan_reference(u, delta, A, B, C),
        rtol=1e-5,
        atol=1e-5,
    )


def test_scan_stays_finite_for_very_fast_decay():
    # delta*A down to about -400 per step: exp underflows to 0, nothing may blow up.
    inputs = scan_inputs(2, 8, 50, dt_scale=50.0)
    got = selective_scan(*inputs)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, selective_scan_reference(*inputs), rtol=1e-5, atol=1e-5)


def test_scan_gradients_match_the_recurrence():
    inputs = [t.double().requires_grad_() for t in scan_inputs(2, 4, 9, n_state=3)]
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, segment_length=4), inputs)
    grads = torch.autograd.grad(selective_scan(*inputs).sum(), inputs)
    expected = torch.autograd.grad(selective_scan_reference(*inputs).sum(), inputs)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def reference_mixer(state, tokens, prefix=""):
    """bimamba v2 written out from the description, from a state dict's tensors."""

    def w(name):
        return state[prefix + name]

    d_inner, rank = w("D").shape[0], w("dt_proj.weight").shape[1]
    n = w("A_log").shape[1]
    xz = tokens @ w("in_proj.weight").t()  # (B, L, 2 d_inner)
    x, z = xz[..., :d_inner], xz[..., d_inner:]

    def one_direction(x, z, suffix):
        conv_w, conv_b = w(f"conv1d{suffix}.weight"), w(f"conv1d{suffix}.bias")
        A = -torch.exp(w("A_b_log" if suffix else "A_log"))
        length, width = x.shape[1], conv_w.shape[-1]
        # Causal depthwise conv: output t sees x[t-width+1 .. t], zeros before the start.
        padded = F.pad(x.transpose(1, 2), (width - 1, 0))
        conv_out = torch.stack(
            [(padded[..., t : t + width] * conv_w[:, 0]).sum(-1) + conv_b for t in range(length)],
            dim=-1,
        )
        u = F.silu(conv_out)  # (B, d_inner, L)
        dbc = u.transpose(1, 2) @ w(f"x_proj{suffix}.weight").t()
        dt_raw, Bm, Cm = dbc[..., :rank], dbc[..., rank : rank + n], dbc[..., rank + n :]
        dt = dt_raw @ w(f"dt_proj{suffix}.weight").t() + w(f"dt_proj{suffix}.bias")
        delta = F.softplus(dt).transpose(1, 2)
        return selective_scan_reference(
            u, delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2), w("D" + suffix), z.transpose(1, 2)
        )

    y_forward = one_direction(x, z, "")
    y_backward = one_direction(x.flip(1), z.flip(1), "_b").flip(-1)
    return (y_forward + y_backward).transpose(1, 2) @ w("out_proj.weight").t()


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("length", [1, 8, 33])
def test_mixer_matches_description(length):
    torch.manual_seed(0)
    mixer = BiMambaMixer(d_model=20)  # dt_rank = ceil(20/16) = 2
    randomise(mixer)
    tokens = torch.randn(2, length, 20)
    with torch.no_grad():
        torch.testing.assert_close(
            mixer(tokens), reference_mixer(mixer.state_dict(), tokens), rtol=1e-5, atol=1e-5
        )


def test_parameter_shapes_follow_mamba():
    mixer = BiMambaMixer(d_model=40)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "A_log": (80, 16),
        "D": (80,),
        "A_b_log": (80, 16),
        "D_b": (80,),
        "in_proj.weight": (160, 40),
        "conv1d.weight": (80, 1, 4),
        "conv1d.bias": (80,),
        "x_proj.weight": (3 + 32, 80),
        "dt_proj.weight": (80, 3),
        "dt_proj.bias": (80,),
        "conv1d_b.weight": (80, 1, 4),
        "conv1d_b.bias": (80,),
        "x_proj_b.weight": (3 + 32, 80),
        "dt_proj_b.weight": (80, 3),
        "dt_proj_b.bias": (80,),
        "out_proj.weight": (40, 80),
    }


def swapped_directions(mixer: BiMambaMixer) -> BiMambaMixer:
    other = BiMambaMixer(mixer.d_model)
    state = mixer.state_dict()
    pairs = [("A_log", "A_b_log"), ("D", "D_b")] + [
        (f"{m}.{p}", f"{m}_b.{p}")
        for m, params in (("conv1d", ("weight", "bias")), ("x_proj", ("weight",)))
        for p in params
    ]
    pairs += [("dt_proj.weight", "dt_proj_b.weight"), ("dt_proj.bias", "dt_proj_b.bias")]
    for a, b in pairs:
        state[a], state[b] = state[b], state[a]
    other.load_state_dict(state)
    return other


def test_reversing_the_sequence_swaps_the_directions():
    torch.manual_seed(1)
    mixer = BiMambaMixer(d_model=16)
    randomise(mixer, seed=1)
    tokens = torch.randn(2, 11, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            swapped_directions(mixer)(tokens.flip(1)), mixer(tokens).flip(1), rtol=1e-5, atol=1e-5
        )


def test_each_direction_is_causal_in_its_own_order():
    torch.manual_seed(2)
    mixer = BiMambaMixer(d_model=8)
    randomise(mixer, seed=2)
    x, z = torch.randn(1, 16, 10), torch.randn(1, 16, 10)
    x_changed = x.clone()
    x_changed[..., 4] += 1.0
    with torch.no_grad():
        forward_diff = (mixer.direction(x, z) - mixer.direction(x_changed, z)).abs()
        backward = mixer.direction(x.flip(-1), z.flip(-1), backward=True).flip(-1)
        backward_changed = mixer.direction(x_changed.flip(-1), z.flip(-1), backward=True).flip(-1)
        backward_diff = (backward - backward_changed).abs()
    assert forward_diff[..., :4].max() == 0 and forward_diff[..., 4:].max() > 0
    assert backward_diff[..., 5:].max() == 0 and backward_diff[..., :5].max() > 0


def test_initialisation_follows_mamba():
    torch.manual_seed(3)
    mixer = BiMambaMixer(d_model=32)
    expected_A_log = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(64, 16)
    for A_log, D, dt_proj in (
        (mixer.A_log, mixer.D, mixer.dt_proj),
        (mixer.A_b_log, mixer.D_b, mixer.dt_proj_b),
    ):
        torch.testing.assert_close(A_log.detach(), expected_A_log)
        assert torch.equal(D.detach(), torch.ones(64))
        dt = F.softplus(dt_proj.bias.detach())
        assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001
        assert dt_proj.weight.abs().max() <= 2**-0.5


def test_fresh_mixer_trains():
    torch.manual_seed(4)
    mixer = BiMambaMixer(d_model=8)
    tokens, target = torch.randn(2, 12, 8), torch.randn(2, 12, 8)
    optimiser = torch.optim.Adam(mixer.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.mse_loss(mixer(tokens), target)
        optimiser.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in mixer.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_cuda_kernels_are_not_imported_on_cpu():
    # Importing the module must not pull in the optional CUDA packages, and a CPU
    # forward never asks for them.
    mixer = BiMambaMixer(d_model=8)
    with torch.no_grad():
        mixer(torch.randn(1, 4, 8))
    assert "mamba_ssm" not in sys.modules
    assert "causal_conv1d" not in sys.modules


def test_cuda_kernels_missing_is_none_not_an_error():
    kernels = cuda_kernels()
    if "mamba_ssm" not in sys.modules:
        assert kernels is None


# --- The CUDA path's plumbing, with the kernels' documented semantics on CPU ---------


def documented_selective_scan_fn(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False
):
    """mamba-ssm's selective_scan_fn as documented, checking the layouts it requires."""
    batch, d_inner, length = u.shape
    n_state = A.shape[1]
    assert delta.shape == z.shape == (batch, d_inner, length)
    assert A.shape == (d_inner, n_state) and A.dtype == torch.float32
    assert B.shape == C.shape == (batch, n_state, length)
    assert D.shape == delta_bias.shape == (d_inner,)
    assert all(t.stride(-1) == 1 for t in (u, delta, B, C, z))
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return selective_scan_reference(u, delta, A, B, C, D, z)


def documented_causal_conv1d_fn(x, weight, bias=None, activation=None):
    """causal-conv1d's causal_conv1d_fn as documented: weight (channels, width)."""
    channels, width = weight.shape
    assert x.shape[1] == channels and x.stride(-1) == 1
    out = F.conv1d(x, weight[:, None], bias, padding=width - 1, groups=channels)
    out = out[..., : x.shape[-1]]
    return F.silu(out) if activation in ("silu", "swish") else out


@pytest.mark.parametrize("backward", [False, True])
def test_kernel_path_computes_the_same_numbers(backward):
    torch.manual_seed(5)
    mixer = BiMambaMixer(d_model=24)
    randomise(mixer, seed=5)
    x, z = torch.randn(2, 48, 13), torch.randn(2, 48, 13)
    kernels = (documented_selective_scan_fn, documented_causal_conv1d_fn)
    with torch.no_grad():
        torch.testing.assert_close(
            mixer.direction(x, z, backward=backward, kernels=kernels),
            mixer.direction(x, z, backward=backward),
            rtol=1e-5,
            atol=1e-5,
        )
