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
    """A variant with its trained nets, ready to sample (nets in eval mode).

    ``nets`` are the nets :meth:`Variant.generate` samples from: with an EMA run
    and ``ema=True`` (the default), ``G_ema`` stands in for ``G``;
    ``all_nets`` holds every net of the checkpoint.
    """

    variant: Variant
    nets: nn.ModuleDict
    spec: DataSpec
    config: dict
    step: int
    all_nets: nn.ModuleDict | None = None
    ema: bool = False  # whether an EMA copy is what ``nets`` samples from

    @property
    def has_ema(self) -> bool:
        """Whether the run has an EMA generator (whether or not ``nets`` uses it)."""
        return self.all_nets is not None and self.variant.sampling_nets(self.all_nets) is not self.all_nets


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> LoadedGenerator:
    """Rebuild a run's variant and nets from a checkpoint (or a run dir's newest one).

    ema: sample from the EMA generator when the run has one (``--no-ema``: False).
    """
    payload = load_checkpoint(path, map_location=device)
    config = payload["config"]
    spec = DataSpec.from_dict(config["data"])
    variant = create_variant(config["variant"], spec, **config["hparams"])
    nets = variant.networks(spec).to(device)
    try:
        nets.load_state_dict(payload["nets"])
    except RuntimeError as exc:
        raise GanzooError(f"checkpoint {path} does not match variant {config['variant']!r}: {exc}") from None
    nets.eval()
    sampled = variant.sampling_nets(nets, ema=ema)  # the nets themselves when nothing is swapped
    return LoadedGenerator(variant, sampled, spec, config, int(payload["step"]), nets, sampled is not nets)


def sample(path: str | Path | LoadedGenerator, n: int = 64, label: int | None = None,
           seed: int = 0, device: str | torch.device = "cpu", ema: bool = True) -> torch.Tensor:
    """n samples (n, *shape) from a trained run; images in [-1, 1], vectors in the data's own units.

    label: for conditional variants, draw every sample for this class (default:
    cycle through the classes); an error for unconditional variants.
    ema: from the EMA generator when the run has one (else from G).
    """
    if n <= 0:
        raise GanzooError(f"--n must be positive, got {n}")
    loaded = path if isinstance(path, LoadedGenerator) else load_generator(path, device, ema=ema)
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
        return spec.to_data_units(variant.generate(loaded.nets, variant.latent(n, device), labels))
