"""vanilla: the original GAN with the non-saturating generator loss.

Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014. Images use the
classic MNIST-GAN MLPs (100-d noise, one hidden layer of 128, LeakyReLU, tanh
output) on flattened pixels; vectors use the WGAN-GP toy MLPs.
"""
from ..hookspecs import hookimpl
from .base import COMMON_DEFAULTS, TOY_DEFAULTS, BCELossMixin, TwoPlayerVariant


class Vanilla(BCELossMixin, TwoPlayerVariant):
    name = "vanilla"
    paper = "Goodfellow et al. 2014, Generative Adversarial Nets (arXiv:1406.2661)"
    summary = "non-saturating BCE; MLP G and D (hidden 128, LeakyReLU)"
    dcgan_init = False  # the MLP GAN used PyTorch's default init
    defaults = {**COMMON_DEFAULTS, "arch": "mlp", "hidden": 128, "layers": 1, "steps": 20000}
    vector_defaults = TOY_DEFAULTS


@hookimpl
def register_variants(register):
    register(Vanilla)
