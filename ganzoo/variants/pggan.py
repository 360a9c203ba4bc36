"""pggan: progressive growing of GANs.

Karras, Aila, Laine and Lehtinen, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", ICLR 2018 (arXiv:1710.10196); the reference
is the authors' TensorFlow code (tkarras/progressive_growing_of_gans).

Training starts at 4x4 and doubles the resolution up to the data's (28-px sets
are padded to 32 with their edge pixels, i.e. their black background, and
generated 32x32 images are cropped back to 28). Each new resolution is first
*faded in*: the new block's output is blended with the previous resolution's,
upsampled, with a weight alpha rising linearly from 0 to 1, then *stabilised*
at alpha = 1. What the paper describes and this module keeps:

* pixel norm after every conv of G and on the latent; equalised learning rate
  (weights drawn N(0, 1) and scaled at run time by He's constant,
  sqrt(2 / fan_in); gain 1 for the to-RGB layers, sqrt(2)/4 for G's first
  dense layer, as in the reference); nearest upsampling and average pooling;
  1x1 to-RGB / from-RGB layers per resolution; LeakyReLU 0.2; a linear output;
* the minibatch-stddev layer (the toolkit's ``minibatch_std``, group 4) before
  the critic's last conv; real images blended between resolutions during a
  fade-in, as the reference's data pipeline does;
* WGAN-GP loss (lambda 10) with the epsilon-drift term 0.001 * E[D(x)^2];
  one critic step per generator step; Adam lr 0.001, betas (0, 0.99), eps 1e-8;
  an exponential moving average of G (decay 0.999) for sampling, with
  stylegan2-ada's ramp-up (``ema_rampup`` 0.05: the half-life is at most 5%
  of the steps so far). The ramp-up is ours: the reference's phases last
  6k-50k steps, so 0.999 forgets each new block's random start within a
  phase; ours last 300 steps, and without the ramp-up the EMA generator
  scored worse than G (see below).
* Optimiser state across a growth step: the reference resets Adam's moments
  whenever a new resolution starts fading in (``reset_opt_for_new_lod``); so
  does this module (``end_step``), both optimisers.

Scaled down for a CPU (``--set`` restores the paper's): the latent has 128
dimensions (paper: 512); feature maps are min(fmap_max, fmap_base / 2^level),
64 at 4-8 px, 32 at 16 px, 16 at 32 px (paper: 512 up to 32 px;
``--set fmap_base=8192 fmap_max=512``); a fixed batch of 64 (the reference's
batch at 32 px; it uses 128 below that); each fade-in and each stabilisation
lasts ``phase_images`` = 19,200 real images, 300 steps (paper: 800k), and the
run ends at ``steps`` = 3000 generator steps: 4x4 for 300 steps, 8 and 16 px
faded in and stabilised for 600 steps each, 32 px faded in for 300 and then
trained for 1500. One thread of the 2-core development machine, beside two
other jobs, took 0.04 / 0.17 / 0.39 / 0.79 s per step at 4 / 8 / 16 / 32 px;
full default runs on digits took 23.5-23.9 CPU-minutes (quality rebuild,
2026-12-04), where the EMA generator scored worse than G (FD 475 vs 256):
the decay averages over weights of earlier resolutions at this short budget.

How the growing nets fit the contract (no core change was needed): every
block of every resolution is built at the start, and the nets hold the
schedule's position (``level``, ``alpha``) as buffers. The schedule is a
function of the generator step, so ``end_step`` sets the buffers for the next
step; checkpoints hold them with the weights, and a run stopped at any
resolution or mid-fade resumes bit-identically. Blocks above the current
level take no part in the forward pass, get no gradient, and Adam leaves them
untouched. Sampling draws at the current resolution, upscaled to the data's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch, DataSpec
from ..errors import GanzooError
from ..hookspecs import hookimpl
from ..nets import MinibatchStdDev, center_crop, pad_to_side, power_of_two_side
from ..ops import gradient_penalty
from ..optim import adam
from ..variant import Phase, TrainState, Variant

#: The lowest resolution: PGGAN starts every run at 4x4.
BASE_RESOLUTION = 4


# -- layers -------------------------------------------------------------------------------------
class EqualizedLinear(nn.Module):
    """A linear layer with the equalised learning rate: weights N(0, 1), scaled by gain / sqrt(fan_in)."""

    def __init__(self, fan_in: int, fan_out: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.scale = gain / math.sqrt(fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """A stride-1 'same' convolution with the equalised learning rate (see :class:`EqualizedLinear`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit root mean square (PGGAN section 4.2): (N, C, ...)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


class GrowthState(nn.Module):
    """The schedule's position as buffers, so checkpoints and EMA copies carry it:
    ``level`` (0 = 4x4, each level doubles) and ``alpha`` (the new block's weight in a fade-in)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("level", torch.zeros((), dtype=torch.long))
        self.register_buffer("alpha", torch.ones(()))

    def set(self, level: int, alpha: float) -> None:
        self.level.fill_(level)
        self.alpha.fill_(alpha)

    def read(self) -> tuple[int, float]:
        return int(self.level), float(self.alpha)


def fmaps(level: int, base: int, cap: int) -> int:
    """Feature maps at ``level``: min(cap, base / 2^level), at least 8 (the reference's nf())."""
    return max(8, min(cap, base >> level))


class ProgressiveGenerator(nn.Module):
    """G: z (N, nz) -> images (N, C, r, r) at the current resolution r = 4 * 2^level; linear output."""

    def __init__(self, nz: int, channels: int, levels: int, fmap_base: int, fmap_max: int):
        super().__init__()
        self.growth = GrowthState()
        width = [fmaps(i, fmap_base, fmap_max) for i in range(levels + 1)]
        self.dense = EqualizedLinear(nz, width[0] * BASE_RESOLUTION ** 2, gain=math.sqrt(2) / 4)
        self.first_conv = EqualizedConv2d(width[0], width[0], 3)
        self.blocks = nn.ModuleList([nn.Identity()])  # level 0 is dense + first_conv
        for i in range(1, levels + 1):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(width[i - 1], width[i], 3),
                                              EqualizedConv2d(width[i], width[i], 3)]))
        self.to_rgb = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=1.0) for w in width])

    def _block(self, level: int, x: torch.Tensor) -> torch.Tensor:
        first, second = self.blocks[level]
        x = pixel_norm(lrelu(first(upsample(x))))
        return pixel_norm(lrelu(second(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        level, alpha = self.growth.read()
        x = self.dense(pixel_norm(z)).view(z.shape[0], -1, BASE_RESOLUTION, BASE_RESOLUTION)
        x = pixel_norm(lrelu(x))
        x = pixel_norm(lrelu(self.first_conv(x)))
        previous = x
        for i in range(1, level + 1):
            previous, x = x, self._block(i, x)
        image = self.to_rgb[level](x)
        if level > 0 and alpha < 1.0:
            image = torch.lerp(upsample(self.to_rgb[level - 1](previous)), image, alpha)
        return image


class ProgressiveDiscriminator(nn.Module):
    """D: images (N, C, r, r) at the current resolution -> scores (N,)."""

    def __init__(self, channels: int, levels: int, fmap_base: int, fmap_max: int, minibatch_std: int):
        super().__init__()
        self.growth = GrowthState()
        width = [fmaps(i, fmap_base, fmap_max) for i in range(levels + 1)]
        self.from_rgb = nn.ModuleList([EqualizedConv2d(channels, w, 1) for w in width])
        self.blocks = nn.ModuleList([nn.Identity()])
        for i in range(1, levels + 1):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(width[i], width[i], 3),
                                              EqualizedConv2d(width[i], width[i - 1], 3)]))
        self.stddev = MinibatchStdDev(minibatch_std) if minibatch_std else None
        self.last_conv = EqualizedConv2d(width[0] + (1 if minibatch_std else 0), width[0], 3)
        self.dense = EqualizedLinear(width[0] * BASE_RESOLUTION ** 2, width[0])
        self.out = EqualizedLinear(width[0], 1, gain=1.0)

    def _block(self, level: int, x: torch.Tensor) -> torch.Tensor:
        first, second = self.blocks[level]
        return downsample(lrelu(second(lrelu(first(x)))))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        level, alpha = self.growth.read()
        x = lrelu(self.from_rgb[level](image))
        if level > 0:
            x = self._block(level, x)
            if alpha < 1.0:
                x = torch.lerp(lrelu(self.from_rgb[level - 1](downsample(image))), x, alpha)
        for i in range(level - 1, 0, -1):
            x = self._block(i, x)
        if self.stddev is not None:
            x = self.stddev(x)
        x = lrelu(self.last_conv(x))
        x = lrelu(self.dense(x.flatten(1)))
        return self.out(x).squeeze(1)


