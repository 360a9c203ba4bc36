"""stylegan2: a style-based generator with weight demodulation, and a residual critic.

Karras, Laine, Aittala, Hellsten, Lehtinen and Aila, "Analyzing and Improving
the Image Quality of StyleGAN", CVPR 2020 (arXiv:1912.04958). The reference
is NVlabs/stylegan2-ada-pytorch (Karras et al. 2020, arXiv:2006.06676), whose
settings for small images ("auto" and "cifar" configurations of its train.py)
this module follows where the paper's are for 1024 px. What it keeps:

* **Mapping network**: z normalised by its second moment, ``mapping_layers``
  (8) fully connected layers of ``w_dim`` with a learning-rate multiplier of
  0.01 (``mapping_lr_mul``), giving w, broadcast to every layer of the
  synthesis network. The average of w is tracked during training (decay
  ``w_avg_beta`` = 0.995) in a buffer of the mapping network, so checkpoints,
  and the EMA copy, hold it: ``ganzoo sample --truncation PSI`` samples
  w_avg + psi (w - w_avg).
* **Synthesis network**: a learned constant 4x4 input; at every resolution
  modulated and demodulated 3x3 convolutions (the style scales the input
  channels, each output channel is divided by the norm of its modulated
  weights), per-pixel noise inputs with a learned strength per layer
  (initialised to 0; in training fresh noise, when sampling a fixed map per
  layer, the reference's ``noise_mode='const'``), and the skip architecture:
  a modulated, not demodulated, 1x1 to-RGB layer at each resolution whose
  output is added to the upsampled image so far.
* **Resampling** with the [1, 3, 3, 1] FIR filter, as the reference's
  upfirdn2d does, borders zero-padded: the up-convolution is a stride-2
  transposed 3x3 convolution followed by the filter (gain 4); the image of
  the skip generator is upsampled by the filter alone. (Bilinear 2x
  upsampling is the same filter away from the borders; we kept the filter.)
  The critic blurs with it before a stride-2 3x3 convolution, and its 1x1
  skips downsample with it.
* **Equalised learning rate** everywhere: weights drawn N(0, 1) and scaled at
  run time by 1 / sqrt(fan_in) (demodulation does it for the modulated 3x3
  layers); style affines start with bias 1.
* **Bias + LeakyReLU(0.2) with gain sqrt(2)** in G and D through
  :func:`ganzoo.ops.fused_leaky_relu` (the op stylegan2-ada's ``bias_act``
  fuses); its cheap double backward is what R1 and path-length
  regularisation run through.
* **Residual critic**: from-RGB 1x1 at the full resolution; per block a 3x3
  conv and a 3x3 stride-2 conv, plus a 1x1 downsampling skip without bias,
  summed and scaled by sqrt(0.5); then minibatch-stddev (group 4, one
  channel), a 3x3 conv, a dense layer and a linear output.
* **Losses**: non-saturating logistic. **Lazy R1** on reals, a phase of its
  own every ``r1_every`` = 16 steps, weighted by 16 (``r1_gamma=0`` turns it
  off); gamma = 0.0064, stylegan2-ada's automatic rule
  0.0002 * res^2 / batch at 32 px and batch 32 (its CIFAR-10 configuration
  uses 0.01; the paper's 1024-px FFHQ value is 10; for 64-px data the rule
  gives 0.0256). **Lazy path-length
  regularisation**, a phase every ``pl_every`` = 4 steps on half the batch
  (``pl_batch_shrink`` 2), decay 0.01, off by default (``pl_weight`` 0, as
  the reference's 32-px CIFAR-10 configuration; the paper's weight is 2).
  As in the reference, both optimisers' rates and betas are adjusted for
  the lazy intervals: lr * k / (k + 1), beta ** (k / (k + 1)), k = 16 for
  D and 4 for G.
* **Style mixing regularisation**: with probability 0.9 a training batch
  takes the styles of a second latent from a random layer on.
* **EMA of G** (the toolkit's ``ema``): the reference's half-life of
  ema_kimg = batch * 10 / 32 = 10k images at batch 32 is a decay of
  0.5 ** (32 / 10000) = 0.997784 per step, with its ramp-up 0.05 (the
  half-life is at most 5% of the steps so far).
* **DiffAugment** (the toolkit's ``diffaug``) applies to the critic, for
  small data: ``--set diffaug=color,translation,cutout``.

Deviations, all for a run on a CPU or for exactness under torchrun:
28-px data is padded to 32 with its edge pixels (its black background) and
generated images are cropped back; W's average is updated once per generator
step, in ``end_step``, from the mean w of a fresh batch of latents (the
reference updates it at every training forward of the mapping network; this
way every torchrun rank, and ``--accumulate``, gives the same value); the
path-length penalty's target is the running mean from before the step, and
the step's lengths from every micro-batch and rank update it in ``end_step``
(the reference folds each GPU's own batch into its own mean first).

Scaled down for a CPU (``--set preset=paper`` restores config F of the paper):
z and w of 128 dimensions (paper 512), feature maps
min(channel_base / res, channel_max) = 64 at 4-16 px and 32 at 32 px
(paper: channel_base 32768, channel_max 512), batch 32, Adam 0.0025 with
betas (0, 0.99) (stylegan2-ada's rate below 1024 px), 2,500 generator steps
(80k images; the paper trains for 25M). One thread of the 2-core development
machine, busy with two other jobs (load average 3.2), took 0.44 s per step
on digits at the defaults (32 steps, two of them with R1; 0.46 s with
``pl_weight=2``): about 18 minutes for the default run.

Sampling options: ``truncation`` (psi in (0, 1]) and ``style_mix`` (a K x K
grid from K latents: the cell in row i and column j takes the coarse styles,
those of the resolutions up to ``style_mix`` px (default 8), from latent i
and the rest from latent j; the diagonal shows the K latents themselves).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import optim
from ..data.base import Batch, DataSpec
from ..distributed import gather_from_ranks
from ..errors import GanzooError
from ..hookspecs import hookimpl
from ..nets import MinibatchStdDev, center_crop, pad_to_side, power_of_two_side
from ..ops import fused_leaky_relu, r1_penalty
from ..precision import inner_grad_scale
from ..sampling import check_psi
from ..variant import Phase, TrainState, Variant

SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)
#: The style-mixing grid's default crossover: the styles of 4-8 px are the "coarse" ones.
STYLE_MIX_CROSSOVER = 8


# -- resampling with the [1, 3, 3, 1] filter ---------------------------------------------------
#: The separable [1, 3, 3, 1] filter as a 4x4 kernel summing to 1 (a constant, also for ``ganzoo export``).
FIR_KERNEL = torch.outer(torch.tensor([1.0, 3.0, 3.0, 1.0]), torch.tensor([1.0, 3.0, 3.0, 1.0])) / 64.0


def _fir(channels: int, gain: float, like: torch.Tensor) -> torch.Tensor:
    """The filter, normalised to sum ``gain``, one per channel, in ``like``'s dtype and device: (C, 1, 4, 4)."""
    return (FIR_KERNEL.to(like.device, like.dtype) * gain).expand(channels, 1, 4, 4)


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 2H, 2W): zeros inserted, then the filter (gain 4), zero-padded borders."""
    channels = x.shape[1]
    return F.conv_transpose2d(x, _fir(channels, 4.0, x), stride=2, padding=1, groups=channels)


def downsample2d(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H/2, W/2): the filter, then every second pixel."""
    channels = x.shape[1]
    return F.conv2d(x, _fir(channels, 1.0, x), stride=2, padding=1, groups=channels)


