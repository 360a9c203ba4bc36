"""stackgan: two stages, a coarse low-resolution image refined to full resolution.

Zhang et al., "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", ICCV 2017 (arXiv:1612.03242); the reference
is the authors' PyTorch code (hanzhanggit/StackGAN-Pytorch).

The paper conditions on a text embedding; ganzoo conditions on class labels,
through a learned embedding of each label that stands where the text
embedding stood (``embed_dim`` numbers). What the paper describes and this
module keeps:

* **Conditioning augmentation** (section 3.1; ``--set preset=paper`` or
  ``conditioning_augmentation=true``): a fully connected layer maps
  the embedding to a mean and a log-variance; the generator receives
  c = mu + sigma * eps, eps ~ N(0, I), and its loss adds
  ``kl_weight`` * KL(N(mu, sigma^2) || N(0, I)) (lambda = 1 in the paper),
  the KL averaged over c's dimensions as the reference code computes it.
  Each stage has its own. **The default is the paper's ablation without it**
  (section 5.3): c = mu, the compressed embedding, and no KL term. The
  augmentation smooths a text-embedding manifold with few images per
  caption; for a handful of class labels it blurs the label instead. On
  mnist (docs/recipes/stackgan-ca.md, 2 seeds) the generators drew the
  requested digit 99.6% of the time without it and 89.0% with it, at an FD
  of 54.0 against 23.4 and a recall of 0.47 against 0.80 (less variety
  within a class), so the default gives up variety for the label. Runs made
  before the option existed had it on (``legacy_hparams``). The authors' two codebases differ in the layer's
  head: ``ca_code="pytorch"`` (StackGAN-Pytorch: ReLU before the split into
  mean and log-variance, so sigma >= 1) and ``ca_code="tensorflow"`` (the
  original StackGAN: leaky ReLU 0.2 and log sigma, so sigma may fall below 1;
  its eps is a truncated normal, which this module does not copy).
* **Stage-I** (16x16 here; 64x64 in the paper): G maps [z, c] through a dense
  layer to 4x4 and upsamples (nearest + 3x3 conv, BatchNorm, ReLU) to the
  low resolution; D downsamples the image to 4x4 (4x4 stride-2 convs,
  LeakyReLU 0.2), joins the compressed embedding replicated over the 4x4
  grid, and scores the pair.
* **Stage-II** (full resolution; 256x256 in the paper): G encodes the Stage-I
  image down to 8x8, joins its own c, runs residual blocks and upsamples
  twice to full resolution; D as in Stage-I with one more downsampling.
* **Matching-aware discriminators**: D scores real images with their own
  label as real, and generated images and real images paired with a wrong
  label as fake (the reference code weighs the two fake terms 1/2 each).
  Non-saturating BCE losses; Adam 2e-4, betas (0.5, 0.999), batch 64.
* **EMA of the generators** (ours, not the paper's; the toolkit's ``ema``
  0.999 with stylegan2-ada's ramp-up 0.05, as pggan's): samples, grids and
  evaluation use the averaged Stage-I and Stage-II generators. On mnist
  (2 seeds each, docs/recipes/stackgan-ca.md) the averaged generators
  lowered the Fréchet distance of the trained ones with and without
  conditioning augmentation (23.4 against 50.2; 54.0 against 84.3) at a
  label accuracy as high or higher (89.0% against 88.1%; 99.6% against
  98.5%), so it is the default; ``--set ema=0`` samples from the trained
  generators.
* **Staged training in one run**: ``stage1_steps`` generator steps train
  Stage-I (0, the default: half of ``steps``); the rest of ``steps``
  (``stage2_steps`` = ``steps`` - ``stage1_steps``) train Stage-II with Stage-I frozen (its
  parameters belong to no phase of stage 2; as in the reference code it stays
  in training mode, so its BatchNorm normalises with batch statistics). Checkpoints hold both stages and
  the stage reached; a run resumes bit-identically at any step of either
  stage.

Sizes: 28-px data is padded to 32 with its edge pixels (its black background)
and generated images are cropped back, so Stage-I works at 16x16 and Stage-II
at 32x32. Scaled down for a CPU: widths ``g_width`` = ``d_width`` = 32 at
the lowest resolution (paper: 128 x 8), ``embed_dim`` 64 and ``c_dim`` 32
(paper: 1024 text features compressed to 128), z of 100 as in the paper,
2000 + 2000 steps (paper: 120 + 120 epochs with a halving of the rate every
20 epochs, which this module leaves out). One thread beside two other jobs
took 0.10 s per step in stage 1 and 0.33 s in stage 2 (widths 64: 0.29 and
1.06), about 15 minutes for the default run.

Sampling: ``generate`` draws from the stage the run has reached (the grids
during stage 1 show Stage-I images, upsampled); ``ganzoo sample RUN --stage 1``
asks for Stage-I images of a run in stage 2, and ``--stage 2`` before stage 2
has trained is a one-line error.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch, DataSpec
from ..errors import GanzooError
from ..hookspecs import hookimpl
from ..nets import center_crop, dcgan_init, pad_to_side, power_of_two_side
from ..optim import adam
from ..variant import Phase, TrainState, Variant


#: The authors' two codebases differ in conditioning augmentation's head (``--set ca_code=...``):
#: "pytorch" is StackGAN-Pytorch (model.py, CA_NET): ReLU before the split, the second half a
#: log-variance, so logvar >= 0 and sigma >= 1 (every c carries noise of at least unit variance);
#: "tensorflow" is the original StackGAN (stageI/model.py, generate_condition): leaky ReLU 0.2 before
#: the split, the second half log sigma, so sigma may fall below 1 (log sigma = 0.2 x for x < 0).
CA_CODES = ("pytorch", "tensorflow")


class ConditioningAugmentation(nn.Module):
    """Embedding (N, E) -> (c (N, c_dim), mu, logvar): c = mu + exp(logvar / 2) * eps, eps ~ N(0, I).

    ``code`` picks the head of one of the authors' codebases (:data:`CA_CODES`): ``"pytorch"``
    (ReLU; the second half is logvar) or ``"tensorflow"`` (leaky ReLU 0.2; the second half is log
    sigma, returned as logvar = 2 log sigma so the KL term is the same function of it).
    ``sample=False`` is the paper's ablation without conditioning augmentation (section 5.3):
    the embedding is only compressed, c = mu (the same layer and activation, no second half), and
    logvar comes back as None."""

    def __init__(self, embed_dim: int, c_dim: int, sample: bool = True, code: str = "pytorch"):
        super().__init__()
        self.sample = sample
        self.code = code
        self.fc = nn.Linear(embed_dim, 2 * c_dim if sample else c_dim)

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) if self.code == "tensorflow" else F.relu(x)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not self.sample:
            mu = self._activation(self.fc(embedding))
            return mu, mu, None
        mu, second = self._activation(self.fc(embedding)).chunk(2, dim=1)  # the activation before the split
        logvar = 2.0 * second if self.code == "tensorflow" else second
        c = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return c, mu, logvar


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per dimension: averaged over dimensions and the batch, as the
    reference code's ``KL_loss`` computes it (a sum over the c_dim dimensions would weigh the term
    c_dim times more, and pulled mu to 0 so hard that the label barely reached the generator)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest 2x upsampling, 3x3 conv, BatchNorm, ReLU (the reference's upBlock)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(True))


def down_block(in_channels: int, out_channels: int, norm: bool = True) -> nn.Sequential:
    """4x4 stride-2 conv, BatchNorm (not on the first layer), LeakyReLU 0.2."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2, True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(True), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class StageOneGenerator(nn.Module):
    """[z (N, nz), c (N, c_dim)] -> images (N, C, side, side) in [-1, 1]; side = 4 * 2^ups."""

    def __init__(self, nz: int, c_dim: int, channels: int, width: int, side: int):
        super().__init__()
        ups = (side // 4).bit_length() - 1
        self.width = width * 2 ** ups
        self.fc = nn.Sequential(nn.Linear(nz + c_dim, self.width * 16, bias=False), nn.BatchNorm1d(self.width * 16),
                                nn.ReLU(True))
        self.ups = nn.Sequential(*[up_block(self.width // 2 ** i, self.width // 2 ** (i + 1)) for i in range(ups)])
        self.to_image = nn.Sequential(nn.Conv2d(self.width // 2 ** ups, channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([z, c], dim=1)).view(z.shape[0], self.width, 4, 4)
        return self.to_image(self.ups(x))


class StageTwoGenerator(nn.Module):
    """(Stage-I images (N, C, s, s), c (N, c_dim)) -> images (N, C, 2s, 2s) in [-1, 1]."""

    def __init__(self, c_dim: int, channels: int, width: int, residual_blocks: int = 2):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(True),
                                    nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
                                    nn.ReLU(True))
        self.join = nn.Sequential(nn.Conv2d(2 * width + c_dim, 2 * width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU(True))
        self.residual = nn.Sequential(*[ResidualBlock(2 * width) for _ in range(residual_blocks)])
        self.ups = nn.Sequential(up_block(2 * width, width), up_block(width, width // 2))
        self.to_image = nn.Sequential(nn.Conv2d(width // 2, channels, 3, padding=1), nn.Tanh())

    def forward(self, low: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.encode(low)
        x = self.join(torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1))
        return self.to_image(self.ups(self.residual(x)))


class ConditionalDiscriminator(nn.Module):
    """(images (N, C, side, side), embedding (N, E)) -> logits (N,): downsampling to 4x4, the
    compressed embedding joined there (replicated over the grid), a 1x1 conv and a 4x4 conv."""

    def __init__(self, channels: int, width: int, side: int, embed_dim: int, c_dim: int):
        super().__init__()
        downs = (side // 4).bit_length() - 1
        layers = [down_block(channels, width, norm=False)]
        layers += [down_block(width * 2 ** i, width * 2 ** (i + 1)) for i in range(downs - 1)]
        self.features = nn.Sequential(*layers)
        top = width * 2 ** (downs - 1)
        self.compress = nn.Sequential(nn.Linear(embed_dim, c_dim), nn.LeakyReLU(0.2, True))
        self.joint = nn.Sequential(nn.Conv2d(top + c_dim, top, 1, bias=False), nn.BatchNorm2d(top),
                                   nn.LeakyReLU(0.2, True), nn.Conv2d(top, 1, 4))

    def forward(self, image: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = self.features(image)
        code = self.compress(embedding)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.joint(torch.cat([x, code], dim=1)).flatten()


class StageOne(nn.Module):
    """Stage-I's generator side: the label embedding, conditioning augmentation and G."""

    def __init__(self, classes: int, embed_dim: int, c_dim: int, nz: int, channels: int, width: int, side: int,
                 augment: bool = True, ca_code: str = "pytorch"):
        super().__init__()
        self.embed = nn.Embedding(classes, embed_dim)
        self.augment = ConditioningAugmentation(embed_dim, c_dim, augment, ca_code)
        self.generator = StageOneGenerator(nz, c_dim, channels, width, side)

    def forward(self, z: torch.Tensor, labels: torch.Tensor):
        """-> (images, mu, logvar)."""
        c, mu, logvar = self.augment(self.embed(labels))
        return self.generator(z, c), mu, logvar


class StageTwo(nn.Module):
    """Stage-II's generator side: its own embedding and conditioning augmentation, and G."""

    def __init__(self, classes: int, embed_dim: int, c_dim: int, channels: int, width: int, augment: bool = True,
                 ca_code: str = "pytorch"):
        super().__init__()
        self.embed = nn.Embedding(classes, embed_dim)
        self.augment = ConditioningAugmentation(embed_dim, c_dim, augment, ca_code)
        self.generator = StageTwoGenerator(c_dim, channels, width)

    def forward(self, low: torch.Tensor, labels: torch.Tensor):
        c, mu, logvar = self.augment(self.embed(labels))
        return self.generator(low, c), mu, logvar


class LabelledCritic(nn.Module):
    """A discriminator with its own label embedding: (images, labels (N,)) -> logits (N,)."""

    def __init__(self, classes: int, embed_dim: int, c_dim: int, channels: int, width: int, side: int):
        super().__init__()
        self.embed = nn.Embedding(classes, embed_dim)
        self.critic = ConditionalDiscriminator(channels, width, side, embed_dim, c_dim)

    def forward(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.critic(image, self.embed(labels))


class StageMarker(nn.Module):
    """The stage the run is in (1 or 2), as a buffer: checkpointed with the nets."""

    def __init__(self):
        super().__init__()
        self.register_buffer("stage", torch.ones((), dtype=torch.long))


class StackGAN(Variant):
    name = "stackgan"
    conditional = True
    paper = "Zhang et al. 2017, StackGAN: Text to Photo-realistic Image Synthesis with Stacked GANs (arXiv:1612.03242)"
    summary = ("two stages: Stage-I at half resolution, Stage-II refines it (trained after, Stage-I frozen); "
               "matching-aware D; label-conditioned (conditioning augmentation with --set preset=paper); images only")
    data_kinds = ("image",)
    features = ("ema", "lr_schedule")
    generator_nets = ("G1", "G2")
    critic_nets = ("D1", "D2")
    sampling_options = {"stage": "1: Stage-I images (upsampled); 2: Stage-II (the default once stage 2 trained)"}
    defaults = {
        "steps": 4000,
        "stage1_steps": 0,  # 0: half of steps
        "batch_size": 64,
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),
        "nz": 100,
        "embed_dim": 64,
        "c_dim": 32,
        "g_width": 32,
        "d_width": 32,
        "kl_weight": 1.0,
        "conditioning_augmentation": False,  # the paper's ablation: see the module docstring
        "ca_code": "pytorch",
        "ema": 0.999,
        "ema_rampup": 0.05,
    }
    positive = Variant.positive | {"embed_dim", "c_dim"}
    #: The paper's recipe: conditioning augmentation on (the default until 2026-12-05).
    presets = {"paper": {"conditioning_augmentation": True}}
    #: Runs made before ``conditioning_augmentation`` existed trained with it on.
    legacy_hparams = {"conditioning_augmentation": True}

    @classmethod
    def resolve_hparams(cls, spec, overrides):
        """The defaults, with ``stage1_steps`` 0 resolved to half of ``steps`` (so config.json and a
        resume keep the number, and a settings comparison sees the one the run used)."""
        resolved = super().resolve_hparams(spec, overrides)
        if resolved["stage1_steps"] == 0:
            resolved["stage1_steps"] = resolved["steps"] // 2
        return resolved

    def __init__(self, spec: DataSpec | None = None, **overrides: Any):
        super().__init__(spec, **overrides)
        hp = self.hparams
        if not hp["conditioning_augmentation"] and hp["kl_weight"] != self.defaults["kl_weight"]:
            raise GanzooError("kl_weight weighs conditioning augmentation's KL term: it has no effect with "
                              "conditioning_augmentation=false")
        if hp["ca_code"] not in CA_CODES:
            raise GanzooError(f"ca_code must be one of {', '.join(CA_CODES)} (the authors' two codebases), "
                              f"got {hp['ca_code']!r}")
        if not 0 < hp["stage1_steps"] < hp["steps"]:
            raise GanzooError(f"stackgan trains stage 1 for stage1_steps and stage 2 for the rest of steps: "
                              f"stage1_steps must be between 1 and steps - 1, got stage1_steps="
                              f"{hp['stage1_steps']} with steps={hp['steps']}")

    # -- shapes -----------------------------------------------------------------------------------
    @property
    def side(self) -> int:
        """The square side Stage-II works at: the data's, rounded up to a power of two (>= 16)."""
        _, height, width = self.spec.shape
        return power_of_two_side(height, width, 16)

    def stage_of(self, step: int) -> int:
        return 1 if step < self.hparams["stage1_steps"] else 2

    # -- the contract -----------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        hp, side, classes, channels = self.hparams, self.side, spec.num_classes, spec.channels
        nets = nn.ModuleDict({
            "G1": StageOne(classes, hp["embed_dim"], hp["c_dim"], hp["nz"], channels, hp["g_width"], side // 2,
                           hp["conditioning_augmentation"], hp["ca_code"]),
            "D1": LabelledCritic(classes, hp["embed_dim"], hp["c_dim"], channels, hp["d_width"], side // 2),
            "G2": StageTwo(classes, hp["embed_dim"], hp["c_dim"], channels, hp["g_width"],
                           hp["conditioning_augmentation"], hp["ca_code"]),
            "D2": LabelledCritic(classes, hp["embed_dim"], hp["c_dim"], channels, hp["d_width"], side),
            "progress": StageMarker(),
        })
        dcgan_init(nets)
        return nets

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        hp = self.hparams
        return {key: adam(nets[key].parameters(), lr=hp["lr_g"] if key[0] == "G" else hp["lr_d"],
                                      betas=hp["betas"])
                for key in ("G1", "D1", "G2", "D2")}

    def phases(self, step: int) -> list[Phase]:
        if self.stage_of(step) == 1:
            return [Phase("D1", ("D1",), self.stage_one_critic), Phase("G1", ("G1",), self.stage_one_generator, uses_real=False)]
        return [Phase("D2", ("D2",), self.stage_two_critic), Phase("G2", ("G2",), self.stage_two_generator, uses_real=False)]

    def end_step(self, state: TrainState) -> None:
        state.nets["progress"].stage.fill_(self.stage_of(state.step))

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.hparams["nz"], device=device)

    def generate(self, nets, z, labels=None, stage: int | None = None):
        """Images (n, *spec.shape) in [-1, 1] for ``labels`` (n,): from the stage the run has
        reached, or ``stage`` (1 or 2; 2 only once stage 2 has trained)."""
        reached = int(nets["progress"].stage)
        stage = reached if stage is None else stage
        if stage not in (1, 2):
            raise GanzooError(f"--stage must be 1 or 2, got {stage}")
        if stage > reached:
            raise GanzooError(f"stage 2 has not been trained yet (this checkpoint is in stage 1, which lasts "
                              f"{self.hparams['stage1_steps']} steps); use --stage 1")
        low, _, _ = nets["G1"](z, labels)
        if stage == 1:
            image = F.interpolate(low, scale_factor=2, mode="nearest")
        else:
            image, _, _ = nets["G2"](low, labels)
        return center_crop(image, *self.spec.shape[1:])

    # -- losses -----------------------------------------------------------------------------------
    def real_at(self, real: torch.Tensor, stage: int) -> torch.Tensor:
        """Real images (N, C, H, W) at the stage's resolution (padded to the side; halved for Stage-I)."""
        x = pad_to_side(real, self.side)
        return F.avg_pool2d(x, 2) if stage == 1 else x

    @staticmethod
    def wrong_labels(labels: torch.Tensor, classes: int) -> torch.Tensor:
        """Each label moved to another class (a random non-zero offset): the mismatched pairs."""
        return (labels + torch.randint(1, classes, labels.shape, device=labels.device)) % classes

    def _critic_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor):
        wrong = self.wrong_labels(labels, self.spec.num_classes)
        real_logits = critic(real, labels).float()
        fake_logits = critic(fake, labels).float()
        wrong_logits = critic(real, wrong).float()
        loss = (F.softplus(-real_logits).mean()
                + 0.5 * (F.softplus(fake_logits).mean() + F.softplus(wrong_logits).mean()))
        return loss, {"loss": loss, "real": torch.sigmoid(real_logits).mean(),
                      "fake": torch.sigmoid(fake_logits).mean(), "wrong": torch.sigmoid(wrong_logits).mean()}

    def _generator_loss(self, critic, fake, mu, logvar, labels):
        fake_logits = critic(fake, labels).float()
        adversarial = F.softplus(-fake_logits).mean()
        if logvar is None:  # no conditioning augmentation: no KL term
            return adversarial, {"loss": adversarial, "fake": torch.sigmoid(fake_logits).mean()}
        kl = kl_to_standard_normal(mu.float(), logvar.float())
        loss = adversarial + self.hparams["kl_weight"] * kl
        return loss, {"loss": loss, "kl": kl, "fake": torch.sigmoid(fake_logits).mean()}

    def stage_one_critic(self, nets: nn.ModuleDict, batch: Batch):
        with torch.no_grad():
            fake, _, _ = nets["G1"](self.latent(len(batch), batch.real.device), batch.labels)
        return self._critic_loss(nets["D1"], self.real_at(batch.real, 1), fake, batch.labels)

    def stage_one_generator(self, nets: nn.ModuleDict, batch: Batch):
        fake, mu, logvar = nets["G1"](self.latent(len(batch), batch.real.device), batch.labels)
        return self._generator_loss(nets["D1"], fake, mu, logvar, batch.labels)

    def _stage_one_images(self, nets: nn.ModuleDict, batch: Batch) -> torch.Tensor:
        """Stage-I's images as stage 2's inputs: no gradient, and its weights are in no phase of
        stage 2. It stays in training mode, as in the reference code (its BatchNorm normalises
        with the batch's statistics; its running statistics keep following them)."""
        with torch.no_grad():
            low, _, _ = nets["G1"](self.latent(len(batch), batch.real.device), batch.labels)
        return low

    def stage_two_critic(self, nets: nn.ModuleDict, batch: Batch):
        low = self._stage_one_images(nets, batch)
        with torch.no_grad():
            fake, _, _ = nets["G2"](low, batch.labels)
        return self._critic_loss(nets["D2"], self.real_at(batch.real, 2), fake, batch.labels)

    def stage_two_generator(self, nets: nn.ModuleDict, batch: Batch):
        fake, mu, logvar = nets["G2"](self._stage_one_images(nets, batch), batch.labels)
        return self._generator_loss(nets["D2"], fake, mu, logvar, batch.labels)


@hookimpl
def register_variants(register):
    register(StackGAN)
