"""The bidirectional Mamba mixer ("bimamba v2") of MambaVesselNet++.

Two paths compute the same numbers:

* a pure-PyTorch path (any device) with a vectorised selective scan for CPU
  workers;
* a CUDA fast path through ``mamba-ssm``'s ``selective_scan_fn`` and
  ``causal-conv1d``, used only when those packages import (the optional ``gpu``
  extra) and the tensors live on CUDA. They are imported lazily, on first use.

Shapes follow mamba-ssm: u and delta are (batch, d_inner, L), A is (d_inner, N),
B and C are (batch, N, L).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def cuda_kernels() -> tuple | None:
    """(selective_scan_fn, causal_conv1d_fn) from the optional ``gpu`` extra, or None."""
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):  # not installed, or built against another CUDA/torch
        return None
    return selective_scan_fn, causal_conv1d_fn


def selective_scan_reference(u, delta, A, B, C, D=None, z=None):
    """The recurrence written out step by step; slow, kept as the yardstick.

    state_t = exp(delta_t * A) * state_{t-1} + delta_t * B_t * u_t
    y_t = <state_t, C_t> + D * u_t, then y * SiLU(z) when z is given.
    """
    batch, d_inner, length = u.shape
    state = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)
        state = decay * state + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((state * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


# Elements per precomputed (steps, batch, d_inner, N) tensor: ~256 KB keeps a
# segment's decays and inputs near the cache and bounds memory for long sequences.
SEGMENT_ELEMENTS = 2**16


def selective_scan(u, delta, A, B, C, D=None, z=None, segment_length: int | None = None):
    """Vectorised selective scan, same result as :func:`selective_scan_reference`.

    The recurrence stays sequential over t (as in the reference, so the rounding
    matches), but everything else is batched: for a segment of steps, all decays
    exp(delta*A) and inputs delta*B*u are computed in one go, laid out step-major
    so each step is one fused multiply-add on contiguous memory, and the outputs
    <state_t, C_t> are one batched matmul. Segments carry the state, bounding memory.
    Measured against chunked scans (cumulative decay products per chunk plus a carry
    between chunks) this was faster on CPU: those do several extra passes over the
    (batch, d_inner, L, N) tensor and memory traffic, not Python steps, dominates.
    """
    batch, d_inner, length = u.shape
    n_state = A.shape[1]
    in_dtype = u.dtype
    # Half precision inputs are scanned in float32; float64 stays float64.
    work_dtype = torch.promote_types(in_dtype, torch.float32)
    u, delta, A, B, C = (t.to(work_dtype) for t in (u, delta, A, B, C))
    step = segment_length or max(1, SEGMENT_ELEMENTS // (batch * d_inner * n_state))
    # In place is fastest but autograd cannot see through it.
    in_place = not (torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C)))

    # Step-major copies of the small tensors: (L, batch, ...).
    delta_steps = delta.permute(2, 0, 1).unsqueeze(-1).contiguous()  # (L, batch, d_inner, 1)
    du_steps = (delta * u).permute(2, 0, 1).unsqueeze(-1).contiguous()  # (L, batch, d_inner, 1)
    B_steps = B.permute(2, 0, 1).unsqueeze(-2).contiguous()  # (L, batch, 1, N)
    C_steps = C.permute(2, 0, 1).unsqueeze(-1).contiguous()  # (L, batch, N, 1)

    state = u.new_zeros(batch, d_inner, n_state)
    ys = []
    for start in range(0, length, step):
        stop = min(start + step, length)
        decay = torch.exp(delta_steps[start:stop] * A)  # (S, batch, d_inner, N)
        states = du_steps[start:stop] * B_steps[start:stop]  # inputs, become states
        if in_place:
            for t in range(stop - start):
                state = states[t].addcmul_(decay[t], state)
        else:
            per_step = []
            for t in range(stop - start):
                state = torch.addcmul(states[t], decay[t], state)
                per_step.append(state)
            states = torch.stack(per_step)
        ys.append(torch.matmul(states, C_steps[start:stop]).squeeze(-1))  # (S, batch, d_inner)
    y = torch.cat(ys).permute(1, 2, 0)

    if D is not None:
        y = y + D.to(work_dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(work_dtype))
    return y.to(in_dtype)


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """Depthwise conv1d over (batch, channels, L), output t seeing x[t-W+1..t] (zeros before).

    Written as W shifted multiply-adds: on CPU this beats nn.Conv1d's depthwise
    kernel at these sizes.
    """
    width, length = weight.shape[-1], x.shape[-1]
    padded = F.pad(x, (width - 1, 0))
    out = torch.addcmul(bias[:, None], weight[:, 0, 0, None], padded[..., :length])
    for k in range(1, width):
        out = out.addcmul(weight[:, 0, k, None], padded[..., k : k + length])
    return out


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba mixer on tokens (batch, L, d_model) -> (batch, L, d_model).

    Parameter names match the published checkpoint: the backward direction's
    parameters carry ``_b`` (``A_b_log``, ``conv1d_b``, ...); ``in_proj`` and
    ``out_proj`` are shared.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        d_inner = self.d_inner

        # Registration order reproduces the published state-dict order.
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.A_b_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D_b = nn.Parameter(torch.empty(d_inner))
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = self._depthwise_conv()
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.conv1d_b = self._depthwise_conv()
        self.x_proj_b = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj_b = nn.Linear(self.dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

        self._dt_range = (dt_min, dt_max, dt_init_floor)
        # Set False to run the pure-PyTorch path on CUDA too (e.g. to compare paths).
        self.use_cuda_kernels = True
        self.reset_mamba_parameters()

    def _depthwise_conv(self) -> nn.Conv1d:
        return nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=self.d_conv,
            groups=self.d_inner,
            padding=self.d_conv - 1,
        )

    @torch.no_grad()
    def reset_mamba_parameters(self) -> None:
        """Mamba's initialisation, so that a freshly built mixer trains."""
        if self.A_log.is_meta:
            return
        dt_min, dt_max, dt_floor = self._dt_range
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        for A_log, D, dt_proj in (
            (self.A_log, self.D, self.dt_proj),
            (self.A_b_log, self.D_b, self.dt_proj_b),
        ):
            A_log.copy_(torch.log(A))
            D.fill_(1.0)
            # Small random dt_proj weights and a bias whose softplus is a step size
            # drawn log-uniformly in [dt_min, dt_max].
            std = self.dt_rank**-0.5
            nn.init.uniform_(dt_proj.weight, -std, std)
            log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
            dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=dt_floor)
            dt_proj.bias.copy_(_inverse_softplus(dt))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2*d_inner, L)
        x, z = xz.chunk(2, dim=1)
        y_forward = self.direction(x, z)
        y_backward = self.direction(x.flip(-1), z.flip(-1), backward=True)
        y = y_forward + y_backward.flip(-1)
        return self.out_proj(y.transpose(1, 2))

    def direction(self, x: torch.Tensor, z: torch.Tensor, backward: bool = False, kernels=None):
        """One direction's gated scan on (batch, d_inner, L); flips nothing itself.

        ``kernels`` is a (selective_scan_fn, causal_conv1d_fn) pair with mamba-ssm's
        signatures; by default mamba-ssm's own when the tensors are on CUDA, it is
        installed and ``use_cuda_kernels`` is set, else the pure-PyTorch path.
        """
        if kernels is None and x.is_cuda and self.use_cuda_kernels:
            kernels = cuda_kernels()
        if backward:
            params = (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
        else:
            params = (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        return self._direction(x, z, *params, kernels=kernels)

    def _direction(self, x, z, conv1d, x_proj, dt_proj, A_log, D, kernels):
        if kernels is not None:
            selective_scan_fn, causal_conv1d_fn = kernels
            u = causal_conv1d_fn(
                x.contiguous(), conv1d.weight.squeeze(1), conv1d.bias, activation="silu"
            )
        else:
            u = F.silu(causal_depthwise_conv(x, conv1d.weight, conv1d.bias))

        x_dbl = x_proj(u.transpose(1, 2))  # (batch, L, R + 2N)
        dt_raw, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt_raw @ dt_proj.weight.t()).transpose(1, 2)  # (batch, d_inner, L), no bias yet
        B = B.transpose(1, 2).contiguous()  # (batch, N, L)
        C = C.transpose(1, 2).contiguous()
        A = -torch.exp(A_log)

        if kernels is not None:
            return selective_scan_fn(
                u.contiguous(),
                delta.contiguous(),
                A.float(),
                B,
                C,
                D=D.float(),
                z=z.contiguous(),
                delta_bias=dt_proj.bias.float(),
                delta_softplus=True,
            )
        delta = F.softplus(delta + dt_proj.bias[:, None])
        return selective_scan(u, delta, A, B, C, D=D, z=z)