def blur(x: torch.Tensor, pad: int, gain: float = 1.0) -> torch.Tensor:
    """The filter at stride 1 with ``pad`` zeros on each side: (N, C, H, W) -> (N, C, H + 2 pad - 3, ...)."""
    channels = x.shape[1]
    return F.conv2d(x, _fir(channels, gain, x), padding=pad, groups=channels)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each row scaled to unit root mean square: (N, D) -> (N, D)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# -- layers with the equalised learning rate -----------------------------------------------------
class FullyConnected(nn.Module):
    """x W^T + b with W ~ N(0, 1 / lr_mul^2) scaled by lr_mul / sqrt(fan_in), b scaled by lr_mul;
    then, when ``activation``, LeakyReLU(0.2) with gain sqrt(2) through the fused op."""

    def __init__(self, fan_in: int, fan_out: int, activation: bool = True, lr_mul: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init)))
        self.weight_gain, self.bias_gain, self.activation = lr_mul / math.sqrt(fan_in), lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = self.bias * self.bias_gain if self.bias_gain != 1.0 else self.bias
        if not self.activation:
            return torch.addmm(bias.to(x.dtype), x, weight.t())
        y = x.matmul(weight.t())
        return fused_leaky_relu(y, bias.to(y.dtype), 0.2, gain=SQRT2)


