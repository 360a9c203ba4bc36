"""biggan: a class-conditional residual GAN with a shared embedding and a hierarchical latent.

Brock, Donahue and Simonyan, "Large Scale GAN Training for High Fidelity
Natural Image Synthesis", ICLR 2019 (arXiv:1809.11096). The references are
the authors' ajbrock/BigGAN-PyTorch and PyTorch-StudioGAN; their settings for
small images (BigGAN-PyTorch's 32/64-px architectures) fill in where the
paper's are for 128-512 px. What it keeps:

* **Class-conditional** (labeled image data only): G takes labels through a
  **shared class embedding** (``shared_dim`` = 128), D through a
  **projection**: D(x, y) = w . h(x) + b + <embed(y), h(x)>, with h the
  globally sum-pooled features after a final ReLU.
* **Hierarchical latent** ("skip-z"): z (``nz`` = 120) is split into one
  chunk per G block plus one for the first linear layer (4 chunks of 30 at
  32 px, 6 of 20 at 128 px as in the paper); block i is conditioned on
  concat(shared embedding, chunk i) through **conditional BatchNorm** in
  both its norms: BatchNorm without affine parameters, then
  x * (1 + gamma(c)) + beta(c), gamma and beta linear layers of c (no bias).
* **Two switches of BigGAN-PyTorch for its smaller models** (both on by
  default, as in the paper): ``shared_embedding=false`` gives every
  conditional BatchNorm its own class embeddings for gain and bias (the
  reference without ``--G_shared``, as its CIFAR-10 script runs), and
  ``hierarchical_z=false`` feeds all of z to the first linear layer (without
  ``--hier``; the blocks then see the class alone). ``weight_init=N02``
  draws every weight from N(0, 0.02) instead of the paper's orthogonal
  initialisation (the CIFAR-10 script's ``--G_init N02 --D_init N02``).
* **G residual blocks**: BN-ReLU-upsample(nearest)-conv3x3-BN-ReLU-conv3x3,
  plus an upsampled 1x1 conv skip; a linear layer from the first z chunk
  to 4x4; the output is BN-ReLU-conv3x3-tanh (a plain, affine BatchNorm).
* **D residual blocks**: ReLU-conv3x3-ReLU-conv3x3-avgpool, with a 1x1 conv
  skip (conv then pool); the first block has no pre-activation (its skip
  pools first), as in the reference; blocks that keep the size and width
  have an identity skip.
* **Non-local (self-attention) block** (SA-GAN's, as BigGAN uses it) after
  the G and D blocks at ``attention`` px (16 in the presets, half the side
  of 32-px data, where the paper puts it at 128 px (64x64); 0, the
  default, turns it off, as BigGAN-PyTorch's CIFAR-10 script does).
  Query and key 1x1 convs to C/8 channels, value to C/2, key and value
  max-pooled 2x2, an output 1x1 conv, scaled by a learned gamma that starts at 0.
* **Widths** by side, in units of ``g_width``/``d_width`` (the reference's
  ``G_ch``/``D_ch``): at 32 px G 4-4-4 and D 4-4-4-4 (D downsamples twice,
  BigGAN-PyTorch's CIFAR architecture); at 64 px G 16-8-4-2 and D 1-2-4-8-16;
  at 128 and 256 px the paper's Tables 4 and 5.
* **Hinge loss**: D: E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))];
  G: -E[D(G(z, y), y)]. Fakes take the labels of the batch's reals.
* **Spectral norm in G and D** (every conv and linear layer, and D's
  projection embedding; not G's shared embedding), with **orthogonal
  initialisation** of every weight (the paper's choice).
* **Orthogonal regularisation** of G (section 3.1): beta * sum over
  G's weights W (as matrices: one row per output unit) of
  ||W W^T * (1 - I)||_F^2, the paper's modified form that leaves the filters'
  norms free, beta = ``ortho_reg`` = 1e-4 in the presets (0, off, by
  default, as in BigGAN-PyTorch's CIFAR-10 script); applied, as in the reference, to
  the weights before spectral normalisation and to every weight of G but
  the shared embedding (and the 1-d ones: biases, BatchNorm, gamma). Its
  gradient is the exact derivative of the paper's formula (4 beta (W W^T *
  (1 - I)) W; the reference's hand-written gradient has 2 beta).
* **TTUR and D steps**: Adam with betas (0, 0.999) and eps 1e-6 (the
  reference's ``--adam_eps``); in the paper ``n_critic`` = 2 D steps per G
  step and D learns 4 times faster than G: SA-GAN's rates lr_g 1e-4 and
  lr_d 4e-4, which BigGAN-PyTorch trains with (``--set preset=paper-small``),
  halved in the paper (5e-5 and 2e-4: ``--set preset=paper``) for
  2048-image batches and 150k-step runs.
* **EMA of G** (the toolkit's ``ema``) with the paper's decay 0.9999. The
  reference copies G for the first 20k of its 150k iterations, then
  averages (half-life 6,931 steps, about 5% of the run); a 1,200-step run
  cannot wait 20k steps, so the default uses the toolkit's ramp-up
  instead (``ema_rampup`` 0.05: the half-life is at most 5% of the steps so
  far, so G_ema follows G closely early on, as the reference's copy does,
  and ends with a half-life of 5% of the run, the reference's proportion).
  ``--set ema_rampup=0 ema_start=20000`` with ``--steps`` beyond it gives
  the reference's schedule.
* **Standing statistics**: G has BatchNorm, so sampling from G_ema (grids,
  ``ganzoo sample``, ``ganzoo eval``) uses running statistics recomputed
  for the averaged weights from 16 batches of its own samples (the EMA
  feature's standing statistics, the paper's appendix C).
* **Truncation** (``ganzoo sample --truncation PSI``, PSI in (0, 1]):
  every z_i is drawn from the normal truncated to [-2 PSI, 2 PSI], the
  paper's truncation trick with threshold 2 PSI: 1 is the threshold 2, the
  mildest in the paper's Figure 2(a) (about 4.6% of a normal's values lie
  beyond it), and 0.5, 0.25 and 0.02 are its thresholds 1, 0.5 and 0.04.
  This is the bound of BigGAN's TF-Hub module, whose ``truncation`` input in
  (0, 1] also keeps |z_i| <= 2 truncation. Instead of resampling the values
  beyond the threshold, each z_i is moved by the inverse-CDF map
  Phi^-1(Phi(-t) + Phi(z_i) (Phi(t) - Phi(-t))), which turns N(0, 1) into
  exactly that truncated normal and is deterministic and continuous in z:
  the same seed gives the same images' truncated versions at every PSI, and
  ``--interpolate`` walks stay smooth. Without ``--truncation`` z is N(0, I).

Deviations, for a CPU run or for exactness under torchrun: 28-px data is
padded to 32 with its edge pixels (its black background) and generated
images are cropped back. Spectral norm's power iteration runs once per
optimiser step, after it (Miyato et al.'s algorithm 1), on the net the
step updated; the forward pass divides by sigma = u^T W v from the stored
vectors (buffers: checkpointed, and copied into G_ema). torch's
``spectral_norm`` (and so the toolkit's ``d_spectral_norm``) iterates at
every training forward, so two torchrun ranks (one forward each per
micro-batch) and ``--accumulate 2`` (two in one process) would end with
different vectors; here the forward is a function of the weights and
buffers alone, and both give the same run. No cross-replica BatchNorm:
each rank normalises its own shard, as ``--accumulate`` normalises each
micro-batch.

Default recipe (since 2026-12-04): the settings of BigGAN-PyTorch's own
32-px script (scripts/launch_cifar_ema.sh: G and D at lr 2e-4, 4 D steps
per G step, no self-attention, no orthogonal regularisation), for 800
steps, about the CPU time of the paper's training choices for 1,200 steps
(``--set preset=paper-small``: TTUR with SA-GAN's rates 1e-4 / 4e-4, 2 D
steps, attention at 16 px, orthogonal regularisation 1e-4; the default
until then). On mnist at about 19 CPU-minutes a run the script's settings
drew the requested digit 2.4-3 times as often (EMA generator: 70% and 57%
of samples against 29% and 19%) at a lower Fréchet distance (359 and 468
against 661 and 685), with lower precision (0.55 and 0.56 against 0.67 and
0.76) (docs/recipes/biggan-mnist.md: seeds 0 and 1 of each, every run).
The architecture is the paper's in both. The script's generator as well
(``shared_embedding=false hierarchical_z=false weight_init=N02``) went dark
in one seed of two and drew the requested digit 83% of the time in the
other; its conditioning with orthogonal initialisation was stable and
worse (30%). Neither is the default.

Scaled down for a CPU (``--set preset=paper`` restores the paper's 128-px
ImageNet settings: widths 96, batch 2048, lr 5e-5 / 2e-4, EMA without a
ramp-up): widths ``g_width`` = ``d_width`` = 8 (32 feature maps in every
block at 32 px; the reference's CIFAR model has 256, the paper's 128-px
model 1536 down to 96), batch 64 (paper 2048), nz 120 and shared_dim 128 as
in the paper, 800 generator steps (3,200 D steps, 205k real images seen
by D; BigGAN-PyTorch's 128-px run: 150k steps of 2048). One thread of the
2-core development machine, busy with two other jobs, took 1.5 s per step
at the defaults on mnist (0.94 s with ``preset=paper-small``; widths 16 at
that preset: 2.8 s): about 20 minutes for the default run, plus about 1.4 s
per sample grid for the standing statistics.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..data.base import Batch, DataSpec
from ..errors import GanzooError
from ..hookspecs import hookimpl
from ..nets import center_crop, pad_to_side, power_of_two_side
from ..optim import adam
from ..sampling import check_psi
from ..variant import Phase, Variant

#: Channel multipliers by side: G (block inputs, block outputs), D (block outputs, downsampling).
#: 32 and 64 px: BigGAN-PyTorch's architectures; 128 and 256 px: the paper's Tables 4 and 5.
G_WIDTHS = {
    32: ((4, 4, 4), (4, 4, 4)),
    64: ((16, 16, 8, 4), (16, 8, 4, 2)),
    128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
    256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1)),
}
D_WIDTHS = {
    32: ((4, 4, 4, 4), (True, True, False, False)),
    64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True, False)),
    256: ((1, 2, 4, 8, 8, 16, 16), (True, True, True, True, True, True, False)),
}
#: Power iterations when a spectral norm is added (as torch's spectral_norm does), then one per optimiser step.
INITIAL_POWER_ITERATIONS = 15
#: Truncation: PSI in (0, 1] bounds |z_i| by TRUNCATION_SCALE * PSI (1 -> the paper's threshold 2).
TRUNCATION_SCALE = 2.0
TRUNCATION_MEANING = "biggan: |z_i| <= 2 PSI; 1: the paper's threshold 2; e.g. 0.5"


# -- spectral norm, one power iteration per optimiser step ---------------------------------------
class SpectralNorm(nn.Module):
    """A parametrization W -> W / sigma, sigma = u^T W v with u, v stored (buffers); W is viewed as a
    matrix with one row per output unit. :meth:`power_iteration` advances u and v; the forward pass
    never does, so it is a function of the weights and buffers alone."""

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        rows, columns = weight.shape[0], weight[0].numel()
        self.register_buffer("_u", F.normalize(weight.new_empty(rows).normal_(), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(weight.new_empty(columns).normal_(), dim=0, eps=eps))
        self.power_iteration(weight, INITIAL_POWER_ITERATIONS)

    @torch.no_grad()
    def power_iteration(self, weight: torch.Tensor, iterations: int = 1) -> None:
        matrix = weight.detach().flatten(1).float()
        for _ in range(iterations):
            self._v.copy_(F.normalize(matrix.t() @ self._u, dim=0, eps=self.eps))
            self._u.copy_(F.normalize(matrix @ self._v, dim=0, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # u^T W v as a sum of products: elementwise ops keep fp32 under autocast (a matmul would not).
        sigma = (weight.flatten(1) * torch.outer(self._u, self._v)).sum()
        return weight / sigma


def spectral_norm(layer: nn.Module) -> nn.Module:
    """``layer`` with :class:`SpectralNorm` on its weight (orthogonally initialised first)."""
    nn.init.orthogonal_(layer.weight)
    parametrize.register_parametrization(layer, "weight", SpectralNorm(layer.weight.detach()))
    return layer


def spectral_norms(net: nn.Module) -> list[tuple[SpectralNorm, torch.Tensor]]:
    """Every :class:`SpectralNorm` in ``net`` with the weight it normalises (before normalisation)."""
    found = []
    for module in net.modules():
        if parametrize.is_parametrized(module, "weight"):
            weight = module.parametrizations.weight
            found += [(p, weight.original) for p in weight if isinstance(p, SpectralNorm)]
    return found


def power_iteration(net: nn.Module) -> None:
    """One power iteration for every spectral norm in ``net`` (after each optimiser step)."""
    for norm, weight in spectral_norms(net):
        norm.power_iteration(weight)


WEIGHT_INITS = ("ortho", "N02")


def normal_init(net: nn.Module, std: float = 0.02) -> None:
    """Redraw every conv, linear and embedding weight of ``net`` from N(0, std): BigGAN-PyTorch's
    ``--G_init N02``/``--D_init N02``. The nets are built with the paper's orthogonal weights, so
    only ``weight_init=N02`` calls this. Spectral norms restart their power iteration."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            weight = (module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight")
                      else module.weight)
            with torch.no_grad():
                nn.init.normal_(weight, 0.0, std)
    for norm, weight in spectral_norms(net):
        norm.power_iteration(weight, INITIAL_POWER_ITERATIONS)


