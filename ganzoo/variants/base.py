"""TwoPlayerVariant: the common shape of most GANs, for built-ins and plugins alike.

One generator ``G`` and one discriminator / critic ``D``, one Adam each; a D
phase repeated ``n_critic`` times, then a G phase. A subclass supplies its
losses (:meth:`d_loss`, :meth:`g_loss`) and, if it wants, its own nets
(:meth:`image_nets`) or extra terms (override :meth:`discriminator_step`).

Hyperparameters every subclass has (override values in ``defaults``):
``steps`` generator steps, ``batch_size``, ``lr_g``, ``lr_d``, ``betas``,
``n_critic``, ``nz`` (noise dim for images), ``arch`` ("mlp", "pytorch-gan-mlp" or "conv"
for images), ``g_width``/``d_width`` (conv base channels), ``hidden``/``layers`` (MLP nets) and
``toy_nz``/``toy_hidden``/``toy_layers``/``toy_arch`` (nets for vector data).

It takes every toolkit feature (:mod:`ganzoo.toolkit`): those every variant
gets (EMA, LR schedules, spectral norm, DiffAugment) plus R1 (added to the
critic's loss), PacGAN packing (the critic is built for packed input) and
minibatch-stddev (in the conv critic); ``BCELossMixin`` adds label smoothing.
"""
from __future__ import annotations

import abc
import functools
from typing import Any

import torch
from torch import nn

from ..data.base import Batch, DataSpec
from ..errors import GanzooError
from ..nets import (ConvDiscriminator, ConvGenerator, MaxoutDiscriminator, MLPDiscriminator, MLPGenerator,
                    PacGANToyGenerator, dcgan_init, gaussian_init)
from ..ops import gradient_penalty
from ..optim import adam
from ..toolkit.pack import packed_shape
from ..toolkit.r1 import r1_due
from ..variant import Phase, Variant

COMMON_DEFAULTS: dict[str, Any] = {
    "steps": 3000,
    "batch_size": 64,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "betas": (0.5, 0.999),
    "n_critic": 1,
    "nz": 100,
    "arch": "conv",
    "g_width": 64,  # G channels at the last hidden layer (DCGAN's ngf)
    "d_width": 64,  # D channels at the first layer (DCGAN's ndf)
    "hidden": 128,
    "layers": 1,
}

# The toy nets of the WGAN-GP paper (gan_toy.py): 2-d noise, 3 x Linear 512 + ReLU.
# toy_arch="pacgan": PacGAN's toy nets instead (toy_hidden / toy_layers do not apply).
TOY_DEFAULTS: dict[str, Any] = {
    "steps": 2000,
    "batch_size": 256,
    "toy_nz": 2,
    "toy_hidden": 512,
    "toy_layers": 3,
    "toy_arch": "wgan-gp",
}
#: Vector-data networks by ``toy_arch``.
TOY_ARCHS = ("wgan-gp", "pacgan")