class Conv2dLayer(nn.Module):
    """The critic's convolution: equalised LR, 'same' padding or downsampling by 2, then bias +
    LeakyReLU(0.2) x sqrt(2) (fused) or linear. ``forward(x, gain)`` scales the output by ``gain``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: bool = True,
                 bias: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.kernel, self.activation, self.down = kernel, activation, down

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        if not self.down:
            x = F.conv2d(x, weight, padding=self.kernel // 2)
        elif self.kernel == 1:
            x = F.conv2d(downsample2d(x), weight)
        else:  # the filter (pad 2: H + 1), then a stride-2 convolution without padding: H / 2
            x = F.conv2d(blur(x, pad=2), weight, stride=2)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(x, bias, 0.2, gain=SQRT2 * gain)
        if bias is not None:
            x = x + bias.view(1, -1, 1, 1)
        return x * gain if gain != 1.0 else x


class ModulatedConv(nn.Module):
    """A synthesis layer: modulated, demodulated 3x3 conv (optionally upsampling by 2), noise
    with a learned strength, bias + LeakyReLU(0.2) x sqrt(2) (fused)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        styles = self.affine(w)  # (N, in)
        weight = self.weight.to(x.dtype)
        # Demodulation: each output channel's modulated weights to unit norm,
        # sum over in, kh, kw of (weight * style)^2 = sum over in of |weight_o,in|^2 style_in^2.
        dcoefs = (styles.square().matmul(weight.square().sum(dim=(2, 3)).t()) + 1e-8).rsqrt()  # (N, out)
        x = x * styles[:, :, None, None].to(x.dtype)
        if self.up:  # transposed 3x3 at stride 2 (2H + 1), then the filter with gain 4 (2H)
            x = blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), pad=1, gain=4.0)
        else:
            x = F.conv2d(x, weight, padding=1)
        x = x * dcoefs[:, :, None, None].to(x.dtype)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength.to(x.dtype)
        return fused_leaky_relu(x, self.bias.to(x.dtype), 0.2, gain=SQRT2)