# -- the schedule -----------------------------------------------------------------------------
def growth_at(step: int, phase_steps: int, levels: int) -> tuple[int, float]:
    """(level, alpha) of generator step ``step``: ``phase_steps`` steps at 4x4, then for each
    level a fade-in (alpha from 1/phase_steps up to 1) and a stabilisation of ``phase_steps``
    steps each; after the last level's, the full resolution until the end."""
    if step < phase_steps:
        return 0, 1.0
    phase, into = divmod(step - phase_steps, phase_steps)
    level = 1 + phase // 2
    if level > levels:
        return levels, 1.0
    fading = phase % 2 == 0
    return level, ((into + 1) / phase_steps if fading else 1.0)


class PGGAN(Variant):
    name = "pggan"
    paper = "Karras et al. 2018, Progressive Growing of GANs for Improved Quality, Stability, and Variation (arXiv:1710.10196)"
    summary = ("progressive growing from 4x4 with fade-in, pixel norm, equalised LR, minibatch-stddev; "
               "WGAN-GP + epsilon-drift; images only")
    data_kinds = ("image",)
    features = ("ema", "lr_schedule", "minibatch_std")
    defaults = {
        "steps": 3000,
        "batch_size": 64,
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "betas": (0.0, 0.99),
        "nz": 128,
        "fmap_base": 128,
        "fmap_max": 64,
        "phase_images": 19200,  # 300 steps of 64 per fade-in and per stabilisation (paper: 800k images)
        "gp_weight": 10.0,
        "drift": 1e-3,
        "minibatch_std": 4,
        "ema": 0.999,
        # stylegan2-ada's ramp-up (Karras et al. 2020): the half-life is at most 5% of the steps so far.
        # The reference's 0.999 is short against its 800k-image phases (6k-50k steps); against ours
        # (300 steps) it kept 22% of the 32-px block's random start at the end of the run.
        "ema_rampup": 0.05,
    }
    positive = Variant.positive | {"fmap_base", "fmap_max", "phase_images"}

    # -- shapes ---------------------------------------------------------------------------------
    def _sizes(self, spec: DataSpec) -> tuple[int, int]:
        """(levels above 4x4, the square side trained at): the data's side rounded up to a power of two."""
        _, height, width = spec.shape
        full = power_of_two_side(height, width, BASE_RESOLUTION)
        if full > 1024:
            raise GanzooError(f"pggan grows up to 1024 px; this data is {height}x{width}")
        return int(math.log2(full // BASE_RESOLUTION)), full

    @property
    def levels(self) -> int:
        return self._sizes(self.spec)[0]

    @property
    def phase_steps(self) -> int:
        return max(1, math.ceil(self.hparams["phase_images"] / self.batch_size))

    def growth(self, step: int) -> tuple[int, float]:
        """(level, alpha) at generator step ``step`` (see :func:`growth_at`)."""
        return growth_at(step, self.phase_steps, self.levels)

    # -- the contract -----------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        levels, _ = self._sizes(spec)
        hp = self.hparams
        nets = nn.ModuleDict({
            "G": ProgressiveGenerator(hp["nz"], spec.channels, levels, hp["fmap_base"], hp["fmap_max"]),
            "D": ProgressiveDiscriminator(spec.channels, levels, hp["fmap_base"], hp["fmap_max"],
                                          hp["minibatch_std"]),
        })
        set_growth(nets, *growth_at(0, self.phase_steps, levels))
        return nets

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        hp = self.hparams
        return {"G": adam(nets["G"].parameters(), lr=hp["lr_g"], betas=hp["betas"], eps=1e-8),
                "D": adam(nets["D"].parameters(), lr=hp["lr_d"], betas=hp["betas"], eps=1e-8)}

    def phases(self, step: int) -> list[Phase]:
        return [Phase("D", ("D",), self.critic_loss), Phase("G", ("G",), self.generator_loss, uses_real=False)]

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.hparams["nz"], device=device)

    def generate(self, nets, z, labels=None):
        """Images (n, *spec.shape) in [-1, 1]: G's current resolution upscaled (nearest) to the data's."""
        image = nets["G"](z)
        _, full = self._sizes(self.spec)
        image = F.interpolate(image, size=(full, full), mode="nearest") if image.shape[-1] != full else image
        return center_crop(image, *self.spec.shape[1:]).clamp(-1.0, 1.0)

    def end_step(self, state: TrainState) -> None:
        level, alpha = self.growth(state.step)
        previous_level, _ = self.growth(state.step - 1)
        set_growth(state.nets, level, alpha)
        if level != previous_level:  # a new resolution starts fading in: fresh Adam moments (reference)
            for optimizer in state.optimizers.values():
                optimizer.state.clear()

    # -- losses ---------------------------------------------------------------------------------
    def real_at(self, real: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """Real images (N, C, H, W) at the resolution of ``level``, blended as the generator's are
        during a fade-in: lerp(upsampled lower resolution, this resolution, alpha)."""
        x = pad_to_side(real, self._sizes(self.spec)[1])
        for _ in range(self.levels - level):
            x = downsample(x)
        if level > 0 and alpha < 1.0:
            x = torch.lerp(upsample(downsample(x)), x, alpha)
        return x

    def _growth_of(self, nets: nn.ModuleDict) -> tuple[int, float]:
        return nets["D"].growth.read()

    def critic_loss(self, nets: nn.ModuleDict, batch: Batch):
        level, alpha = self._growth_of(nets)
        real = self.real_at(batch.real, level, alpha)
        with torch.no_grad():
            fake = nets["G"](self.latent(len(batch), real.device))
        critic = nets["D"]
        real_scores, fake_scores = critic(real).float(), critic(fake).float()
        wasserstein = fake_scores.mean() - real_scores.mean()
        penalty, grad_norm = gradient_penalty(critic, real, fake, weight=self.hparams["gp_weight"])
        drift = self.hparams["drift"] * real_scores.square().mean()
        loss = wasserstein + penalty + drift
        return loss, {"loss": loss, "real": real_scores.mean(), "fake": fake_scores.mean(), "gp": penalty,
                      "drift": drift, "grad_norm": grad_norm.mean(), "resolution": float(real.shape[-1]),
                      "alpha": alpha}

    def generator_loss(self, nets: nn.ModuleDict, batch: Batch):
        fake_scores = nets["D"](nets["G"](self.latent(len(batch), batch.real.device))).float()
        loss = -fake_scores.mean()
        return loss, {"loss": loss, "fake": fake_scores.mean()}


def set_growth(nets: nn.ModuleDict, level: int, alpha: float) -> None:
    """Every net's (the EMA copy's too) schedule position."""
    for module in nets.modules():
        if isinstance(module, GrowthState):
            module.set(level, alpha)


@hookimpl
def register_variants(register):
    register(PGGAN)
