"""fused_leaky_relu: y = gain * leaky_relu(x + bias, negative_slope) in one pass.

Side by side, as in stylegan2-ada's bias_act: the wrapper
(:func:`fused_leaky_relu`, :class:`FusedLeakyReLU`), the reference
(:func:`leaky_relu_ref`, plain PyTorch) and the kernels
(``csrc/fused_leaky_relu_cpu.cpp``, ``csrc/fused_leaky_relu.cu``).

Why a fused op helps a gradient penalty: the penalty backpropagates through
the critic's own backward (a double backward). Stock ``leaky_relu``'s
double-backward rule sends ``zeros_like(x)`` back to its input, and autograd
carries those zeros through every earlier layer, running a
``convolution_backward`` on zeros per conv. Here every Function has
``set_materialize_grads(False)``, returns None where the true gradient is
zero, and reads its mask from a *detached* saved tensor, so no graph edge
leads back into the forward pass and that work never happens. Parameter
gradients are unchanged.

The three Functions and their adjoints (A = diag(gain * m), m = 1 where the
pre-activation is > 0 else negative_slope; R sums over all dims but ``dim``)::

    _Activation  y  = A (x + R^T b)            backward: _Gradient
    _Gradient    dx = A dy, db = R A dy        backward: _Adjoint
    _Adjoint     dy = A (ddx + R^T ddb)        backward: _Gradient

The mask is constant almost everywhere, so each backward is linear and the
chain closes: every derivative order works. Each Function saves one tensor:
the output y (whose sign is the pre-activation's when negative_slope >= 0;
for a negative slope, x + b itself).

Ties: at x + b == 0 the mask takes the slope, as PyTorch's leaky_relu
backward does. In float32 the forward and backward follow the reference's
operation order and match it bit for bit; float16/bfloat16 are computed in
float32 and rounded once. The bias gradient is reduced in the same pass, in
float64 on CPU (sums may differ from the reference in the last bits).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import backend


def leaky_relu_ref(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                   gain: float = 1.0, dim: int = 1) -> torch.Tensor:
    """The reference: ``leaky_relu(x + bias, negative_slope) * gain`` with stock ops."""
    if bias is not None:
        shape = [1] * x.dim()
        shape[dim] = -1
        x = x + bias.view(shape)
    y = F.leaky_relu(x, negative_slope)
    return y if gain == 1.0 else y * gain


class _Config:
    """What every Function of one call shares: the kernels and the constants."""

    __slots__ = ("kernels", "slope", "gain", "dim", "sign")

    def __init__(self, kernels, slope: float, gain: float, dim: int):
        self.kernels, self.slope, self.gain, self.dim = kernels, slope, gain, dim
        # The saved y has the sign of x + b times the sign of gain (slope >= 0).
        self.sign = -1.0 if gain < 0 else 1.0


class _Activation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, cfg: _Config):
        ctx.set_materialize_grads(False)
        ctx.cfg = cfg
        k = cfg.kernels
        if cfg.slope >= 0:
            y = k.act(x, bias, None, 1.0, cfg.slope, cfg.gain, cfg.dim)
            ctx.save_for_backward(y)
        else:
            # A negative slope flips the sign of the negative side: y no longer
            # tells where x + b > 0, so keep x + b (mask sign +1) instead.
            pre = x if bias is None else k.act(x, bias, None, 1.0, 1.0, 1.0, cfg.dim)
            y = k.act(pre, None, None, 1.0, cfg.slope, cfg.gain, cfg.dim)
            ctx.save_for_backward(pre)
            ctx.cfg = _Config(k, cfg.slope, cfg.gain, cfg.dim)
            ctx.cfg.sign = 1.0
        return y

    @staticmethod
    def backward(ctx, dy):
        if dy is None:
            return None, None, None
        (saved,) = ctx.saved_tensors
        mask = saved.detach()  # no edge back into this forward: nothing to send zeros to
        want_x, want_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if want_bias:
            dx, dbias = _Gradient.apply(dy, mask, ctx.cfg, True)
        else:
            dx, dbias = _Gradient.apply(dy, mask, ctx.cfg, False), None
        return (dx if want_x else None), dbias, None


class _Gradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, mask, cfg: _Config, want_bias: bool):
        ctx.set_materialize_grads(False)
        ctx.cfg, ctx.want_bias = cfg, want_bias
        ctx.save_for_backward(mask)
        du, dbias = cfg.kernels.grad(u, mask, cfg.sign, cfg.slope, cfg.gain, cfg.dim, want_bias)
        return (du, dbias) if want_bias else du

    @staticmethod
    def backward(ctx, *grads):
        ddu = grads[0]
        ddbias = grads[1] if ctx.want_bias else None
        if ddu is None and ddbias is None:
            return None, None, None, None
        (mask,) = ctx.saved_tensors
        if ddu is None:
            ddu = torch.zeros_like(mask)
        return _Adjoint.apply(ddu, ddbias, mask, ctx.cfg), None, None, None


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, w, mask, cfg: _Config):
        ctx.set_materialize_grads(False)
        ctx.cfg = cfg
        ctx.save_for_backward(mask)
        return cfg.kernels.act(v, w, mask, cfg.sign, cfg.slope, cfg.gain, cfg.dim)

    @staticmethod
    def backward(ctx, g):
        if g is None:
            return None, None, None, None
        (mask,) = ctx.saved_tensors
        want_v, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if want_w:
            dv, dw = _Gradient.apply(g, mask, ctx.cfg, True)
        else:
            dv, dw = _Gradient.apply(g, mask, ctx.cfg, False), None
        return (dv if want_v else None), dw, None, None


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     gain: float = 1.0, dim: int = 1) -> torch.Tensor:
    """y = gain * leaky_relu(x + bias, negative_slope), bias broadcast along ``dim``.

    Args:
        x: any shape with ``dim`` in range; float32/float64 (CPU, CUDA) and
            float16/bfloat16 (computed in float32); contiguous, channels_last or
            any dense layout as is (others are made contiguous).
        bias: (x.shape[dim],) of x's dtype, or None.
        negative_slope: slope for x + b <= 0 (PyTorch's tie rule); any sign.
        gain: output scale (e.g. sqrt(2) to keep unit variance).
        dim: the channel dim of ``bias``.

    Returns:
        y: x's shape, dtype and layout.

    Derivatives: any order, w.r.t. x and bias (and the incoming gradients of
    the backward passes); the saved mask is not differentiated (it is
    piecewise constant). Runs the ``cpu``/``cuda`` kernels or the reference as
    :mod:`ganzoo.ops.backend` decides.
    """
    d = dim + x.dim() if dim < 0 else dim
    if bias is not None:
        if not 0 <= d < x.dim():
            raise ValueError(f"dim {dim} is out of range for a {x.dim()}-d input")
        if bias.dim() != 1 or bias.shape[0] != x.shape[d]:
            raise ValueError(f"bias must have shape ({x.shape[d]},) for dim {dim}, got {tuple(bias.shape)}")
    kernels = None
    if backend.supports(x) and (bias is None or (bias.dtype == x.dtype and bias.device == x.device)):
        kernels = backend.kernels(x.device)
    if kernels is None:
        return leaky_relu_ref(x, bias, negative_slope, gain, d)
    slope, gain = float(negative_slope), float(gain)
    needs_graph = torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad))
    if not needs_graph:
        return kernels.act(x, bias, None, 1.0, slope, gain, d)
    return _Activation.apply(x, bias, _Config(kernels, slope, gain, d))


class FusedLeakyReLU(nn.Module):
    """gain * leaky_relu(x + bias, negative_slope) as a layer (see :func:`fused_leaky_relu`).

    channels: number of channels (size of ``dim``) for a learned bias, or None
        for no bias (a drop-in for ``nn.LeakyReLU(negative_slope)``).
    bias: learn a bias (initialised to 0) when ``channels`` is given.
    """

    def __init__(self, channels: int | None = None, bias: bool = True, negative_slope: float = 0.2,
                 gain: float = 1.0, dim: int = 1):
        super().__init__()
        self.channels, self.negative_slope, self.gain, self.dim = channels, negative_slope, gain, dim
        if channels is not None and bias:
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.gain, self.dim)

    def extra_repr(self) -> str:
        parts = [f"negative_slope={self.negative_slope}"]
        if self.bias is not None:
            parts.insert(0, f"channels={self.channels}")
        if self.gain != 1.0:
            parts.append(f"gain={self.gain:g}")
        return ", ".join(parts)
