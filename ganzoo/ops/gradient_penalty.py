"""Gradient penalty (WGAN-GP) and R1: reference and fused paths behind one function.

Side by side: the wrappers (:func:`gradient_penalty`, :func:`r1_penalty`,
:func:`interpolate`, :func:`gradient_norm_penalty`), the reference (plain
PyTorch: ``torch.lerp``, :func:`per_sample_norm`, autograd) and the kernels
(``csrc/gradient_penalty_cpu.cpp``, ``csrc/gradient_penalty.cu``). The fused
path computes x_hat in one pass, the per-sample norms and the penalty in one
kernel, and the penalty's backward dG = 2 lambda / B (||g|| - c) / ||g|| * g in
one kernel; :mod:`ganzoo.ops.backend` picks the path. Both draw eps from the
same RNG call, so a seeded run is the same with either.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..precision import inner_grad_scale

from . import backend


def per_sample_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample's gradient over all non-batch dims: (B, ...) -> (B,).

    Several public implementations take the norm over the whole batch (or only
    dim 1 of an image); the penalty is defined per sample.
    """
    return grad.flatten(1).norm(2, dim=1)


def _interpolate_ref(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    eps = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    return torch.lerp(fake, real, eps)


_lerp_fma: dict[str, bool] = {}


def _lerp_rounds_once(device: torch.device) -> bool:
    """Whether torch.lerp rounds its multiply-add once (FMA) on this device type.

    PyTorch's CPU lerp does on AVX2/AVX512 machines and not on others; its
    CUDA lerp does. The kernel follows it, because a one-ulp change of x_hat
    can flip a LeakyReLU mask in the critic and move the parameter gradients
    far more than rounding. Found once per device type by a small probe.
    """
    if device.type not in _lerp_fma:
        g = torch.Generator().manual_seed(0)
        start, end = torch.randn(2, 2, 4096, generator=g).to(device)
        w = torch.tensor([[0.3], [0.8]], device=device)
        got = torch.lerp(start, end, w)
        coeff, base = torch.where(w < 0.5, w, w - 1), torch.where(w < 0.5, start, end)
        once = (base.double() + coeff.double() * (end - start).double()).float()
        twice = base + coeff * (end - start)
        _lerp_fma[device.type] = bool((got == once).sum() >= (got == twice).sum())
    return _lerp_fma[device.type]


class _Interpolate(torch.autograd.Function):
    """x_hat by the kernel; the backward in plain ops (so any order works)."""

    @staticmethod
    def forward(ctx, real, fake, eps, kernels):
        ctx.save_for_backward(real, fake, eps)
        return kernels.interpolate(real, fake, eps, _lerp_rounds_once(real.device))

    @staticmethod
    def backward(ctx, grad):
        real, fake, eps = ctx.saved_tensors
        w = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
        d_real = grad * w if ctx.needs_input_grad[0] else None
        d_fake = grad * (1 - w) if ctx.needs_input_grad[1] else None
        d_eps = None
        if ctx.needs_input_grad[2]:
            d_eps = (grad * (real - fake)).flatten(1).sum(1).view(eps.shape).to(eps.dtype)
        return d_real, d_fake, d_eps, None


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake, per sample (PyTorch's lerp formula).

    real, fake: (B, ...) same shape; eps: (B,) in [0, 1], one per sample.
    Differentiable to any order w.r.t. all three. The kernel reproduces
    ``torch.lerp`` bit for bit (see :func:`_lerp_rounds_once`).
    """
    kernels = None
    if (backend.supports(real) and fake.shape == real.shape and fake.dtype == real.dtype
            and fake.device == real.device and eps.device == real.device and real.dim() >= 1
            and eps.numel() == real.shape[0]):
        kernels = backend.kernels(real.device)
    if kernels is None:
        return _interpolate_ref(real, fake, eps)
    if torch.is_grad_enabled() and (real.requires_grad or fake.requires_grad or eps.requires_grad):
        return _Interpolate.apply(real, fake, eps, kernels)
    return kernels.interpolate(real, fake, eps, _lerp_rounds_once(real.device))


def _penalty_ref(grad: torch.Tensor, weight: float, center: float) -> tuple[torch.Tensor, torch.Tensor]:
    norms = per_sample_norm(grad)
    return weight * (norms - center).pow(2).mean(), norms


class _Penalty(torch.autograd.Function):
    """(penalty, norms) by one kernel; the backward by one kernel, or in plain
    ops when a graph of it is wanted (create_graph), so any order works."""

    @staticmethod
    def forward(ctx, grad, weight, center, kernels):
        ctx.set_materialize_grads(False)
        ctx.weight, ctx.center, ctx.kernels = weight, center, kernels
        penalty, norms = kernels.penalty_forward(grad, weight, center)
        ctx.save_for_backward(grad, norms)
        ctx.mark_non_differentiable(norms)
        return penalty, norms

    @staticmethod
    def backward(ctx, d_penalty, _d_norms):
        if d_penalty is None:
            return None, None, None, None
        grad, norms = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of this backward is wanted
            n = per_sample_norm(grad)
            positive = n > 0
            safe = torch.where(positive, n, torch.ones_like(n))
            coef = torch.where(positive, (n - ctx.center) / safe, torch.zeros_like(n))
            scale = d_penalty * (2.0 * ctx.weight / grad.shape[0])
            return scale * coef.view(-1, *([1] * (grad.dim() - 1))) * grad, None, None, None
        return ctx.kernels.penalty_backward(d_penalty, grad, norms, ctx.weight, ctx.center), None, None, None


def gradient_norm_penalty(grad: torch.Tensor, *, weight: float = 10.0,
                          center: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """weight * mean_b((||grad_b||_2 - center)^2) and the norms, from a gradient.

    grad: (B, ...) the critic's gradient w.r.t. its input (with its graph).
    Returns (penalty: 0-d, norms: (B,)); the penalty is differentiable to any
    order w.r.t. grad; the norms are for logging (not differentiable on the
    fused path).
    """
    kernels = backend.kernels(grad.device) if backend.supports(grad) and grad.dim() >= 1 and grad.shape[0] > 0 else None
    if kernels is None:
        return _penalty_ref(grad, weight, center)
    if torch.is_grad_enabled() and grad.requires_grad:
        return _Penalty.apply(grad, float(weight), float(center), kernels)
    return kernels.penalty_forward(grad, float(weight), float(center))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    weight: float = 10.0,
    center: float = 1.0,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """weight * mean_i((||grad_x D(x_hat_i)||_2 - center)^2), differentiable w.r.t. D's parameters.

    Args:
        critic: maps (B, ...) to scores (B,) or (B, 1); close over labels for
            a conditional critic.
        real: (B, ...) real samples.
        fake: (B, ...) generated samples (detached by the caller or not), or
            None to penalise at ``real`` itself (R1: ``fake=None, center=0``;
            note R1 is usually weighted gamma / 2; see :func:`r1_penalty`).
        weight: lambda (10 in the WGAN-GP paper).
        center: target norm c (1 for WGAN-GP, 0 for R1 / zero-centred GP).
        eps: (B,) interpolation weights in [0, 1]; drawn U(0, 1) per sample
            from torch's default RNG when None.

    Returns:
        (penalty: 0-d tensor, grad_norm: (B,) per-sample norms, detached).

    Derivatives: the penalty backpropagates to the critic's parameters (a
    double backward through the critic; use :class:`~ganzoo.ops.FusedLeakyReLU`
    in the critic to skip the zero-gradient work of stock LeakyReLU there), and
    further orders work. real and fake get no gradient.
    """
    if fake is None:
        x_hat = real.detach()
    else:
        if eps is None:
            eps = torch.rand(real.shape[0], device=real.device)
        with torch.no_grad():  # fake may be bf16/fp16 under autocast: interpolate in real's dtype
            x_hat = interpolate(real.detach(), fake.detach().to(real.dtype), eps)
    x_hat.requires_grad_(True)
    scores = critic(x_hat).float()
    # Under fp16 autocast the inner gradient is taken at the loss scale, then
    # unscaled, so it does not underflow (PyTorch's AMP gradient-penalty recipe);
    # x_hat is fp32, so the gradient and its norm are fp32.
    scale = inner_grad_scale()
    (grad,) = torch.autograd.grad(scores.sum() * scale if scale != 1.0 else scores.sum(), x_hat,
                                  create_graph=True)
    if scale != 1.0:
        grad = grad / scale
    penalty, norms = gradient_norm_penalty(grad, weight=weight, center=center)
    return penalty, norms.detach()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, *,
               gamma: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """R1 (Mescheder et al. 2018): gamma / 2 * mean_i ||grad_x D(x_i)||^2 at the real samples.

    Returns (penalty: 0-d, grad_norm: (B,) detached), as :func:`gradient_penalty`.
    """
    return gradient_penalty(critic, real, None, weight=gamma / 2.0, center=0.0)
