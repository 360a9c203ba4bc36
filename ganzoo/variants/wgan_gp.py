"""wgan-gp: Wasserstein GAN with gradient penalty.

Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
Critic loss D(G(z)) - D(x) + lambda (||grad D(x_hat)||_2 - 1)^2 with
x_hat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per sample and the norm taken per
sample; lambda = 10; 5 critic steps per generator step; Adam 1e-4 with betas
(0.5, 0.9) as in the paper's MNIST script. The critic has no BatchNorm (the
penalty is per sample, batch statistics would couple the samples); G keeps it.

On 2-D data lambda is 0.1, as in the paper's toy script (gan_toy.py, which
notes that a smaller lambda trains faster on toys); images keep lambda = 10.
On the ring layout, 2000 steps gave 0 of 8 modes with lambda = 10 and 8 of 8
with lambda = 0.1 (docs/results.md).

The default recipe on 2-D data (issue 14, docs/recipes/): the toy script's
settings on data divided by its RMS as that script does (``dataset_defaults``:
``standardize``), with the linear decay of the learning rate to 0 of the
paper's CIFAR-10 script (gan_cifar.py), for 4000 generator steps. On the grid,
3 seeds each: 25 of 25 modes and about 20% of samples near a mode, against
22-24 modes and 9.6% for the toy script's constant rate over 2000 steps.
``--set preset=paper`` restores the constant rate.

Deviation for CPU budgets: the critic's base width is 32 (the MNIST script
used 64 for both nets), so the default run (4000 generator steps, batch 50 as
in that script) fits in about ten minutes on two CPU cores; use
``--set d_width=64`` for the paper's size.
"""
from ..hookspecs import hookimpl
from ..ops import gradient_penalty
from .base import COMMON_DEFAULTS, TOY_DEFAULTS, TwoPlayerVariant

WGAN_GP = {"lr_g": 1e-4, "lr_d": 1e-4, "betas": (0.5, 0.9), "n_critic": 5, "gp_weight": 10.0}


class WGANGP(TwoPlayerVariant):
    name = "wgan-gp"
    paper = "Gulrajani et al. 2017, Improved Training of Wasserstein GANs (arXiv:1704.00028)"
    summary = "Wasserstein critic + per-sample gradient penalty (lambda 10; 0.1 on 2-D data), 5 critic steps; critic without BN"
    critic_norm = "none"
    dcgan_init = False
    defaults = {**COMMON_DEFAULTS, **WGAN_GP, "nz": 128, "batch_size": 50,
                "g_width": 64, "d_width": 32, "steps": 4000}
    vector_defaults = {**TOY_DEFAULTS, **WGAN_GP, "gp_weight": 0.1, "lr_schedule": "linear", "steps": 4000}
    dataset_defaults = {"standardize": True}  # gan_toy.py trains on the grid divided by its RMS
    presets = {"paper": {"lr_schedule": "constant"}}

    def d_loss(self, real_scores, fake_scores):
        return fake_scores.mean() - real_scores.mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()

    def d_regularizer(self, nets, real, fake, labels):
        critic = nets["D"]
        penalty, grad_norm = gradient_penalty(
            lambda x: critic(x, labels), real, fake, weight=self.hparams["gp_weight"]
        )
        return penalty, {"gp": penalty, "grad_norm": grad_norm.mean()}


@hookimpl
def register_variants(register):
    register(WGANGP)
