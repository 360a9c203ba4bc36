"""Gradient penalty (WGAN-GP) and R1, in plain PyTorch.

This is the reference implementation; the fused C++/CUDA kernels planned for
``csrc/`` go behind the same :func:`gradient_penalty` function.
"""
from __future__ import annotations

from typing import Callable

import torch


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_hat = eps * real + (1 - eps) * fake.

    real, fake: (B, ...) same shape; eps: (B,) in [0, 1], one per sample.
    """
    eps = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    return torch.lerp(fake, real, eps)


def per_sample_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample's gradient over all non-batch dims: (B, ...) -> (B,).

    Several public implementations take the norm over the whole batch (or only
    dim 1 of an image); the penalty is defined per sample.
    """
    return grad.flatten(1).norm(2, dim=1)


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
            note R1 is usually weighted gamma / 2).
        weight: lambda (10 in the WGAN-GP paper).
        center: target norm c (1 for WGAN-GP, 0 for R1 / zero-centred GP).
        eps: (B,) interpolation weights in [0, 1]; drawn U(0, 1) per sample
            from torch's default RNG when None.

    Returns:
        (penalty: 0-d tensor, grad_norm: (B,) per-sample norms, detached).
    """
    if fake is None:
        x_hat = real.detach()
    else:
        if eps is None:
            eps = torch.rand(real.shape[0], device=real.device)
        x_hat = interpolate(real.detach(), fake.detach(), eps)
    x_hat.requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = per_sample_norm(grad)
    penalty = weight * (norms - center).pow(2).mean()
    return penalty, norms.detach()
