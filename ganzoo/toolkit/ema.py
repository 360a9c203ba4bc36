"""EMA generator: an exponential moving average of G's weights, used for sampling.

Karras et al. 2018 (PGGAN, arXiv:1710.10196) and Yazici et al. 2019 ("The
unusual effectiveness of averaging in GAN training", arXiv:1806.04498).
``ema=DECAY`` adds a copy ``<name>_ema`` of every generator net (``G_ema``
for ``G``). After every generator step, while ``step <= ema_start`` the copy
takes G's weights, afterwards ``ema <- decay * ema + (1 - decay) * G``. Buffers
(BatchNorm running statistics) are copied, not averaged. No optimiser owns the
copy, so it never trains; it is checkpointed with the other nets, and sample
grids, ``ganzoo sample`` and ``ganzoo eval`` draw from it (``--no-ema`` for G).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from . import Feature, require, role_nets

SUFFIX = "_ema"


def ema_name(name: str) -> str:
    return name + SUFFIX


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * source for parameters; buffers copied.

    decay 0 copies. One fused foreach call per module, so the cost is one pass
    over G's weights.
    """
    ema_params, params = list(ema.parameters()), list(source.parameters())
    if decay == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), source.buffers()):
        ema_buffer.copy_(buffer)


class EMAFeature(Feature):
    name = "ema"
    hparams = {"ema": 0.0, "ema_start": 0}
    summary = "sample from an exponential moving average of G's weights (G_ema)"
    paper = "Karras et al. 2018, PGGAN (arXiv:1710.10196); Yazici et al. 2019 (arXiv:1806.04498)"
    check_settings = {"ema": 0.9, "ema_start": 1}

    def enabled(self, hp):
        return hp.get("ema", 0.0) != 0.0

    def validate(self, variant):
        hp = variant.hparams
        require(0.0 <= hp["ema"] < 1.0, f"ema must be in [0, 1) (e.g. 0.999; 0 turns it off), got {hp['ema']}")
        require(0 <= hp["ema_start"] < variant.steps,
                f"ema_start must be >= 0 and below steps ({variant.steps}): G_ema copies G until then, "
                f"got {hp['ema_start']}")

    def on_build(self, variant, nets):
        for name in role_nets(variant, "generator"):
            shadow = copy.deepcopy(nets[name])
            for p in shadow.parameters():
                p.requires_grad_(False)
            nets[ema_name(name)] = shadow

    def after_step(self, variant, state):
        hp = variant.hparams
        decay = 0.0 if state.step <= hp["ema_start"] else float(hp["ema"])
        for name in role_nets(variant, "generator"):
            update_ema(state.nets[ema_name(name)], state.nets[name], decay)

    def sampling_nets(self, variant, nets):
        swapped = {name: nets[ema_name(name)] for name in role_nets(variant, "generator")
                   if ema_name(name) in nets}
        return nn.ModuleDict({**nets, **swapped}) if swapped else nets
