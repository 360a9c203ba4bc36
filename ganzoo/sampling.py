"""Sampling from a trained run or checkpoint (``ganzoo sample``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .data.base import DataSpec
from .errors import GanzooError
from .registry import create_variant
from .variant import Variant


@dataclass
class LoadedGenerator:
    """A variant with its trained nets, ready to sample (nets in eval mode)."""

    variant: Variant
    nets: nn.ModuleDict
    spec: DataSpec
    config: dict
    step: int


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Rebuild a run's variant and nets from a checkpoint (or a run dir's newest one)."""
    payload = load_checkpoint(path, map_location=device)
    config = payload["config"]
    spec = DataSpec.from_dict(config["data"])
    variant = create_variant(config["variant"], spec, **config["hparams"])
    nets = variant.build(spec).to(device)
    try:
        nets.load_state_dict(payload["nets"])
    except RuntimeError as exc:
        raise GanzooError(f"checkpoint {path} does not match variant {config['variant']!r}: {exc}") from None
    nets.eval()
    return LoadedGenerator(variant, nets, spec, config, int(payload["step"]))


def sample(path: str | Path | LoadedGenerator, n: int = 64, label: int | None = None,
           seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """n samples (n, *shape) from a trained run; images in [-1, 1].

    label: for conditional variants, draw every sample for this class (default:
    cycle through the classes); an error for unconditional variants.
    """
    if n <= 0:
        raise GanzooError(f"--n must be positive, got {n}")
    loaded = path if isinstance(path, LoadedGenerator) else load_generator(path, device)
    variant, spec = loaded.variant, loaded.spec
    device = next(loaded.nets.parameters()).device
    labels = None
    if variant.conditional:
        classes = spec.num_classes
        if label is not None and not 0 <= label < classes:
            raise GanzooError(f"--label must be in 0..{classes - 1}, got {label}")
        labels = (torch.full((n,), label) if label is not None else torch.arange(n) % classes).to(device)
    elif label is not None:
        raise GanzooError(f"variant {variant.name!r} is unconditional; drop --label")
    torch.manual_seed(seed)
    with torch.no_grad():
        return variant.generate(loaded.nets, variant.latent(n, device), labels)
