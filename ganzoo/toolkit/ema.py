"""EMA generator: an exponential moving average of G's weights, used for sampling.

Karras et al. 2018 (PGGAN, arXiv:1710.10196) and Yazici et al. 2019 ("The
unusual effectiveness of averaging in GAN training", arXiv:1806.04498).
``ema=DECAY`` adds a copy ``<name>_ema`` of every generator net (``G_ema``
for ``G``). After every generator step, while ``step <= ema_start`` the copy
takes G's weights, afterwards ``ema <- decay * ema + (1 - decay) * G``. Buffers
(BatchNorm running statistics) are copied, not averaged. No optimiser owns the
copy, so it never trains; it is checkpointed with the other nets, and sample
grids, ``ganzoo sample`` and ``ganzoo eval`` draw from it (``--no-ema`` for G).

Ramp-up (``ema_rampup=R``, stylegan2-ada-pytorch's ``ema_rampup``, Karras et al.
2020): the average's half-life, ``ln 0.5 / ln decay`` generator steps, is capped
at ``R * step``, so early on the copy forgets its start quickly: with ``ema=0.999``
over 3000 steps and no ramp-up, 5% of the copy is still the random initial weights.
The decay actually used at a step is ``0.5 ** (1 / min(half_life, R * step))``.

BatchNorm and averaged weights: G's running statistics describe G's
activations, not those of the averaged weights, and sampling in eval mode with
them spoils the EMA generator (on mnist, lsgan's FD rose from 428 to 583). So
when a generator has BatchNorm, sampling uses a copy of ``G_ema`` whose
statistics are recomputed from ``BN_RECALIBRATION_BATCHES`` batches of its own
samples: the "standing statistics" of Brock et al. 2019 (BigGAN, appendix C).
The batches come from a fixed seed on a forked random stream, so the result is
deterministic and the caller's random stream (training's) is left untouched.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from . import Feature, require, role_nets

SUFFIX = "_ema"
#: Standing statistics of an EMA generator with BatchNorm: batches x batch size of its samples.
BN_RECALIBRATION_BATCHES, BN_RECALIBRATION_BATCH = 16, 64
BN_RECALIBRATION_SEED = 0


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
    hparams = {"ema": 0.0, "ema_start": 0, "ema_rampup": 0.0}
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
        require(0.0 <= hp["ema_rampup"] <= 1.0,
                f"ema_rampup must be in [0, 1] (e.g. 0.05; 0 turns the ramp-up off), got {hp['ema_rampup']}")

    def on_build(self, variant, nets):
        for name in role_nets(variant, "generator"):
            shadow = copy.deepcopy(nets[name])
            for p in shadow.parameters():
                p.requires_grad_(False)
            nets[ema_name(name)] = shadow

    def after_step(self, variant, state):
        hp = variant.hparams
        decay = 0.0 if state.step <= hp["ema_start"] else ema_decay(float(hp["ema"]), float(hp["ema_rampup"]),
                                                                    state.step)
        for name in role_nets(variant, "generator"):
            update_ema(state.nets[ema_name(name)], state.nets[name], decay)

    def sampling_nets(self, variant, nets):
        swapped = {name: nets[ema_name(name)] for name in role_nets(variant, "generator")
                   if ema_name(name) in nets}
        if not swapped:
            return nets
        if any(_batch_norms(net) for net in swapped.values()):
            swapped = {name: copy.deepcopy(net) for name, net in swapped.items()}
            recalibrate_batch_norm(variant, nn.ModuleDict({**nets, **swapped}), list(swapped.values()))
        return nn.ModuleDict({**nets, **swapped})


def ema_decay(decay: float, rampup: float, step: int) -> float:
    """The decay used after generator step ``step``: ``decay``, or with a ramp-up the one whose
    half-life is ``min(half-life of decay, rampup * step)`` steps (0 -- a copy -- at step 0)."""
    if rampup <= 0.0:
        return decay
    half_life = min(math.log(0.5) / math.log(decay), rampup * step)
    return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0


def _batch_norms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batch_norm(variant, nets: nn.ModuleDict, generators: list[nn.Module]) -> None:
    """Recompute the BatchNorm running statistics of ``generators`` (modules inside ``nets``)
    as the plain average over ``BN_RECALIBRATION_BATCHES`` batches drawn through
    ``variant.generate(nets, ...)``; everything else in ``nets`` is left as it was."""
    norms = [m for net in generators for m in _batch_norms(net)]
    device = next(iter(generators[0].parameters())).device
    saved = [(m, m.momentum, m.training) for m in norms]
    modes = [(net, net.training) for net in generators]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    num_classes = variant.spec.num_classes if variant.spec is not None else None
    forked = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(BN_RECALIBRATION_SEED)
            for _ in range(BN_RECALIBRATION_BATCHES):
                z = variant.latent(BN_RECALIBRATION_BATCH, device)
                labels = (torch.randint(num_classes, (BN_RECALIBRATION_BATCH,), device=device)
                          if variant.conditional and num_classes else None)
                variant.generate(nets, z, labels)
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        for net, training in modes:
            net.train(training)
