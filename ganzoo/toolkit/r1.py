"""R1 regularisation (Mescheder et al. 2018), lazily every ``r1_every`` steps as in StyleGAN2.

``r1_gamma=GAMMA`` adds ``gamma / 2 * mean_i ||grad_x D(x_i)||^2`` at the real
samples to the critic's loss, through ``ganzoo.ops.gradient_penalty(center=0)``
(so the fused kernels and the critic's fused LeakyReLU serve its double
backward). ``r1_every=N`` (lazy regularisation, Karras et al. 2020, StyleGAN2
section 3.1) adds it only on every N-th generator step, weighted by N so that
its average strength is unchanged. ``r1_every`` counts generator steps; with
``n_critic > 1`` every critic step of such a generator step carries it.

``TwoPlayerVariant`` computes it in its critic phase (see
``TwoPlayerVariant.phases``); a variant with its own phases adds
``ganzoo.ops.r1_penalty`` to its critic loss and lists ``"r1"`` in
``features`` to get the options and their checks.
"""
from __future__ import annotations

from . import Feature, require


def r1_due(step: int, every: int) -> bool:
    """Whether generator step ``step`` (0-based) carries the lazy R1 term."""
    return step % every == 0


class R1Feature(Feature):
    name = "r1"
    hparams = {"r1_gamma": 0.0, "r1_every": 1}
    summary = "R1 gradient penalty on real data, gamma/2 ||grad D(x)||^2, lazily every r1_every steps"
    paper = "Mescheder et al. 2018 (arXiv:1801.04406); lazy: Karras et al. 2020, StyleGAN2 (arXiv:1912.04958)"
    applies_to = "variants whose critic phase adds it (TwoPlayerVariant and its subclasses)"
    check_settings = {"r1_gamma": 1.0, "r1_every": 2}

    def enabled(self, hp):
        return hp.get("r1_gamma", 0.0) != 0.0

    def validate(self, variant):
        hp = variant.hparams
        require(hp["r1_gamma"] >= 0, f"r1_gamma must be >= 0 (0 turns R1 off), got {hp['r1_gamma']}")
        require(hp["r1_every"] >= 1, f"r1_every must be >= 1 (1: every step; 16: StyleGAN2's lazy R1), "
                                     f"got {hp['r1_every']}")
