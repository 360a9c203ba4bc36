"""cgan: conditional GAN; the label is fed to both G and D.

Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014. A learned
label embedding is concatenated to z and to D's input (an extra input plane
for conv D). The paper's MLPs are available with ``--set arch=mlp``; the
default uses the DCGAN conv family, which learns images far faster on a CPU.
Samples are drawn for requested labels (``ganzoo sample --label K``).
"""
from ..hookspecs import hookimpl
from .base import COMMON_DEFAULTS, TOY_DEFAULTS, BCELossMixin, TwoPlayerVariant


class CGAN(BCELossMixin, TwoPlayerVariant):
    name = "cgan"
    conditional = True
    paper = "Mirza & Osindero 2014, Conditional GANs (arXiv:1411.1784)"
    summary = "non-saturating BCE; label embedding concatenated to z and to D's input; DCGAN conv nets"
    critic_norm = "batch"
    defaults = {**COMMON_DEFAULTS, "arch": "conv", "steps": 3000}
    vector_defaults = TOY_DEFAULTS


@hookimpl
def register_variants(register):
    register(CGAN)
