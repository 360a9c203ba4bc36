"""Learning-rate schedules for every optimiser: warm-up, then constant, linear or cosine decay.

``lr_schedule=constant|linear|cosine``, ``lr_warmup=W`` steps, ``lr_final``
(an absolute learning rate, default 0), ``lr_decay_start=S`` (the step where
the decay begins; default: right after the warm-up). At generator step ``s``
(0-based) of ``steps``, each optimiser's learning rate is ``base * (s + 1) / W``
during the warm-up, ``base`` until the decay starts at ``D = max(W, S)``, then
``final + (base - final) * f(p)`` with ``p = (s - D) / (steps - D)`` and ``f = 1``
(constant), ``1 - p`` (linear) or ``(1 + cos(pi p)) / 2`` (cosine): it reaches
``lr_final`` at the end of the run (the last step uses the value one step
before). CycleGAN's schedule is ``lr_schedule=linear lr_decay_start=steps/2``. ``base`` is the
optimiser's own learning rate (``lr_g``, ``lr_d``), kept as ``initial_lr`` in
each parameter group.

The rate is a function of the step and of ``steps`` alone, so a resumed run
continues it exactly. A resume that raises ``--steps`` stretches the decay
over the new length from the step where it resumes: the rate at that step
jumps up to the longer schedule's value, then decays to ``lr_final`` at the
new end. The constant schedule is unaffected.

Linear decay: CycleGAN (Zhu et al. 2017: constant, then linear to 0 over the
second half); cosine:
Loshchilov & Hutter 2017 (SGDR). Logged as ``lr/<optimiser>`` in metrics.jsonl.
"""
from __future__ import annotations

import math

from . import Feature, require

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(step: int, steps: int, schedule: str, warmup: int, decay_start: int = 0) -> float:
    """The fraction of the way from lr_final to base (1 = base) at 0-based ``step``; warm-up from 0."""
    if step < warmup:
        return (step + 1) / warmup
    start = max(warmup, decay_start)
    if schedule == "constant" or step < start:
        return 1.0
    progress = min(1.0, (step - start) / max(1, steps - start))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def scheduled_lr(base: float, final: float, step: int, steps: int, schedule: str, warmup: int,
                 decay_start: int = 0) -> float:
    factor = lr_factor(step, steps, schedule, warmup, decay_start)
    if step < warmup:
        return base * factor
    return final + (base - final) * factor


class LRScheduleFeature(Feature):
    name = "lr_schedule"
    hparams = {"lr_schedule": "constant", "lr_warmup": 0, "lr_final": 0.0, "lr_decay_start": 0}
    summary = "learning-rate warm-up and constant/linear/cosine decay to lr_final, for every optimiser"
    paper = "linear: Zhu et al. 2017 (CycleGAN); cosine: Loshchilov & Hutter 2017 (arXiv:1608.03983)"
    check_settings = {"lr_schedule": "cosine", "lr_warmup": 1}

    def enabled(self, hp):
        return hp.get("lr_schedule", "constant") != "constant" or hp.get("lr_warmup", 0) != 0

    def validate(self, variant):
        hp = variant.hparams
        require(hp["lr_schedule"] in SCHEDULES,
                f"unknown lr_schedule {hp['lr_schedule']!r}; use {', '.join(SCHEDULES)}")
        require(0 <= hp["lr_warmup"] < variant.steps,
                f"lr_warmup must be >= 0 and below steps ({variant.steps}), got {hp['lr_warmup']}")
        require(hp["lr_final"] >= 0, f"lr_final must be >= 0, got {hp['lr_final']}")
        require(0 <= hp["lr_decay_start"] < variant.steps,
                f"lr_decay_start must be >= 0 and below steps ({variant.steps}), got {hp['lr_decay_start']}")

    def on_optimizers(self, variant, optimizers):
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def before_step(self, variant, state):
        hp = variant.hparams
        logged = {}
        for key, optimizer in state.optimizers.items():
            for group in optimizer.param_groups:
                # setdefault: a variant may replace an optimiser mid-run (growing nets).
                group["lr"] = scheduled_lr(group.setdefault("initial_lr", group["lr"]), hp["lr_final"], state.step, variant.steps,
                                           hp["lr_schedule"], hp["lr_warmup"], hp["lr_decay_start"])
            logged[f"lr/{key}"] = optimizer.param_groups[0]["lr"]
        return logged
