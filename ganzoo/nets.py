"""Network families shared by the built-in variants.

Generators map noise ``z: (B, nz)`` (and labels ``(B,)`` int64 when
conditional) to samples ``(B, *shape)``; image generators end in tanh, so
images are in [-1, 1]. Discriminators / critics map samples (and labels) to
raw scores ``(B,)`` (logits for the BCE variants).

* MLP nets: the toy nets of the WGAN-GP paper (3 x Linear 512 + ReLU) for
  vectors, and the classic MNIST GAN MLP (hidden 128, LeakyReLU) for flattened
  images, or PyTorch-GAN's widening MLPs (G 128-256-512-1024 with BatchNorm,
  D 512-256). PacGAN's toy nets (``toy_arch=pacgan``): a 4 x 400 ReLU + BatchNorm
  generator and a maxout discriminator.
* Conv nets: the DCGAN family. An image of side S is reached from a seed of
  side S / 2^k (k upsamplings by transposed conv 4x4 stride 2, the seed side
  kept >= 4): 28 -> 7, 32 -> 4, 64 -> 4. The critic mirrors it.

Conditioning (CGAN, Mirza & Osindero): a learned label embedding is
concatenated to z and to the critic's input (for conv critics as one extra
H x W input plane).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .ops.fused_leaky_relu import FusedLeakyReLU


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "lrelu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"unknown activation {name!r}; use 'relu' or 'lrelu'")


def _critic_activation(name: str) -> nn.Module:
    """Discriminators take the fused LeakyReLU: same numerics as nn.LeakyReLU(0.2),
    and no zero-gradient work in a gradient penalty's double backward."""
    if name == "lrelu":
        return FusedLeakyReLU(negative_slope=0.2)
    return _activation(name)


def seed_side(size: int) -> tuple[int, int]:
    """(seed side, number of x2 upsamplings) for an image side ``size``."""
    if size < 8 or size % 4:
        raise ValueError(f"conv nets need an image side that is a multiple of 4 and >= 8, got {size}")
    ups = 0
    while size % (2 ** (ups + 1)) == 0 and size // 2 ** (ups + 1) >= 4:
        ups += 1
    return size // 2**ups, ups


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), BN weights N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class _LabelInput(nn.Module):
    """Embeds labels (B,) -> (B, dim); a no-op module when unconditional."""

    def __init__(self, num_classes: int | None, dim: int):
        super().__init__()
        self.dim = dim if num_classes else 0
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None

    def forward(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.embed is None:
            return None
        if labels is None:
            raise ValueError("this network is conditional: pass labels (B,) int64")
        return self.embed(labels)


class MLPGenerator(nn.Module):
    """z (B, nz) [+ labels] -> (B, *shape); ``layers`` hidden Linear+activation blocks.

    widths: the hidden sizes, overriding ``hidden`` x ``layers`` (e.g. PyTorch-GAN's
    128, 256, 512, 1024). batchnorm_eps: BatchNorm1d with this eps after every hidden
    Linear but the first (PyTorch-GAN passes 0.8 as BatchNorm1d's second argument,
    which is eps); None: no BatchNorm.
    """

    def __init__(self, nz: int, shape: tuple[int, ...], hidden: int, layers: int,
                 activation: str = "relu", tanh: bool = False,
                 num_classes: int | None = None, embed_dim: int = 10,
                 widths: tuple[int, ...] | None = None, batchnorm_eps: float | None = None):
        super().__init__()
        self.shape = tuple(shape)
        self.labels = _LabelInput(num_classes, embed_dim)
        dims = [nz + self.labels.dim] + list(widths or [hidden] * layers)
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            blocks.append(nn.Linear(a, b))
            if batchnorm_eps is not None and i > 0:
                blocks.append(nn.BatchNorm1d(b, eps=batchnorm_eps))
            blocks.append(_activation(activation))
        blocks.append(nn.Linear(dims[-1], math.prod(self.shape)))
        if tanh:
            blocks.append(nn.Tanh())
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels(labels, z.shape[0])
        h = z if e is None else torch.cat([z, e], dim=1)
        return self.body(h).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """x (B, *shape) [+ labels] -> scores (B,); inputs are flattened. widths: the hidden
    sizes, overriding ``hidden`` x ``layers``."""

    def __init__(self, shape: tuple[int, ...], hidden: int, layers: int,
                 activation: str = "relu", num_classes: int | None = None, embed_dim: int = 10,
                 widths: tuple[int, ...] | None = None):
        super().__init__()
        self.labels = _LabelInput(num_classes, embed_dim)
        dims = [math.prod(shape) + self.labels.dim] + list(widths or [hidden] * layers)
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), _critic_activation(activation)]
        blocks.append(nn.Linear(dims[-1], 1))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        e = self.labels(labels, x.shape[0])
        if e is not None:
            h = torch.cat([h, e], dim=1)
        return self.body(h).squeeze(1)


class PacGANToyGenerator(nn.Module):
    """PacGAN's toy generator (Lin et al. 2018, the authors' 2-D code): z (B, nz) ->
    4 x [Linear 400 (no bias) + BatchNorm + ReLU] -> Linear to the data dimension."""

    def __init__(self, nz: int, shape: tuple[int, ...], hidden: int = 400, layers: int = 4):
        super().__init__()
        self.shape = tuple(shape)
        blocks: list[nn.Module] = []
        width = nz
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, math.prod(self.shape)))
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(z).view(z.shape[0], *self.shape)


