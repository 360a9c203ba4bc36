"""The 2-D toy distributions: the WGAN-GP paper's ``gan_toy.py`` sets and the
PacGAN/VEEGAN mode-coverage layouts ``ring`` and ``grid``.

Constants follow ``shared/QUALITY.md``. The Gaussian mixtures are labeled with
the index of the mixture component, so conditional variants train on them too.
"""
from __future__ import annotations

import dataclasses
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


class Standardizable:
    """Mixin for vector datasets: ``standardize=True`` (``--standardize``) serves the data divided
    by the root mean square of its coordinates, so nets see coordinates of unit scale whatever the
    layout's size (the WGAN-GP toy script divides its grid by 2.828 for this reason: the grid's RMS).

    Only the training batches are scaled (``spec.data_scale`` records by what); the reference
    sample, the plots and the metrics stay in the dataset's own units, and generated samples are
    brought back with ``spec.to_data_units``. The dataset provides ``rms()``, the root mean
    square of its coordinates.
    """

    def __init__(self, seed: int = 0, standardize: bool = False):
        super().__init__(seed)
        if standardize:
            self.spec = dataclasses.replace(type(self).spec, data_scale=float(self.rms()))

    def sample(self, batch_size: int) -> Batch:
        batch = super().sample(batch_size)
        scale = self.spec.data_scale
        return batch if scale == 1.0 else Batch(batch.real / scale, batch.labels)


class GaussianMixture:
    """A mixture of isotropic Gaussians with equal weights; the label is the component.

    Points are ``(centre + std * noise) / scale`` (the WGAN-GP toy code scales
    after adding noise; the PacGAN layouts use scale 1).
    """

    std: float = 0.02
    scale: float = 1.0

    @classmethod
    def raw_centres(cls) -> torch.Tensor:
        raise NotImplementedError

    def rms(self) -> float:
        """The coordinates' root mean square, exactly: sqrt(mean |centre|^2 / 2 + std^2) / scale."""
        centres = self.raw_centres()
        return math.sqrt(centres.pow(2).sum(1).mean().item() / 2 + self.std**2) / self.scale

    @classmethod
    def modes(cls) -> tuple[torch.Tensor, float]:
        """(centres (K, 2), std) in the data's own units, for mode-coverage metrics."""
        return cls.raw_centres() / cls.scale, cls.std / cls.scale


class FreshMixture(GaussianMixture, SampledDataset):
    """A Gaussian mixture resampled for every batch."""

    def draw(self, batch_size, generator, device) -> Batch:
        centres = self.raw_centres().to(device)
        labels = torch.randint(0, centres.shape[0], (batch_size,), generator=generator, device=device)
        noise = torch.randn(batch_size, 2, generator=generator, device=device) * self.std
        return Batch((centres[labels] + noise) / self.scale, labels)


class EightGaussians(Standardizable, FreshMixture):
    name = "8gaussians"
    description = "8 Gaussians on a circle (std 0.02, /1.414), resampled every batch; label = mode"
    spec = DataSpec(shape=(2,), num_classes=8, size=None)
    std = 0.02
    scale = 1.414
    raw_centres = staticmethod(eight_gaussian_centres)


class TwentyFiveGaussians(Standardizable, GaussianMixture, InMemoryDataset):
    name = "25gaussians"
    description = "5x5 grid of Gaussians (std 0.05, /2.828), 4000 points each; label = mode"
    spec = DataSpec(shape=(2,), num_classes=25, size=100_000)
    std = 0.05
    scale = 2.828
    raw_centres = staticmethod(twenty_five_gaussian_centres)
    points_per_mode = 4000
    data_seed = 0  # the set is fixed; a run's seed only changes the batch order

    def load(self):
        g = torch.Generator().manual_seed(self.data_seed)
        centres = twenty_five_gaussian_centres()
        labels = torch.arange(25).repeat_interleave(self.points_per_mode)
        points = centres[labels] + torch.randn(labels.numel(), 2, generator=g) * self.std
        shuffle = torch.randperm(labels.numel(), generator=g)
        return points[shuffle] / self.scale, labels[shuffle]


def ring_centres() -> torch.Tensor:
    """(8, 2): (cos 2 pi k / 8, sin 2 pi k / 8), radius 1 (PacGAN / VEEGAN)."""
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def grid_centres() -> torch.Tensor:
    """(25, 2): {-4, -2, 0, 2, 4}^2 (PacGAN / VEEGAN)."""
    return twenty_five_gaussian_centres()  # the same lattice, without the WGAN-GP /2.828


class Ring(Standardizable, FreshMixture):
    name = "ring"
    description = "PacGAN ring: 8 Gaussians on the unit circle, std 0.01; label = mode"
    spec = DataSpec(shape=(2,), num_classes=8, size=None)
    std = 0.01
    raw_centres = staticmethod(ring_centres)


class Grid(Standardizable, FreshMixture):
    name = "grid"
    description = "PacGAN grid: 25 Gaussians at {-4,-2,0,2,4}^2, std 0.05; label = mode"
    spec = DataSpec(shape=(2,), num_classes=25, size=None)
    std = 0.05
    raw_centres = staticmethod(grid_centres)


class SwissRoll(Standardizable, SampledDataset):
    name = "swissroll"
    description = "scikit-learn's swiss roll (noise 0.25), columns 0 and 2, /7.5; unlabeled"
    spec = DataSpec(shape=(2,), num_classes=None, size=None)
    noise = 0.25
    scale = 7.5

    def rms(self) -> float:
        """Estimated from 100,000 points of a fixed generator (the same for every seed)."""
        points = self.draw(100_000, torch.Generator().manual_seed(0x5CA1E), torch.device("cpu")).real
        return float(points.pow(2).mean().sqrt())

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
    register(Ring)
    register(Grid)
