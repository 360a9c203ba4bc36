"""lsgan: least-squares GAN.

Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
D minimises 1/2 (D(x) - b)^2 + 1/2 (D(G(z)) - a)^2, G minimises
1/2 (D(G(z)) - c)^2. Default a=0, b=c=1 (the common coding); the paper's
alternative is ``--set a=-1 b=1 c=0``. DCGAN-like nets.
"""
from ..hookspecs import hookimpl
from .base import COMMON_DEFAULTS, TOY_DEFAULTS, TwoPlayerVariant

LS_TARGETS = {"a": 0.0, "b": 1.0, "c": 1.0}


class LSGAN(TwoPlayerVariant):
    name = "lsgan"
    paper = "Mao et al. 2017, Least Squares GANs (arXiv:1611.04076)"
    summary = "least squares: D to b on real, a on fake; G to c; DCGAN-like nets"
    critic_norm = "batch"
    defaults = {**COMMON_DEFAULTS, **LS_TARGETS, "arch": "conv", "steps": 3000}
    vector_defaults = TOY_DEFAULTS

    def d_loss(self, real_scores, fake_scores):
        a, b = self.hparams["a"], self.hparams["b"]
        return 0.5 * (real_scores - b).pow(2).mean() + 0.5 * (fake_scores - a).pow(2).mean()

    def g_loss(self, fake_scores):
        return 0.5 * (fake_scores - self.hparams["c"]).pow(2).mean()


@hookimpl
def register_variants(register):
    register(LSGAN)
