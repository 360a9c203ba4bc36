"""PacGAN packing (Lin et al. 2018): the critic judges ``pack`` samples at once.

``pack=M`` groups each batch seen by a critic into ``B / M`` packs of M
consecutive samples, concatenated along the first data axis: images
``(B, C, H, W) -> (B / M, M * C, H, W)``, vectors ``(B, D) -> (B / M, M * D)``.
Reals are packed with reals and fakes with fakes (each call of the critic gets
one kind), and the critic returns one score per pack. The critic must be built
for the packed shape (:func:`packed_shape`; ``TwoPlayerVariant`` does this);
the packing itself is a forward pre-hook on each critic net, so every call of
the critic (losses, gradient penalties, R1) sees packed input. Under a
gradient penalty the norm is still taken per sample, over its own pixels.

Packing needs unconditional critics (a label per pack is not defined) and a
batch, per micro-batch, divisible by M.
"""
from __future__ import annotations

import torch

from . import Feature, require, role_nets


def packed_shape(shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """The critic's input shape for data of ``shape`` packed by ``pack``."""
    return (shape[0] * pack, *shape[1:])


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, d0, ...) -> (B / pack, pack * d0, ...): consecutive samples concatenated."""
    if pack == 1:
        return x
    if x.shape[0] % pack:
        raise ValueError(f"a batch of {x.shape[0]} does not split into packs of {pack}")
    return x.reshape(x.shape[0] // pack, x.shape[1] * pack, *x.shape[2:])


class PackFeature(Feature):
    name = "pack"
    hparams = {"pack": 1}
    summary = "PacGAN: the critic scores packs of M samples concatenated (real with real, fake with fake)"
    paper = "Lin et al. 2018, PacGAN (arXiv:1712.04086)"
    applies_to = "unconditional TwoPlayerVariant subclasses (their critic is built for the packed shape)"
    check_settings = {"pack": 2}

    def validate(self, variant):
        m = variant.hparams["pack"]
        require(m >= 1, f"pack must be >= 1 (1: no packing; PacGAN uses 2-4), got {m}")
        require(not variant.conditional,
                f"pack does not apply to the conditional variant {variant.name!r}: a pack of samples "
                "has no single label; drop --set pack")
        require(variant.batch_size % m == 0,
                f"pack={m} does not divide batch_size {variant.batch_size}; use a batch size that is "
                f"a multiple of {m} (e.g. --batch-size {max(m, variant.batch_size // m * m)})")

    def batch_multiple(self, variant):
        return variant.hparams["pack"]

    def on_build(self, variant, nets):
        m = variant.hparams["pack"]

        def pack_input(module, args, kwargs):
            return (pack_samples(args[0], m), *args[1:]), kwargs

        for name in role_nets(variant, "critic"):
            nets[name].register_forward_pre_hook(pack_input, with_kwargs=True)
