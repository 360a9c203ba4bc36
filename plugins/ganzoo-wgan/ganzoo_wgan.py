"""wgan: the original Wasserstein GAN, with weight clipping.

Arjovsky, Chintala & Bottou, "Wasserstein GAN", ICML 2017 (Algorithm 1): the
critic maximises D(x) - D(G(z)); after every critic update its weights are
clipped to [-c, c] with c = 0.01; RMSprop with learning rate 5e-5 for both
nets; 5 critic steps per generator step. The critic has no BatchNorm (a
Wasserstein critic scores each sample on its own); the generator keeps it.
"""
import dataclasses

import torch

import ganzoo

WGAN_SETTINGS = {"lr_g": 5e-5, "lr_d": 5e-5, "n_critic": 5, "clip": 0.01}


def without_betas(defaults):
    """RMSprop has no betas: drop the key, so ``--set betas=...`` is refused."""
    return {key: value for key, value in defaults.items() if key != "betas"}


class WGAN(ganzoo.TwoPlayerVariant):
    name = "wgan"
    paper = "Arjovsky et al. 2017, Wasserstein GAN (arXiv:1701.07875)"
    summary = "Wasserstein critic, weights clipped to +-0.01 after every critic step; RMSprop 5e-5"
    critic_norm = "none"
    defaults = {**without_betas(ganzoo.TwoPlayerVariant.defaults), **WGAN_SETTINGS}
    vector_defaults = {**ganzoo.TwoPlayerVariant.vector_defaults, **WGAN_SETTINGS}
    positive = ganzoo.TwoPlayerVariant.positive | {"clip"}

    def d_loss(self, real_scores, fake_scores):
        # The critic maximises D(x) - D(G(z)), so it minimises the negation.
        return fake_scores.mean() - real_scores.mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()

    def make_optimizers(self, nets):
        return {
            "G": torch.optim.RMSprop(nets["G"].parameters(), lr=self.hparams["lr_g"]),
            "D": torch.optim.RMSprop(nets["D"].parameters(), lr=self.hparams["lr_d"]),
        }

    def phases(self, step):
        critic, generator = super().phases(step)
        # The trainer calls `after` after every optimiser step of the phase, so
        # the clip follows each of the n_critic critic updates.
        return [dataclasses.replace(critic, after=self.clip_critic), generator]

    def clip_critic(self, nets):
        clip = self.hparams["clip"]
        with torch.no_grad():
            for parameter in nets["D"].parameters():
                parameter.clamp_(-clip, clip)


@ganzoo.hookimpl
def register_variants(register):
    register(WGAN)
