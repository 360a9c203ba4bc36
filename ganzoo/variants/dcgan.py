"""dcgan: deep convolutional GAN.

Radford et al., "Unsupervised Representation Learning with Deep Convolutional
GANs", ICLR 2016: transposed-conv G with BatchNorm + ReLU and tanh output; conv
D with BatchNorm (not on the first layer) and LeakyReLU 0.2; weights N(0, 0.02);
Adam 2e-4, betas (0.5, 0.999); non-saturating BCE; mini-batches of 128 as in
the paper (on mnist at 3000 steps, batch 128 gave FD 329 and a largest class
of 18.3% of the samples, batch 64 FD 371 and 20.3%: docs/shortfalls.md).
"""
from ..hookspecs import hookimpl
from .base import COMMON_DEFAULTS, TOY_DEFAULTS, BCELossMixin, TwoPlayerVariant


class DCGAN(BCELossMixin, TwoPlayerVariant):
    name = "dcgan"
    paper = "Radford et al. 2016, DCGAN (arXiv:1511.06434)"
    summary = "non-saturating BCE; conv G (BN, ReLU, tanh) and conv D (BN, LeakyReLU 0.2)"
    critic_norm = "batch"
    defaults = {**COMMON_DEFAULTS, "arch": "conv", "steps": 3000, "batch_size": 128}
    vector_defaults = TOY_DEFAULTS


@hookimpl
def register_variants(register):
    register(DCGAN)
