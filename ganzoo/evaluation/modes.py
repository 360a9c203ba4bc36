"""Mode-coverage metrics for 2-D mixtures (PacGAN, Lin et al. 2018; VEEGAN, Srivastava et al. 2017).

The protocol (``shared/QUALITY.md``): draw 2500 generator samples; assign each
to its nearest mode (Euclidean); a sample is **high quality** (HQ) when it lies
within ``threshold`` (3) standard deviations of that mode; a mode is
**captured** when at least one HQ sample has it as nearest mode; the **reverse
KL** is KL(p || uniform) where p is the nearest-mode histogram of the HQ
samples: ``sum_k p_k log(K p_k)`` (natural log, 0 log 0 = 0), between 0 (every
mode equally often) and log K (all HQ samples at one mode).

No HQ sample at all: p is undefined. We report ``reverse_kl = log K``, the
largest value any histogram can give (as bad as total collapse), so the number
stays finite, comparable and averageable over seeds; ``hq_samples = 0`` and
``modes = 0`` say what happened.

Distances are in the data's own units: pass the dataset's centres and std
after its scaling (``Dataset.modes()`` gives them).
"""
from __future__ import annotations

import math

import torch

from ..errors import GanzooError

#: The protocol's sample count and HQ radius in standard deviations.
PROTOCOL_SAMPLES = 2500
HQ_THRESHOLD = 3.0


def nearest_modes(samples: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index (N,), distance (N,)) of each sample's nearest centre."""
    samples = samples.detach().to(torch.float64).reshape(samples.shape[0], -1)
    centres = centres.detach().to(samples.device, torch.float64).reshape(centres.shape[0], -1)
    if samples.shape[1] != centres.shape[1]:
        raise GanzooError(f"samples have {samples.shape[1]} dimensions, the modes {centres.shape[1]}")
    distance, index = torch.cdist(samples, centres).min(dim=1)
    return index, distance


def reverse_kl(counts: torch.Tensor) -> float:
    """KL(counts / sum || uniform) in nats; log K when the histogram is empty (see module docstring)."""
    counts = counts.to(torch.float64)
    k = counts.numel()
    total = counts.sum()
    if total <= 0:
        return math.log(k)
    p = counts / total
    nonzero = p > 0
    return float((p[nonzero] * torch.log(p[nonzero] * k)).sum().clamp_min(0.0))


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, std: float,
                 threshold: float = HQ_THRESHOLD) -> dict[str, float]:
    """Modes captured, percent high-quality samples and reverse KL (see the module docstring).

    samples: (N, D) points; centres: (K, D) mode centres; std: the modes' standard
    deviation, in the same units. Returns ``modes`` (captured), ``modes_total``
    (K), ``hq_percent``, ``hq_samples``, ``reverse_kl`` and ``largest_mode_share``
    (of HQ samples; 0 when there are none).
    """
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise GanzooError("mode metrics need at least 1 sample of shape (N, D)")
    if not std > 0:
        raise GanzooError(f"mode metrics need a positive std, got {std}")
    k = int(centres.shape[0])
    index, distance = nearest_modes(samples, centres)
    finite = torch.isfinite(distance)
    hq = finite & (distance <= threshold * std)
    counts = torch.bincount(index[hq], minlength=k)
    n_hq = int(hq.sum())
    return {
        "modes": int((counts > 0).sum()),
        "modes_total": k,
        "hq_percent": 100.0 * n_hq / samples.shape[0],
        "hq_samples": n_hq,
        "reverse_kl": reverse_kl(counts),
        "largest_mode_share": float(counts.max()) / n_hq if n_hq else 0.0,
    }


def dataset_modes(dataset) -> tuple[torch.Tensor, float] | None:
    """(centres (K, 2), std) of a mixture dataset in its own units, or None.

    Uses ``dataset.modes()`` when it exists; otherwise ``centres``/``std``
    attributes (tensors or callables), divided by ``scale`` when present.
    """
    modes = getattr(dataset, "modes", None)
    if callable(modes):
        centres, std = modes()
        return torch.as_tensor(centres, dtype=torch.float32), float(std)
    centres = getattr(dataset, "centres", None)
    std = getattr(dataset, "std", None)
    if centres is None or std is None:
        return None
    centres = centres() if callable(centres) else centres
    scale = float(getattr(dataset, "scale", 1.0) or 1.0)
    return torch.as_tensor(centres, dtype=torch.float32) / scale, float(std) / scale