class ToRGB(nn.Module):
    """A modulated 1x1 conv without demodulation (the style carries the equalised-LR scale), plus a bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = F.conv2d(x * styles[:, :, None, None].to(x.dtype), self.weight.to(x.dtype))
        return x + self.bias.to(x.dtype).view(1, -1, 1, 1)


# -- the generator ----------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """z (N, nz) -> w (N, w_dim); holds the running average of w (``w_avg``) for truncation."""

    def __init__(self, nz: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        sizes = [nz] + [w_dim] * layers
        self.layers = nn.ModuleList([FullyConnected(a, b, lr_mul=lr_mul) for a, b in zip(sizes, sizes[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def track(self, w: torch.Tensor, beta: float) -> None:
        """w_avg <- beta * w_avg + (1 - beta) * mean(w)."""
        self.w_avg.lerp_(w.float().mean(dim=0), 1.0 - beta)


def channels_at(resolution: int, base: int, cap: int) -> int:
    """Feature maps at ``resolution``: min(base / resolution, cap), at least 1 (the reference's rule)."""
    return max(1, min(base // resolution, cap))


class SynthesisBlock(nn.Module):
    """One resolution: (the constant, or) an upsampling conv, a conv, and a to-RGB layer."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.convs = nn.ModuleList([ModulatedConv(out_channels, out_channels, w_dim, 4)])
        else:
            self.convs = nn.ModuleList([ModulatedConv(in_channels, out_channels, w_dim, resolution, up=True),
                                        ModulatedConv(out_channels, out_channels, w_dim, resolution)])
        self.to_rgb = ToRGB(out_channels, img_channels, w_dim)

    @property
    def num_conv(self) -> int:
        return len(self.convs)

    def forward(self, x, image, ws, noise_mode):
        """ws (N, num_conv + 1, w_dim): one per conv, then the to-RGB layer's."""
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        for i, conv in enumerate(self.convs):
            x = conv(x, ws[:, i], noise_mode)
        y = self.to_rgb(x, ws[:, self.num_conv])
        image = y if image is None else upsample2d(image) + y
        return x, image


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images (N, C, side, side), linear output (not clamped)."""

    def __init__(self, w_dim: int, side: int, img_channels: int, channel_base: int, channel_max: int):
        super().__init__()
        resolutions = [4 * 2 ** i for i in range(int(math.log2(side // 4)) + 1)]
        self.blocks = nn.ModuleList([
            SynthesisBlock(channels_at(max(r // 2, 4), channel_base, channel_max),
                           channels_at(r, channel_base, channel_max), w_dim, r, img_channels)
            for r in resolutions])
        self.resolutions = resolutions
        # Block b reads ws[start_b : start_b + num_conv + 1]; the next block starts at start_b + num_conv,
        # so a block's to-RGB layer shares its w with the next block's first conv (as in the reference).
        self.starts = [sum(b.num_conv for b in self.blocks[:i]) for i in range(len(self.blocks))]
        self.num_ws = self.starts[-1] + self.blocks[-1].num_conv + 1

    def crossover(self, resolution: int) -> int:
        """How many leading ws drive the convolutions of the resolutions up to ``resolution``."""
        index = self.resolutions.index(resolution)
        return self.starts[index] + self.blocks[index].num_conv

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = image = None
        for block, start in zip(self.blocks, self.starts):
            x, image = block(x, image, ws[:, start:start + block.num_conv + 1], noise_mode)
        return image


class StyleGenerator(nn.Module):
    """The mapping and synthesis networks. ``forward(z)`` -> images (N, C, side, side), without
    mixing or truncation; the variant composes the parts for those."""

    def __init__(self, nz: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float, side: int,
                 img_channels: int, channel_base: int, channel_max: int):
        super().__init__()
        self.mapping = MappingNetwork(nz, w_dim, mapping_layers, mapping_lr_mul)
        self.synthesis = SynthesisNetwork(w_dim, side, img_channels, channel_base, channel_max)

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) -> ws (N, num_ws, w_dim): the same style for every layer."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z)), "random" if self.training else "const")


# -- the critic ---------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """conv 3x3, conv 3x3 down; skip 1x1 down without bias; summed, each scaled by sqrt(0.5)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3)
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, down=True)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, activation=False, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x, gain=SQRT_HALF) + self.conv1(self.conv0(x), gain=SQRT_HALF)