def sn_conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias))


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    return spectral_norm(nn.Linear(in_features, out_features, bias=bias))


def orthogonal_penalty(weights: list[torch.Tensor]) -> torch.Tensor:
    """sum_W ||W W^T * (1 - I)||_F^2 over ``weights`` seen as matrices (one row per output unit):
    the paper's orthogonal regularisation without beta. Computed in fp32 (not under autocast)."""
    total = weights[0].new_zeros((), dtype=torch.float32)
    with torch.autocast(weights[0].device.type, enabled=False):
        for weight in weights:
            matrix = weight.flatten(1).float()
            gram = matrix @ matrix.t()
            total = total + (gram - torch.diag_embed(torch.diagonal(gram))).square().sum()
    return total


# -- building blocks ------------------------------------------------------------------------------
class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then x * (1 + gain(c)) + bias(c).

    With ``classes`` = 0, gain and bias are linear (spectrally normalised, no bias) in a conditioning
    vector c (N, condition_dim): the shared embedding, with a z chunk when the latent is hierarchical.
    With ``classes`` > 0 they are this layer's own class embeddings (classes, channels), looked up
    from the labels c (N,) (BigGAN-PyTorch without ``--G_shared``); ``condition_dim`` is unused."""

    def __init__(self, channels: int, condition_dim: int, classes: int = 0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        if classes:
            self.gain, self.bias = nn.Embedding(classes, channels), nn.Embedding(classes, channels)
            nn.init.orthogonal_(self.gain.weight)
            nn.init.orthogonal_(self.bias.weight)
        else:
            self.gain = sn_linear(condition_dim, channels, bias=False)
            self.bias = sn_linear(condition_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(condition)[:, :, None, None]
        return self.norm(x) * gain + self.bias(condition)[:, :, None, None]


class SelfAttention(nn.Module):
    """The non-local block of SA-GAN as BigGAN uses it: x + gamma * o(attention-weighted values)."""

    def __init__(self, channels: int):
        super().__init__()
        self.keys_dim, self.values_dim = max(1, channels // 8), max(1, channels // 2)
        self.theta = sn_conv(channels, self.keys_dim, 1, bias=False)
        self.phi = sn_conv(channels, self.keys_dim, 1, bias=False)
        self.g = sn_conv(channels, self.values_dim, 1, bias=False)
        self.o = sn_conv(self.values_dim, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        query = self.theta(x).flatten(2)  # (N, C/8, HW)
        key = F.max_pool2d(self.phi(x), 2).flatten(2)  # (N, C/8, HW/4)
        value = F.max_pool2d(self.g(x), 2).flatten(2)  # (N, C/2, HW/4)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (N, HW, HW/4)
        out = (value @ attention.transpose(1, 2)).view(n, self.values_dim, height, width)
        return x + self.gamma * self.o(out)


class GeneratorBlock(nn.Module):
    """CBN-ReLU-up-conv3x3-CBN-ReLU-conv3x3, plus up-conv1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, classes: int = 0):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(in_channels, condition_dim, classes)
        self.conv1 = sn_conv(in_channels, out_channels, 3)
        self.bn2 = ConditionalBatchNorm(out_channels, condition_dim, classes)
        self.conv2 = sn_conv(out_channels, out_channels, 3)
        self.skip = sn_conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, condition)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), condition)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """(ReLU-)conv3x3-ReLU-conv3x3(-avgpool), plus a 1x1 conv skip where the width or size changes."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, preactivation: bool):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = sn_conv(in_channels, out_channels, 3)
        self.conv2 = sn_conv(out_channels, out_channels, 3)
        self.skip = sn_conv(in_channels, out_channels, 1) if downsample or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x) if self.preactivation else x)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.skip is not None:
            if self.preactivation:  # conv, then pool
                x = self.skip(x)
                x = F.avg_pool2d(x, 2) if self.downsample else x
            else:  # the first block: pool the image, then conv (the reference's order for it)
                x = self.skip(F.avg_pool2d(x, 2) if self.downsample else x)
        return h + x


def chunk_sizes(nz: int, chunks: int) -> list[int]:
    """``nz`` split into ``chunks`` near-equal sizes, the larger first (120 in 4: 30 each)."""
    return [nz // chunks + (1 if i < nz % chunks else 0) for i in range(chunks)]


class Generator(nn.Module):
    """(z (N, nz), labels (N,)) -> images (N, C, side, side) in [-1, 1].

    ``shared``: one class embedding (classes, shared_dim) feeds every conditional BatchNorm (the
    paper); else each has its own (BigGAN-PyTorch without ``--G_shared``). ``hierarchical``: z is
    split into a chunk for the first linear layer and one per block, appended to the block's
    conditioning (the paper's skip-z); else all of z enters the first layer and the blocks see the
    class alone (BigGAN-PyTorch without ``--hier``)."""

    def __init__(self, side: int, channels: int, classes: int, nz: int, shared_dim: int, width: int,
                 attention: int, shared: bool = True, hierarchical: bool = True):
        super().__init__()
        ins, outs = G_WIDTHS[side]
        self.hierarchical = hierarchical
        self.chunks = chunk_sizes(nz, len(ins) + 1) if hierarchical else [nz]
        block_chunks = self.chunks[1:] if hierarchical else [0] * len(ins)
        self.shared = None
        if shared:
            self.shared = nn.Embedding(classes, shared_dim)
            nn.init.orthogonal_(self.shared.weight)
        self.bottom_channels = ins[0] * width
        self.linear = sn_linear(self.chunks[0], self.bottom_channels * 16)
        self.blocks = nn.ModuleList(GeneratorBlock(i * width, o * width, shared_dim + chunk,
                                                   0 if shared else classes)
                                    for i, o, chunk in zip(ins, outs, block_chunks))
        self.resolutions = [8 * 2 ** i for i in range(len(ins))]
        self.attention_after = self.resolutions.index(attention) if attention else -1
        self.attention = SelfAttention(outs[self.attention_after] * width) if attention else None
        self.output = nn.Sequential(nn.BatchNorm2d(outs[-1] * width), nn.ReLU(), sn_conv(outs[-1] * width, channels, 3))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # What each block's conditional BatchNorms see: labels (N,) for their own embeddings, else the
        # shared embedding (N, shared_dim), with the block's z chunk appended when hierarchical.
        condition = labels if self.shared is None else self.shared(labels)
        first, *rest = torch.split(z, self.chunks, dim=1)
        h = self.linear(first).view(z.shape[0], self.bottom_channels, 4, 4)
        for index, block in enumerate(self.blocks):
            h = block(h, torch.cat([condition, rest[index]], dim=1) if self.hierarchical else condition)
            if index == self.attention_after:
                h = self.attention(h)
        return torch.tanh(self.output(h))

    def regularised_weights(self) -> list[torch.Tensor]:
        """The weights orthogonal regularisation acts on: every weight matrix or kernel (before
        spectral normalisation), but the shared embedding's (as in BigGAN-PyTorch; without a shared
        embedding the conditional BatchNorms' own embeddings are regularised, as there)."""
        return [p for name, p in self.named_parameters() if p.dim() >= 2 and not name.startswith("shared.")]


class Discriminator(nn.Module):
    """(images (N, C, side, side), labels (N,)) -> logits (N,): residual blocks, ReLU, global sum
    pooling, a linear output plus the projection <embed(y), h>."""

    def __init__(self, side: int, channels: int, classes: int, width: int, attention: int):
        super().__init__()
        outs, downs = D_WIDTHS[side]
        ins = (channels, *(o * width for o in outs[:-1]))
        self.blocks = nn.ModuleList(DiscriminatorBlock(i, o * width, down, preactivation=index > 0)
                                    for index, (i, o, down) in enumerate(zip(ins, outs, downs)))
        resolutions, size = [], side
        for down in downs:
            size //= 2 if down else 1
            resolutions.append(size)
        self.attention_after = resolutions.index(attention) if attention else -1
        self.attention = SelfAttention(outs[self.attention_after] * width) if attention else None
        top = outs[-1] * width
        self.linear = sn_linear(top, 1)
        self.embed = spectral_norm(nn.Embedding(classes, top))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        h = image
        for index, block in enumerate(self.blocks):
            h = block(h)
            if index == self.attention_after:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(image)
        return self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


def truncate_latent(z: torch.Tensor, psi: float) -> torch.Tensor:
    """z (N(0, 1) values) mapped onto the normal truncated to [-t, t], t = 2 psi, by the
    inverse-CDF map (monotone and deterministic: the distribution of the paper's resampling)."""
    t = TRUNCATION_SCALE * psi
    x = z.double()
    low, high = torch.special.ndtr(torch.tensor(-t, dtype=torch.float64)), torch.special.ndtr(
        torch.tensor(t, dtype=torch.float64))
    mapped = torch.special.ndtri(low + torch.special.ndtr(x) * (high - low))
    return mapped.clamp(-t, t).to(z.dtype)


# -- the variant ------------------------------------------------------------------------------------
class BigGAN(Variant):
    name = "biggan"
    conditional = True
    paper = "Brock et al. 2019, Large Scale GAN Training for High Fidelity Natural Image Synthesis (arXiv:1809.11096)"
    summary = ("class-conditional: shared embedding, hierarchical z, conditional BN, residual G and D, "
               "projection D, self-attention, hinge, SN in G and D, orthogonal reg., EMA; truncation; images only")
    data_kinds = ("image",)
    features = ("ema", "lr_schedule", "diffaug")
    sampling_options = {
        "truncation": "PSI in (0, 1]: z from the normal truncated to |z_i| <= 2 PSI (1: the paper's threshold 2)",
    }
    defaults = {
        # BigGAN-PyTorch's CIFAR-10 script (see "Default recipe" above); preset paper-small: the paper's.
        "steps": 800,  # about 20 minutes at 1.5 s per step on one busy CPU thread (see above)
        "batch_size": 64,
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.0, 0.999),
        "adam_eps": 1e-6,
        "n_critic": 4,
        "nz": 120,
        "shared_dim": 128,
        "g_width": 8,
        "d_width": 8,
        "attention": 0,
        "ortho_reg": 0.0,
        # The paper's generator conditioning and initialisation (BigGAN-PyTorch's --G_shared --hier, ortho).
        "shared_embedding": True,
        "hierarchical_z": True,
        "weight_init": "ortho",
        "ema": 0.9999,
        "ema_rampup": 0.05,
    }
    positive = Variant.positive | {"shared_dim", "adam_eps"}
    #: The paper's training choices (TTUR, 2 D steps, self-attention, orthogonal regularisation) at the
    #: CPU widths: ``paper-small`` (the default before 2026-12-04, with SA-GAN's rates as BigGAN-PyTorch
    #: trains with them), and ``paper``: its ImageNet 128-px settings (section 3, appendix B/C) with
    #: widths 96, batch 2048, the halved rates, EMA 0.9999 without a ramp-up (its 20k-step start needs
    #: --set ema_start=20000 and a run longer than that).
    PAPER_TRAINING = {"n_critic": 2, "attention": 16, "ortho_reg": 1e-4}
    presets = {
        "paper-small": {**PAPER_TRAINING, "lr_g": 1e-4, "lr_d": 4e-4, "steps": 1200},
        "paper": {**PAPER_TRAINING, "g_width": 96, "d_width": 96, "batch_size": 2048, "lr_g": 5e-5,
                  "lr_d": 2e-4, "ema_rampup": 0.0},
    }

    def __init__(self, spec: DataSpec | None = None, **overrides: Any):
        if spec is not None and not spec.labeled:
            raise GanzooError("variant 'biggan' is class-conditional and needs labeled data, but the dataset has "
                              "no labels; choose a labeled image dataset (e.g. --dataset digits, mnist or cifar10)")
        super().__init__(spec, **overrides)
        hp = self.hparams
        if hp["ortho_reg"] < 0:
            raise GanzooError(f"ortho_reg must be >= 0 (0 turns orthogonal regularisation off), got {hp['ortho_reg']}")
        if hp["hierarchical_z"] and not hp["shared_embedding"]:
            raise GanzooError("hierarchical_z=true needs shared_embedding=true: each block's z chunk joins the "
                              "shared class embedding (BigGAN-PyTorch's --hier needs --G_shared too); "
                              "set hierarchical_z=false")
        if hp["weight_init"] not in WEIGHT_INITS:
            raise GanzooError(f"weight_init must be one of {', '.join(WEIGHT_INITS)} (orthogonal, the paper's; "
                              f"N(0, 0.02), BigGAN-PyTorch's CIFAR-10 script), got {hp['weight_init']!r}")
        if spec is not None:
            self.side  # noqa: B018 - too large an image is an error now, not at build
            chunks = len(G_WIDTHS[self.side][0]) + 1
            if hp["hierarchical_z"] and hp["nz"] < chunks:
                raise GanzooError(f"nz must be at least {chunks} at {self.side} px (one z chunk per G block "
                                  f"and one for its first layer), got {hp['nz']}")
            allowed = [2 ** i for i in range(3, int(math.log2(self.side)))]  # 8 .. side / 2
            if hp["attention"] and hp["attention"] not in allowed:
                raise GanzooError(f"attention is the resolution of the self-attention block: one of "
                                  f"{', '.join(map(str, allowed))} at {self.side} px, or 0 for none; "
                                  f"got {hp['attention']}")

    # -- shapes -----------------------------------------------------------------------------------
    @property
    def side(self) -> int:
        """The square side the nets work at: the data's rounded up to a power of two, at least 32."""
        _, height, width = self.spec.shape
        side = power_of_two_side(height, width, 32)
        if side not in G_WIDTHS:
            raise GanzooError(f"biggan works at 32 to 256 px; this data is {height}x{width}")
        return side

    # -- the contract -----------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        hp, side = self.hparams, self.side
        nets = nn.ModuleDict({
            "G": Generator(side, spec.channels, spec.num_classes, hp["nz"], hp["shared_dim"], hp["g_width"],
                           hp["attention"], hp["shared_embedding"], hp["hierarchical_z"]),
            "D": Discriminator(side, spec.channels, spec.num_classes, hp["d_width"], hp["attention"]),
        })
        if hp["weight_init"] == "N02":
            for net in nets.values():
                normal_init(net)
        return nets

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        hp = self.hparams
        return {"G": adam(nets["G"].parameters(), lr=hp["lr_g"], betas=hp["betas"], eps=hp["adam_eps"]),
                "D": adam(nets["D"].parameters(), lr=hp["lr_d"], betas=hp["betas"], eps=hp["adam_eps"])}

    def phases(self, step: int) -> list[Phase]:
        """n_critic D steps, then a G step; each advances its net's spectral norms after the step."""
        return [Phase("D", ("D",), self.critic_loss, repeats=int(self.hparams["n_critic"]),
                      after=lambda nets: power_iteration(nets["D"])),
                Phase("G", ("G",), self.generator_loss, after=lambda nets: power_iteration(nets["G"]),
                      uses_real=False)]

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.hparams["nz"], device=device)

    def generate(self, nets, z, labels=None, truncation: float | None = None):
        """Images (n, *spec.shape) in [-1, 1] of classes ``labels`` (n,) from noise z (n, nz);
        ``truncation`` psi draws z from the normal truncated to [-2 psi, 2 psi] instead."""
        if labels is None:
            raise GanzooError("biggan is class-conditional: generate() needs labels")
        if truncation is not None:
            z = truncate_latent(z, check_psi(truncation, TRUNCATION_MEANING))
        return center_crop(nets["G"](z, labels), *self.spec.shape[1:])

    # -- losses -----------------------------------------------------------------------------------
    def real_images(self, batch: Batch) -> torch.Tensor:
        return pad_to_side(batch.real, self.side)

    def critic_loss(self, nets: nn.ModuleDict, batch: Batch):
        """Hinge: E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))]; the fakes take the reals' labels."""
        with torch.no_grad():  # the fakes are constants for D
            fake = nets["G"](self.latent(len(batch), batch.real.device), batch.labels)
        critic = nets["D"]
        real_logits = critic(self.real_images(batch), batch.labels).float()
        fake_logits = critic(fake, batch.labels).float()
        loss = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        return loss, {"loss": loss, "real": real_logits.mean(), "fake": fake_logits.mean()}

    def generator_loss(self, nets: nn.ModuleDict, batch: Batch):
        """-E[D(G(z, y), y)] + ortho_reg * the orthogonal penalty of G's weights."""
        generator = nets["G"]
        fake = generator(self.latent(len(batch), batch.real.device), batch.labels)
        logits = nets["D"](fake, batch.labels).float()
        adversarial = -logits.mean()
        stats: dict[str, Any] = {"fake": logits.mean()}
        loss = adversarial
        if self.hparams["ortho_reg"] > 0:
            penalty = orthogonal_penalty(generator.regularised_weights())
            loss = loss + self.hparams["ortho_reg"] * penalty
            stats["ortho"] = penalty.detach()
        return loss, {"loss": loss, "adversarial": adversarial, **stats}


@hookimpl
def register_variants(register):
    register(BigGAN)