class TwoPlayerVariant(Variant):
    """G versus D with per-variant losses; see the module docstring."""

    defaults = COMMON_DEFAULTS
    vector_defaults = TOY_DEFAULTS
    #: Critic normalisation for conv nets: "batch", "layer" or "none".
    critic_norm = "batch"
    #: Apply the DCGAN N(0, 0.02) initialisation.
    dcgan_init = True
    features = (*Variant.features, "r1", "pack", "minibatch_std")
    #: When True, :meth:`g_loss` is called as ``g_loss(fake_scores, real_scores)``
    #: with the critic's scores on the step's real batch too (relativistic losses).
    generator_sees_real = False

    # -- losses: the part a subclass writes ---------------------------------
    @abc.abstractmethod
    def d_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """Critic loss from raw scores (B,) on real and generated data."""

    @abc.abstractmethod
    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """Generator loss from the critic's raw scores (B,) on generated data.

        With ``generator_sees_real = True`` it is called as ``g_loss(fake_scores,
        real_scores)``, the critic's scores on real data (B,) as a second argument.
        """

    def score_stat(self, scores: torch.Tensor) -> torch.Tensor:
        """The logged D(x) / D(G(z)): the mean raw score (BCE variants log probabilities)."""
        return scores.mean()

    # -- networks -----------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        classes = spec.num_classes if self.conditional else None
        if not spec.is_image:
            nets = self.vector_nets(spec, classes)
        else:
            nets = self.image_nets(spec, classes)
            if self.dcgan_init:
                dcgan_init(nets)
        return nets

    def vector_nets(self, spec: DataSpec, classes: int | None) -> nn.ModuleDict:
        """Nets for vector data, by ``toy_arch``: "wgan-gp" (Gulrajani et al. 2017's toy MLPs,
        ``toy_hidden`` x ``toy_layers``) or "pacgan" (Lin et al. 2018's toy nets, N(0, 0.02) init)."""
        hp = self.hparams
        arch = hp.get("toy_arch", "wgan-gp")
        if arch == "wgan-gp":
            return nn.ModuleDict({
                "G": MLPGenerator(hp["toy_nz"], spec.shape, hp["toy_hidden"], hp["toy_layers"],
                                  "relu", num_classes=classes),
                "D": MLPDiscriminator(self.critic_shape(spec), hp["toy_hidden"], hp["toy_layers"], "relu",
                                      num_classes=classes),
            })
        if arch == "pacgan":
            if classes:
                raise GanzooError("toy_arch=pacgan has no conditional nets; use toy_arch=wgan-gp")
            nets = nn.ModuleDict({"G": PacGANToyGenerator(hp["toy_nz"], spec.shape),
                                  "D": MaxoutDiscriminator(self.critic_shape(spec))})
            gaussian_init(nets)
            return nets
        raise GanzooError(f"unknown toy_arch {arch!r}; use {' or '.join(repr(a) for a in TOY_ARCHS)}")

    def image_nets(self, spec: DataSpec, classes: int | None) -> nn.ModuleDict:
        hp = self.hparams
        if hp["arch"] == "mlp":
            return nn.ModuleDict({
                "G": MLPGenerator(hp["nz"], spec.shape, hp["hidden"], hp["layers"], "lrelu",
                                  tanh=True, num_classes=classes),
                "D": MLPDiscriminator(self.critic_shape(spec), hp["hidden"], hp["layers"], "lrelu",
                                      num_classes=classes),
            })
        if hp["arch"] == "pytorch-gan-mlp":
            # The MLPs every script of eriklindernoren/PyTorch-GAN uses (gan.py, wgan_gp.py, ...):
            # G 128-256-512-1024 with BatchNorm1d(eps 0.8) after all but the first, D 512-256,
            # LeakyReLU 0.2; the peer benchmark (benchmarks/peer.py) trains them against a stock loop.
            return nn.ModuleDict({
                "G": MLPGenerator(hp["nz"], spec.shape, 0, 0, "lrelu", tanh=True, num_classes=classes,
                                  widths=(128, 256, 512, 1024), batchnorm_eps=0.8),
                "D": MLPDiscriminator(self.critic_shape(spec), 0, 0, "lrelu", num_classes=classes,
                                      widths=(512, 256)),
            })
        if hp["arch"] == "conv":
            try:
                return nn.ModuleDict({
                    "G": ConvGenerator(hp["nz"], spec.shape, hp["g_width"], num_classes=classes),
                    "D": ConvDiscriminator(self.critic_shape(spec), hp["d_width"], self.critic_norm,
                                           num_classes=classes, minibatch_std=hp["minibatch_std"]),
                })
            except ValueError as exc:
                raise GanzooError(f"{exc}; use --set arch=mlp for other image sizes") from None
        raise GanzooError(f"unknown arch {hp['arch']!r}; use 'mlp', 'pytorch-gan-mlp' or 'conv'")

    def critic_shape(self, spec: DataSpec) -> tuple[int, ...]:
        """The shape of one critic input: the data's, times ``pack`` along the first axis."""
        return packed_shape(tuple(spec.shape), int(self.hparams["pack"]))

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        hp = self.hparams
        return {
            "G": adam(nets["G"].parameters(), lr=hp["lr_g"], betas=hp["betas"]),
            "D": adam(nets["D"].parameters(), lr=hp["lr_d"], betas=hp["betas"]),
        }

    # -- sampling -----------------------------------------------------------
    @property
    def noise_dim(self) -> int:
        image = self.spec is None or self.spec.is_image
        return int(self.hparams["nz"] if image else self.hparams["toy_nz"])

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.noise_dim, device=device)

    def generate(self, nets, z, labels=None):
        return nets["G"](z, labels if self.conditional else None)

    # -- phases -------------------------------------------------------------
    def phases(self, step: int) -> list[Phase]:
        hp = self.hparams
        critic_loss = self.discriminator_step
        if hp["r1_gamma"] > 0 and r1_due(step, hp["r1_every"]):
            # Lazy R1 (StyleGAN2): on every r1_every-th step, weighted by r1_every.
            critic_loss = functools.partial(self.discriminator_step,
                                            r1_weight=hp["r1_gamma"] / 2 * hp["r1_every"])
        return [
            Phase("D", ("D",), critic_loss, repeats=int(hp["n_critic"])),
            # A subclass's own generator_step may read batch.real (feature matching): give it the data.
            Phase("G", ("G",), self.generator_step, uses_real=self.generator_sees_real
                  or type(self).generator_step is not TwoPlayerVariant.generator_step),
        ]

    def _labels(self, batch: Batch) -> torch.Tensor | None:
        return batch.labels if self.conditional else None

    def discriminator_step(self, nets: nn.ModuleDict, batch: Batch, r1_weight: float = 0.0):
        """The critic phase's loss; ``r1_weight`` > 0 adds ``r1_weight * mean ||grad D(x)||^2``."""
        labels = self._labels(batch)
        with torch.no_grad():  # the fake batch is a constant for D
            fake = self.generate(nets, self.latent(len(batch), batch.real.device), labels)
        # Scores in fp32 even under autocast, so the losses are computed in fp32.
        real_scores = nets["D"](batch.real, labels).float()
        fake_scores = nets["D"](fake, labels).float()
        loss = self.d_loss(real_scores, fake_scores)
        stats = {"real": self.score_stat(real_scores), "fake": self.score_stat(fake_scores)}
        penalty, penalty_stats = self.d_regularizer(nets, batch.real, fake, labels)
        if penalty is not None:
            loss = loss + penalty
            stats.update(penalty_stats)
        if r1_weight:
            critic = nets["D"]
            r1, _ = gradient_penalty(lambda x: critic(x, labels), batch.real, None, weight=r1_weight, center=0.0)
            loss = loss + r1
            stats["r1"] = r1
        return loss, {"loss": loss, **stats}

    def d_regularizer(self, nets: nn.ModuleDict, real: torch.Tensor, fake: torch.Tensor,
                      labels: torch.Tensor | None) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """An extra critic term (gradient penalty, R1) and its stats; default: none."""
        return None, {}

    def generator_step(self, nets: nn.ModuleDict, batch: Batch):
        labels = self._labels(batch)
        fake = self.generate(nets, self.latent(len(batch), batch.real.device), labels)
        fake_scores = nets["D"](fake, labels).float()
        if self.generator_sees_real:
            loss = self.g_loss(fake_scores, nets["D"](batch.real, labels).float())
        else:
            loss = self.g_loss(fake_scores)
        return loss, {"loss": loss, "fake": self.score_stat(fake_scores)}


class BCELossMixin:
    """Non-saturating BCE (Goodfellow et al. 2014): G minimises softplus(-D(G(z))).

    Takes one-sided label smoothing (``label_smoothing``, the target for real data).
    """

    features = (*TwoPlayerVariant.features, "label_smoothing")

    def d_loss(self, real_scores, fake_scores):
        # -log sigmoid(d_real) - log(1 - sigmoid(d_fake)), stable in logit space.
        target = self.hparams.get("label_smoothing", 1.0)
        if target == 1.0:
            real_term = nn.functional.softplus(-real_scores).mean()
        else:  # BCE with target t: -t log sigmoid(d) - (1 - t) log(1 - sigmoid(d))
            real_term = (target * nn.functional.softplus(-real_scores)
                         + (1.0 - target) * nn.functional.softplus(real_scores)).mean()
        return real_term + nn.functional.softplus(fake_scores).mean()

    def g_loss(self, fake_scores):
        return nn.functional.softplus(-fake_scores).mean()

    def score_stat(self, scores):
        return torch.sigmoid(scores).mean()
