"""Distances between two sets of points (for 2-D data without modes, e.g. ``swissroll``).

* :func:`energy_distance`: Székely's energy distance
  ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (V-statistics; 0 iff the sets are equal in
  distribution, in the limit), in the data's units.
* :func:`sliced_wasserstein`: the 1-Wasserstein distance averaged over random
  directions (fixed seed, so the same inputs give the same number).

Both need at least 2 points per set; they compare equal-sized sets best.
"""
from __future__ import annotations

import torch

from ..errors import GanzooError

MIN_POINTS = 2


def _check(x: torch.Tensor, y: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    y = y.detach().reshape(y.shape[0], -1).to(x.device, torch.float64)
    if min(x.shape[0], y.shape[0]) < MIN_POINTS:
        raise GanzooError(f"{what} needs at least {MIN_POINTS} points per set, "
                          f"got {x.shape[0]} and {y.shape[0]}")
    if x.shape[1] != y.shape[1]:
        raise GanzooError(f"{what}: the sets have {x.shape[1]} and {y.shape[1]} dimensions")
    return x, y


def _mean_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for part in a.split(chunk):
        total += torch.cdist(part, b).sum()
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| (>= 0); 0 for identical sets."""
    x, y = _check(x, y, "energy distance")
    value = 2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)
    return float(value.clamp_min(0.0))


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Mean over ``projections`` random unit directions of the 1-D Wasserstein-1 distance.

    Sets of different sizes are compared through their quantiles at common levels.
    """
    x, y = _check(x, y, "sliced Wasserstein")
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64).to(x.device)
    directions /= directions.norm(dim=0, keepdim=True)
    px, _ = (x @ directions).sort(dim=0)
    py, _ = (y @ directions).sort(dim=0)
    if px.shape[0] != py.shape[0]:
        levels = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64, device=x.device)
        px = torch.quantile(px, levels, dim=0)
        py = torch.quantile(py, levels, dim=0)
    return float((px - py).abs().mean())
