"""Spectral normalisation of the critic (Miyato et al. 2018), with torch's parametrizations.

``d_spectral_norm=true`` divides the weight of every Linear and Conv layer of
each critic net by its largest singular value, estimated by
``sn_power_iterations`` power iterations per training forward pass. The
iteration vectors ``u``/``v`` are buffers of the parametrisation, so they are
in every checkpoint and a resumed run continues them exactly. Layers that
already carry a spectral norm (e.g. the ``hinge`` example plugin's) are left
as they are.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from . import Feature, require, role_nets

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def add_spectral_norm(module: nn.Module, iterations: int = 1) -> int:
    """Spectrally normalise every Linear/Conv weight in ``module`` in place; returns how many."""
    done = 0
    for layer in [m for m in module.modules() if isinstance(m, _LAYERS)]:
        if parametrize.is_parametrized(layer, "weight"):
            continue  # already normalised (or otherwise parametrised): leave it
        nn.utils.parametrizations.spectral_norm(layer, n_power_iterations=iterations)
        done += 1
    return done


class SpectralNormFeature(Feature):
    name = "d_spectral_norm"
    hparams = {"d_spectral_norm": False, "sn_power_iterations": 1}
    summary = "spectral normalisation of every critic layer (power-iteration state checkpointed)"
    paper = "Miyato et al. 2018, Spectral Normalization for GANs (arXiv:1802.05957)"
    check_settings = {"d_spectral_norm": True}

    def enabled(self, hp):
        return bool(hp.get("d_spectral_norm", False))

    def validate(self, variant):
        iterations = variant.hparams["sn_power_iterations"]
        require(iterations >= 1, f"sn_power_iterations must be >= 1, got {iterations}")

    def on_build(self, variant, nets):
        for name in role_nets(variant, "critic"):
            add_spectral_norm(nets[name], variant.hparams["sn_power_iterations"])
