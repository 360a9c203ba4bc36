"""The 2-D toy distributions of the WGAN-GP paper's ``gan_toy.py``.

Constants follow ``shared/QUALITY.md``. The Gaussian mixtures are labeled with
the index of the mixture component, so conditional variants train on them too.
"""
from __future__ import annotations

import math

import torch

from ..hookspecs import hookimpl
from .base import Batch, DataSpec, InMemoryDataset, SampledDataset


def eight_gaussian_centres() -> torch.Tensor:
    """(8, 2): 2 * unit vectors at multiples of 45 degrees (before the /1.414 scaling)."""
    s = 1.0 / math.sqrt(2.0)
    units = [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]
    return 2.0 * torch.tensor(units, dtype=torch.float32)


def twenty_five_gaussian_centres() -> torch.Tensor:
    """(25, 2): the grid (2x, 2y) for x, y in -2..2 (before the /2.828 scaling)."""
    axis = torch.arange(-2, 3, dtype=torch.float32)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return 2.0 * torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


class EightGaussians(SampledDataset):
    name = "8gaussians"
    description = "8 Gaussians on a circle (std 0.02, /1.414), resampled every batch; label = mode"
    spec = DataSpec(shape=(2,), num_classes=8, size=None)
    std = 0.02
    scale = 1.414

    def draw(self, batch_size, generator, device) -> Batch:
        centres = eight_gaussian_centres().to(device)
        labels = torch.randint(0, 8, (batch_size,), generator=generator, device=device)
        noise = torch.randn(batch_size, 2, generator=generator, device=device) * self.std
        return Batch((centres[labels] + noise) / self.scale, labels)


class TwentyFiveGaussians(InMemoryDataset):
    name = "25gaussians"
    description = "5x5 grid of Gaussians (std 0.05, /2.828), 4000 points each; label = mode"
    spec = DataSpec(shape=(2,), num_classes=25, size=100_000)
    std = 0.05
    scale = 2.828
    points_per_mode = 4000
    data_seed = 0  # the set is fixed; a run's seed only changes the batch order

    def load(self):
        g = torch.Generator().manual_seed(self.data_seed)
        centres = twenty_five_gaussian_centres()
        labels = torch.arange(25).repeat_interleave(self.points_per_mode)
        points = centres[labels] + torch.randn(labels.numel(), 2, generator=g) * self.std
        shuffle = torch.randperm(labels.numel(), generator=g)
        return points[shuffle] / self.scale, labels[shuffle]


class SwissRoll(SampledDataset):
    name = "swissroll"
    description = "scikit-learn's swiss roll (noise 0.25), columns 0 and 2, /7.5; unlabeled"
    spec = DataSpec(shape=(2,), num_classes=None, size=None)
    noise = 0.25
    scale = 7.5

    def draw(self, batch_size, generator, device) -> Batch:
        # make_swiss_roll: t = 1.5 pi (1 + 2u), x = t cos t, z = t sin t, plus noise.
        t = 1.5 * math.pi * (1 + 2 * torch.rand(batch_size, generator=generator, device=device))
        points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
        points = points + self.noise * torch.randn(batch_size, 2, generator=generator, device=device)
        return Batch(points / self.scale, None)


@hookimpl
def register_datasets(register):
    register(EightGaussians)
    register(TwentyFiveGaussians)
    register(SwissRoll)
