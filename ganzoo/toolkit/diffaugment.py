"""DiffAugment (Zhao et al. 2020): differentiable augmentation of every image the critic sees.

``diffaug=color,translation,cutout`` (any subset, comma-separated) augments
real and generated images alike, in every critic and generator pass, before
the critic: a forward pre-hook on each critic net, active in training mode.
Each sample gets its own random transform, drawn from torch's default RNG on
the images' device (seeded and checkpointed by the trainer, so a resumed run
is exact). Every transform is differentiable w.r.t. the images, so G learns
through it, and gradient penalties / R1 are taken w.r.t. the un-augmented input.

Policies, as in the paper's reference code (images in [-1, 1]):

* ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the
  per-pixel channel mean; contrast x U(0.5, 1.5) around the image mean.
* ``translation``: an integer shift of up to 1/8 of the side in each axis,
  zero-filled.
* ``cutout``: a zeroed square of half the side at a random position.
"""
from __future__ import annotations

import torch

from ..errors import GanzooError
from . import Feature, require, role_nets

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); unknown names raise ValueError."""
    names = tuple(p.strip() for p in text.split(","))
    if not any(names):
        raise ValueError(f"no policy in {text!r}; use any of {', '.join(POLICIES)} (comma-separated)")
    if "" in names or len(set(names)) != len(names):
        raise ValueError(f"{text!r} has an empty or repeated entry; name each policy once, e.g. "
                         "color,translation,cutout")
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(map(repr, unknown))}; "
                         f"use any of {', '.join(POLICIES)} (comma-separated)")
    return names


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One draw per sample, shaped (B, 1, 1, 1), in x's dtype."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    # Index a 1-pixel zero border: positions that leave the image read zeros.
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows - cy + ch // 2).clamp(min=-1) // ch == 0) & ((cols - cx + cw // 2).clamp(min=-1) // cw == 0)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...] | str) -> torch.Tensor:
    """Augment images ``(B, C, H, W)`` (in [-1, 1]) with ``policy``; differentiable w.r.t. ``x``."""
    if isinstance(policy, str):
        policy = parse_policy(policy)
    for name in policy:
        x = TRANSFORMS[name](x)
    return x


class DiffAugmentFeature(Feature):
    name = "diffaug"
    hparams = {"diffaug": ""}
    summary = "DiffAugment: the same differentiable augmentation of real and fake images before the critic"
    paper = "Zhao et al. 2020, Differentiable Augmentation for Data-Efficient GAN Training (arXiv:2006.10738)"
    check_settings = {"diffaug": "color,translation,cutout"}

    def validate(self, variant):
        try:
            parse_policy(variant.hparams["diffaug"])
        except ValueError as exc:
            raise GanzooError(f"diffaug: {exc}") from None
        require(variant.spec is None or variant.spec.is_image,
                "diffaug augments images; this dataset holds vectors (drop --set diffaug)")

    def on_build(self, variant, nets):
        policy = parse_policy(variant.hparams["diffaug"])

        def augment_input(module, args, kwargs):
            if not module.training:
                return None
            return (diff_augment(args[0], policy), *args[1:]), kwargs

        for name in role_nets(variant, "critic"):
            nets[name].register_forward_pre_hook(augment_input, with_kwargs=True)