class ResidualDiscriminator(nn.Module):
    """images (N, C, side, side) -> logits (N,)."""

    def __init__(self, side: int, img_channels: int, channel_base: int, channel_max: int, minibatch_std: int):
        super().__init__()
        resolutions = [side // 2 ** i for i in range(int(math.log2(side // 4)))]  # side, ..., 8
        self.from_rgb = Conv2dLayer(img_channels, channels_at(side, channel_base, channel_max), 1)
        self.blocks = nn.Sequential(*[ResidualBlock(channels_at(r, channel_base, channel_max),
                                                    channels_at(r // 2, channel_base, channel_max))
                                      for r in resolutions])
        top = channels_at(4, channel_base, channel_max)
        self.stddev = MinibatchStdDev(minibatch_std) if minibatch_std else None
        self.conv = Conv2dLayer(top + (1 if minibatch_std else 0), top, 3)
        self.fc = FullyConnected(top * 16, top)
        self.out = FullyConnected(top, 1, activation=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(image))
        if self.stddev is not None:
            x = self.stddev(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class PathLengthMean(nn.Module):
    """The running mean of path lengths (a buffer: checkpointed). The lengths of a step are staged by
    :meth:`stage` and folded in by :meth:`commit`, gathered from every micro-batch and rank in shard
    order, so a torchrun run equals one process with ``--accumulate``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self._staged: list[torch.Tensor] = []

    def stage(self, lengths: torch.Tensor) -> None:
        self._staged.append(lengths.detach().float())

    @torch.no_grad()
    def commit(self, decay: float) -> None:
        rows = torch.cat(self._staged) if self._staged else self.mean.new_zeros(0)
        self._staged.clear()
        lengths = torch.cat(gather_from_ranks(rows))
        if lengths.numel():
            self.mean.lerp_(lengths.mean(), decay)


# -- the variant ------------------------------------------------------------------------------
#: stylegan2-ada's ema_kimg = batch * 10 / 32 at batch 32 (10k images), as a decay per step of 32.
EMA_DECAY = round(0.5 ** (32 / 10_000), 6)


class StyleGAN2(Variant):
    name = "stylegan2"
    paper = "Karras et al. 2020, Analyzing and Improving the Image Quality of StyleGAN (arXiv:1912.04958)"
    summary = ("mapping network, modulated/demodulated convs, noise inputs, skip G, residual D, "
               "lazy R1 (+ path length), style mixing, EMA; truncation and style-mixing grids; images only")
    data_kinds = ("image",)
    # R1 is its own phase here; its options take the toolkit's names (r1_gamma, r1_every) but are the
    # variant's, so `--set r1_gamma=0` alone turns it off (a listed feature that is off refuses its
    # other options at values other than "off", and r1_every is 16 here).
    features = ("ema", "lr_schedule", "diffaug", "minibatch_std")
    sampling_options = {
        "truncation": "PSI in (0, 1]: w = w_avg + PSI (w - w_avg) (1: none; smaller: nearer the average image)",
        "style_mix": ("a K x K grid from the first K of --n = K^2 latents: row i's coarse styles (up to RES px, "
                      f"default {STYLE_MIX_CROSSOVER}) with column j's finer ones"),
    }
    defaults = {
        "steps": 2500,  # about 18 minutes at 0.44 s per step on one busy CPU thread (see above)
        "batch_size": 32,
        "lr_g": 0.0025,
        "lr_d": 0.0025,
        "betas": (0.0, 0.99),
        "nz": 128,
        "w_dim": 128,
        "mapping_layers": 8,
        "mapping_lr_mul": 0.01,
        "channel_base": 1024,
        "channel_max": 64,
        "minibatch_std": 4,
        "style_mixing": 0.9,
        "w_avg_beta": 0.995,
        "r1_gamma": 0.0064,
        "r1_every": 16,
        "pl_weight": 0.0,
        "pl_every": 4,
        "pl_decay": 0.01,
        "pl_batch_shrink": 2,
        "ema": EMA_DECAY,
        "ema_rampup": 0.05,
    }
    positive = Variant.positive | {"w_dim", "mapping_layers", "mapping_lr_mul", "channel_base", "channel_max",
                                   "w_avg_beta", "r1_every", "pl_every", "pl_batch_shrink"}
    #: Config F of the paper (stylegan2-ada's ``--cfg=stylegan2``): 512-d z and w, 512 feature maps, gamma 10,
    #: path length weight 2, Adam 0.002, EMA half-life 10k images without a ramp-up.
    presets = {"paper": {"nz": 512, "w_dim": 512, "channel_base": 32768, "channel_max": 512, "lr_g": 0.002,
                         "lr_d": 0.002, "r1_gamma": 10.0, "pl_weight": 2.0, "ema_rampup": 0.0}}

    def __init__(self, spec: DataSpec | None = None, **overrides: Any):
        super().__init__(spec, **overrides)
        hp = self.hparams
        for key in ("style_mixing", "pl_decay"):
            if not 0.0 <= hp[key] <= 1.0:
                raise GanzooError(f"{key} must be in [0, 1], got {hp[key]}")
        if not 0.0 < hp["w_avg_beta"] < 1.0:
            raise GanzooError(f"w_avg_beta must be in (0, 1) (the reference's 0.995), got {hp['w_avg_beta']}")
        for key, what in (("r1_gamma", "R1"), ("pl_weight", "path-length regularisation")):
            if hp[key] < 0:
                raise GanzooError(f"{key} must be >= 0 (0 turns {what} off), got {hp[key]}")
        if spec is not None:
            self.side  # noqa: B018 - too large an image is an error now, not at build

    # -- shapes -----------------------------------------------------------------------------------
    @property
    def side(self) -> int:
        """The square side the nets work at: the data's rounded up to a power of two (28 -> 32)."""
        _, height, width = self.spec.shape
        side = power_of_two_side(height, width, 8)
        if side > 1024:
            raise GanzooError(f"stylegan2 works up to 1024 px; this data is {height}x{width}")
        return side

    # -- the contract -----------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        hp, side = self.hparams, self.side
        return nn.ModuleDict({
            "G": StyleGenerator(hp["nz"], hp["w_dim"], hp["mapping_layers"], hp["mapping_lr_mul"], side,
                                spec.channels, hp["channel_base"], hp["channel_max"]),
            "D": ResidualDiscriminator(side, spec.channels, hp["channel_base"], hp["channel_max"],
                                       hp["minibatch_std"]),
            "path_length": PathLengthMean(),
        })

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        """Adam for G and D, each adjusted for its lazy regulariser's interval k as the reference
        does: lr * k / (k + 1), betas ** (k / (k + 1)) (k = pl_every for G, r1_every for D)."""
        hp = self.hparams

        def adam(params, lr: float, interval: int) -> torch.optim.Optimizer:
            ratio = interval / (interval + 1)
            return optim.adam(params, lr=lr * ratio, betas=tuple(b ** ratio for b in hp["betas"]), eps=1e-8)

        return {"G": adam(nets["G"].parameters(), hp["lr_g"], hp["pl_every"]),
                "D": adam(nets["D"].parameters(), hp["lr_d"], hp["r1_every"])}

    def phases(self, step: int) -> list[Phase]:
        """The reference's order: G, G's path length (lazy), D, D's R1 (lazy), each its own optimiser step."""
        hp = self.hparams
        phases = [Phase("G", ("G",), self.generator_loss, uses_real=False)]
        if hp["pl_weight"] > 0:
            phases.append(Phase("G_pl", ("G",), self.path_length_loss, every=int(hp["pl_every"]), uses_real=False))
        phases.append(Phase("D", ("D",), self.critic_loss))
        if hp["r1_gamma"] > 0:
            phases.append(Phase("D_r1", ("D",), self.r1_loss, every=int(hp["r1_every"])))
        return phases

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.hparams["nz"], device=device)

    def end_step(self, state: TrainState) -> None:
        """W's running average from a fresh batch of latents (the torch RNG is in lockstep on every rank
        here), and the path-length mean from the step's lengths when its phase ran."""
        hp, nets = self.hparams, state.nets
        generator = nets["G"]
        device = next(generator.parameters()).device
        with torch.no_grad():
            generator.mapping.track(generator.mapping(self.latent(self.batch_size, device)), hp["w_avg_beta"])
        if hp["pl_weight"] > 0 and (state.step - 1) % int(hp["pl_every"]) == 0:
            nets["path_length"].commit(hp["pl_decay"])

    def generate(self, nets, z, labels=None, truncation: float | None = None,
                 style_mix: bool | int | None = None):
        """Images (n, *spec.shape) in [-1, 1] from noise z (n, nz): fresh noise inputs in training mode,
        each layer's fixed noise map otherwise. ``truncation`` psi pulls w towards W's average;
        ``style_mix`` (True, or the crossover resolution in px) draws a style-mixing grid instead."""
        generator = nets["G"]
        psi = 1.0 if truncation is None else check_psi(truncation)
        noise_mode = "random" if generator.training else "const"
        if style_mix is not None and style_mix is not False:
            ws = self.style_mix_ws(generator, z, psi, STYLE_MIX_CROSSOVER if style_mix is True else int(style_mix))
        else:
            ws = generator.broadcast(self.truncate(generator, generator.mapping(z), psi))
        image = generator.synthesis(ws, noise_mode)
        return center_crop(image, *self.spec.shape[1:]).clamp(-1.0, 1.0)

    # -- sampling helpers ---------------------------------------------------------------------------
    @staticmethod
    def truncate(generator: StyleGenerator, w: torch.Tensor, psi: float) -> torch.Tensor:
        return w if psi == 1.0 else torch.lerp(generator.mapping.w_avg.to(w.dtype), w, psi)

    def style_mix_ws(self, generator: StyleGenerator, z: torch.Tensor, psi: float, crossover: int) -> torch.Tensor:
        """ws for a K x K grid, row-major: cell (i, j) takes ws[:c] from latent i and ws[c:] from latent j,
        c the number of ws of the resolutions up to ``crossover`` px; K = sqrt(n), z[:K] the latents."""
        n = z.shape[0]
        k = math.isqrt(n)
        if k * k != n or k < 2:
            raise GanzooError(f"--style-mix draws a K x K grid from K latents: --n must be a square of at "
                              f"least 4 (e.g. 64 for 8 x 8), got {n}")
        resolutions = generator.synthesis.resolutions
        if crossover not in resolutions[:-1]:
            raise GanzooError(f"--style-mix RES takes the coarse styles up to RES px from the rows: RES must be "
                              f"one of {', '.join(map(str, resolutions[:-1]))}, got {crossover}")
        w = self.truncate(generator, generator.mapping(z[:k]), psi)  # (K, w_dim)
        cut = generator.synthesis.crossover(crossover)
        rows = generator.broadcast(w.repeat_interleave(k, dim=0))  # cell (i, j) -> latent i
        columns = generator.broadcast(w.repeat(k, 1))  # cell (i, j) -> latent j
        return torch.cat([rows[:, :cut], columns[:, cut:]], dim=1)

    # -- losses -----------------------------------------------------------------------------------
    def real_images(self, batch: Batch) -> torch.Tensor:
        return pad_to_side(batch.real, self.side)

    def fakes(self, nets: nn.ModuleDict, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, C, side, side), ws (n, num_ws, w_dim)) for training: fresh noise, and with
        probability ``style_mixing`` a second latent's styles from a random layer on (one cut per batch)."""
        generator = nets["G"]
        z = self.latent(n, device)
        ws = generator.broadcast(generator.mapping(z))
        num_ws = generator.num_ws
        cutoff = int(torch.randint(1, num_ws, ()))
        if float(torch.rand(())) < self.hparams["style_mixing"]:
            other = generator.broadcast(generator.mapping(torch.randn_like(z)))
            ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
        return generator.synthesis(ws, "random"), ws

    def generator_loss(self, nets: nn.ModuleDict, batch: Batch):
        fake, _ = self.fakes(nets, len(batch), batch.real.device)
        logits = nets["D"](fake).float()
        loss = F.softplus(-logits).mean()
        return loss, {"loss": loss, "fake": torch.sigmoid(logits).mean()}

    def critic_loss(self, nets: nn.ModuleDict, batch: Batch):
        with torch.no_grad():  # the fakes are constants for D
            fake, _ = self.fakes(nets, len(batch), batch.real.device)
        critic = nets["D"]
        real_logits, fake_logits = critic(self.real_images(batch)).float(), critic(fake).float()
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        return loss, {"loss": loss, "real": torch.sigmoid(real_logits).mean(),
                      "fake": torch.sigmoid(fake_logits).mean()}

    def r1_loss(self, nets: nn.ModuleDict, batch: Batch):
        """gamma / 2 * mean ||grad D(x)||^2 on reals, times r1_every (lazy regularisation)."""
        hp = self.hparams
        critic = nets["D"]
        penalty, norms = r1_penalty(lambda x: critic(x), self.real_images(batch), gamma=hp["r1_gamma"])
        loss = penalty * hp["r1_every"]
        return loss, {"loss": loss, "r1": penalty, "grad_norm": norms.mean()}

    def path_length_loss(self, nets: nn.ModuleDict, batch: Batch):
        """pl_weight * mean (|J_w^T y| - a)^2, y ~ N(0, I) / sqrt(H W), on batch / pl_batch_shrink latents,
        times pl_every (lazy); a is the running mean of the lengths from before this step."""
        hp = self.hparams
        n = max(1, len(batch) // int(hp["pl_batch_shrink"]))
        fake, ws = self.fakes(nets, n, batch.real.device)
        noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        scale = inner_grad_scale()  # fp16: the inner gradient at the loss scale, then unscaled
        (grads,) = torch.autograd.grad((fake * noise).sum() * scale, ws, create_graph=True)
        grads = grads.float() / scale
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        tracker = nets["path_length"]
        tracker.stage(lengths)
        penalty = (lengths - tracker.mean).square().mean()
        loss = penalty * hp["pl_weight"] * hp["pl_every"]
        return loss, {"loss": loss, "penalty": penalty, "length": lengths.mean().detach()}


@hookimpl
def register_variants(register):
    register(StyleGAN2)