class Maxout(nn.Module):
    """Linear maxout (Goodfellow et al. 2013): (B, in) -> (B, out), the max over ``pieces``
    linear maps per output unit."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=2)


class MaxoutDiscriminator(nn.Module):
    """PacGAN's toy discriminator: x (B, *shape) flattened -> 3 x Maxout(200 units,
    5 pieces) -> Linear 1; scores (B,)."""

    def __init__(self, shape: tuple[int, ...], hidden: int = 200, layers: int = 3, pieces: int = 5):
        super().__init__()
        blocks: list[nn.Module] = []
        width = math.prod(shape)
        for _ in range(layers):
            blocks.append(Maxout(width, hidden, pieces))
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x.flatten(1)).squeeze(1)


def gaussian_init(module: nn.Module, std: float = 0.02) -> None:
    """Linear weights N(0, std), biases 0 (PacGAN's toy nets); BatchNorm keeps scale 1, shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvGenerator(nn.Module):
    """DCGAN generator: z -> Linear to a (width*2^(k-1), s, s) seed -> k transposed convs -> tanh.

    batchnorm: BatchNorm after every layer but the output (DCGAN); the WGAN-GP
    paper keeps it in G too (only the critic drops it).
    """

    def __init__(self, nz: int, shape: tuple[int, int, int], width: int,
                 num_classes: int | None = None, embed_dim: int = 50, batchnorm: bool = True):
        super().__init__()
        channels, height, width_px = shape
        if height != width_px:
            raise ValueError(f"conv nets need square images, got {height}x{width_px}")
        side, ups = seed_side(height)
        self.labels = _LabelInput(num_classes, embed_dim)
        top = width * 2 ** (ups - 1)
        self.seed_shape = (top, side, side)
        norm1d = nn.BatchNorm1d if batchnorm else lambda n: nn.Identity()
        norm2d = nn.BatchNorm2d if batchnorm else lambda n: nn.Identity()
        self.stem = nn.Sequential(
            nn.Linear(nz + self.labels.dim, top * side * side, bias=not batchnorm),
            norm1d(top * side * side), nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        c = top
        for _ in range(ups - 1):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=not batchnorm), norm2d(c // 2), nn.ReLU()]
            c //= 2
        blocks += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels(labels, z.shape[0])
        h = z if e is None else torch.cat([z, e], dim=1)
        return self.body(self.stem(h).view(z.shape[0], *self.seed_shape))


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (PGGAN; StyleGAN's grouping): (N, C, H, W) -> (N, C + 1, H, W).

    The extra map holds, for each group of ``group`` samples (sample n is in
    group n % (N / group)), the standard deviation of every feature over the
    group, averaged over features and positions. N must be divisible by
    min(group, N).
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        if n % g:
            raise ValueError(f"minibatch-stddev: a batch of {n} does not split into groups of {g}")
        y = x.float().reshape(g, n // g, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (N/g, C, H, W)
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (N/g,)
        y = y.view(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class ConvDiscriminator(nn.Module):
    """DCGAN critic: k strided 4x4 convs (width, 2*width, ...) with LeakyReLU 0.2 -> Linear -> (B,).

    norm: "batch" (DCGAN: on every conv but the first), "layer" (per-sample,
    allowed with a gradient penalty) or "none" (WGAN-GP critic).
    minibatch_std: a :class:`MinibatchStdDev` of this group size before the
    output layer (0: none).
    """

    def __init__(self, shape: tuple[int, int, int], width: int, norm: str = "batch",
                 num_classes: int | None = None, minibatch_std: int = 0):
        super().__init__()
        channels, height, _ = shape
        side, downs = seed_side(height)
        self.labels = _LabelInput(num_classes, height * height)
        self.side = height
        blocks: list[nn.Module] = []
        c_in, c_out = channels + (1 if num_classes else 0), width
        for i in range(downs):
            use_norm = norm != "none" and i > 0
            blocks.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not (use_norm and norm == "batch")))
            if use_norm:
                blocks.append(nn.BatchNorm2d(c_out) if norm == "batch"
                              else nn.GroupNorm(1, c_out))  # GroupNorm(1) = LayerNorm over C,H,W
            blocks.append(FusedLeakyReLU(negative_slope=0.2))
            c_in, c_out = c_out, c_out * 2
        if minibatch_std:
            blocks.append(MinibatchStdDev(minibatch_std))
            c_in += 1
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in * side * side, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.labels(labels, x.shape[0])
        if e is not None:
            x = torch.cat([x, e.view(x.shape[0], 1, self.side, self.side)], dim=1)
        return self.head(self.body(x).flatten(1)).squeeze(1)


# -- image sides for nets that work at powers of two (pggan, stackgan) --------------------------
def power_of_two_side(height: int, width: int, least: int = 4) -> int:
    """The smallest power of two >= both sides (and >= ``least``): 28 -> 32, 32 -> 32, 48 -> 64."""
    side = max(height, width, least)
    return 1 << (side - 1).bit_length()


def pad_to_side(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, side, side), centred, padded with the edge pixels (a black
    background stays black; no hard border appears for the critic to key on)."""
    height, width = images.shape[-2:]
    if (height, width) == (side, side):
        return images
    top, left = (side - height) // 2, (side - width) // 2
    return nn.functional.pad(images, (left, side - width - left, top, side - height - top), mode="replicate")


def center_crop(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, C, S, S) -> (N, C, height, width), the inverse of :func:`pad_to_side`'s placement."""
    top, left = (images.shape[-2] - height) // 2, (images.shape[-1] - width) // 2
    return images[..., top:top + height, left:left + width]
