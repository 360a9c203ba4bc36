"""hinge: a hinge-loss GAN with spectral normalisation in the discriminator (SNGAN-style).

Miyato et al., "Spectral Normalization for Generative Adversarial Networks",
ICLR 2018; the hinge loss as in Lim & Ye 2017 and Miyato et al.:

    D minimises  mean(relu(m - D(x))) + mean(relu(m + D(G(z))))   (margin m = 1)
    G minimises  -mean(D(G(z)))

Every Linear and Conv2d layer of the discriminator is spectrally normalised
(its weight divided by its largest singular value, estimated by power
iteration), which bounds D's Lipschitz constant without a penalty term. The
generator is unchanged. Optimiser: ganzoo's DCGAN settings (Adam 2e-4, betas
(0.5, 0.999), one D step per G step); the paper compares several such settings
(its Table 1), and ``--set n_critic=5 betas=0.5,0.9 lr_d=1e-4 lr_g=1e-4`` is
another it reports.

What this plugin shows: options of its own (``margin``, ``spectral_norm``,
``sn_iterations``), a new loss, and a change to the built-in networks.
"""
import torch

import ganzoo

HINGE_SETTINGS = {"margin": 1.0, "spectral_norm": True, "sn_iterations": 1}


class HingeGAN(ganzoo.TwoPlayerVariant):
    name = "hinge"
    paper = "Miyato et al. 2018, Spectral Normalization for GANs (arXiv:1802.05957)"
    summary = "hinge loss; spectral normalisation on every layer of D (SNGAN-style)"
    critic_norm = "none"  # spectral normalisation replaces BatchNorm in D
    defaults = {**ganzoo.TwoPlayerVariant.defaults, **HINGE_SETTINGS, "steps": 1500}
    vector_defaults = {**ganzoo.TwoPlayerVariant.vector_defaults, **HINGE_SETTINGS}
    positive = ganzoo.TwoPlayerVariant.positive | {"margin", "sn_iterations"}

    def d_loss(self, real_scores, fake_scores):
        margin = self.hparams["margin"]
        return (margin - real_scores).relu().mean() + (margin + fake_scores).relu().mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()

    def build(self, spec):
        nets = super().build(spec)  # the built-in nets for this data, initialised
        if self.hparams["spectral_norm"]:
            add_spectral_norm(nets["D"], self.hparams["sn_iterations"])
        return nets


def add_spectral_norm(module, iterations):
    """Spectrally normalise every Linear and Conv2d weight inside ``module``, in place."""
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for layer in layers:
        torch.nn.utils.parametrizations.spectral_norm(layer, n_power_iterations=iterations)


@ganzoo.hookimpl
def register_variants(register):
    register(HingeGAN)
