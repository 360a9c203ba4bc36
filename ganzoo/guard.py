"""Keeping non-finite updates out of the weights: the trainer's NaN/Inf checks.

Every optimiser update of a phase repeat passes through an :class:`UpdateGuard`. A repeat whose
loss (on any rank) or gradient is not finite never reaches the weights; the run then stops with
:class:`Diverged`, naming the step and the phase, or, with ``on_nan="skip"``, counts it and goes on.

Two ways to check, chosen per phase:

* **On the device** (every optimiser is torch's fused Adam, which the built-in variants use through
  :func:`ganzoo.optim.adam`, and no fp16 loss scaler): the repeat's finite flag, a 0-d tensor, is
  handed to the optimiser as ``found_inf``, and the fused kernel drops the update by itself
  (moments and step count included), the mechanism torch's GradScaler uses. Nothing waits for
  the device inside the generator step; :meth:`UpdateGuard.settle` reads every flag once at its
  end and raises or counts there. Later phases of that step still run.
* **On the host** (any other optimiser, or fp16): each repeat's loss and gradient norm are read
  before its update; a bad one stops the run at once (under fp16 it first skips that update and
  halves the loss scale, see :mod:`ganzoo.precision`).

On the device path a dropped repeat still calls its phase's ``after`` and its stats are logged as
NaN (the log means skip them); buffers its forward passes changed (BatchNorm running statistics)
keep the change. Only the weights and the optimiser state are protected.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import divergence_advice
from .distributed import DistContext, all_reduce_all, all_reduce_max
from .errors import GanzooError
from .precision import Precision


class Diverged(GanzooError):
    """A loss or gradient became NaN or infinite."""


def grad_norm(optimizers: list[torch.optim.Optimizer], device: torch.device) -> torch.Tensor:
    """The 2-norm of all the optimisers' gradients, a 0-d tensor on ``device`` (0 without any)."""
    grads = [p.grad for opt in optimizers for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: one fused norm per device and dtype
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


#: Optimisers whose fused ``step`` honours ``found_inf`` (exactly these classes: a subclass may
#: override ``step`` and drop it).
SKIPPING_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


def skips_on_device(optimizers: list[torch.optim.Optimizer], precision: Precision) -> bool:
    """Whether a bad update can be dropped on the device: all fused Adam(W), no fp16 scaler."""
    return precision.scaler is None and all(
        type(opt) in SKIPPING_OPTIMIZERS and all(group.get("fused") for group in opt.param_groups)
        for opt in optimizers)


class UpdateGuard:
    """The checks of one run; the trainer calls :meth:`start`, :meth:`saw` per micro-batch loss,
    :meth:`update` instead of stepping the optimisers, and :meth:`settle` at the end of a
    generator step. ``skipped`` counts the updates dropped under ``on_nan="skip"``."""

    def __init__(self, precision: Precision, dist: DistContext, device: torch.device, on_nan: str, run_dir: Path):
        self.precision, self.dist, self.device = precision, dist, device
        self.on_nan, self.run_dir = on_nan, run_dir
        self.skipped = 0
        self._pending: list[tuple[str, torch.Tensor, torch.Tensor, list[torch.Tensor]]] = []
        self._on_device = False
        self._losses: list[torch.Tensor] = []
        self._bad_loss: float | None = None
        #: After :meth:`update` on the device path: the repeat's 0-d bool "applied" flag (None on the host path).
        self.last_ok: torch.Tensor | None = None

    def begin_step(self) -> None:
        """A generator step begins: flags left by a step that raised midway are dropped."""
        self._pending = []

    def start(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """A phase repeat begins (its micro-batch losses follow)."""
        self._on_device = skips_on_device(optimizers, self.precision)
        self._losses, self._bad_loss = [], None

    def saw(self, loss: torch.Tensor) -> None:
        """One micro-batch's loss, before its backward (which always runs: every rank must join the
        gradient all-reduce, even with a NaN)."""
        if self._on_device:
            self._losses.append(loss.detach())
        elif self._bad_loss is None and not torch.isfinite(loss):
            self._bad_loss = loss.item()

    def update(self, step: int, phase: str, optimizers: list[torch.optim.Optimizer]) -> bool:
        """Step the optimisers unless the repeat is bad (after the gradient all-reduce and unscaling).
        False: the update was skipped on the host (the caller moves on to the next repeat)."""
        if self._on_device:
            # Losses may differ between ranks: their flag is all-reduced; the norm is taken after the
            # gradient all-reduce, so it is the same on every rank.
            loss_ok = all_reduce_all(torch.isfinite(torch.stack(self._losses)).all(), self.dist)
            norm = grad_norm(optimizers, self.device)
            self.last_ok = loss_ok & torch.isfinite(norm)
            found_inf = (~self.last_ok).to(torch.float32)
            unique = list({id(opt): opt for opt in optimizers}.values())
            for opt in unique:
                opt.grad_scale, opt.found_inf = None, found_inf
            try:
                self.precision.step(unique)
            finally:
                for opt in unique:
                    del opt.grad_scale, opt.found_inf
            self._pending.append((phase, loss_ok, norm, self._losses))
            return True
        self.last_ok = None
        problem = None
        if all_reduce_max(float(self._bad_loss is not None), self.dist, self.device):
            problem = (f"{phase}/loss is {self._bad_loss}" if self._bad_loss is not None
                       else f"{phase}/loss is not finite on another rank")
        else:
            norm = grad_norm(optimizers, self.device)
            if not torch.isfinite(norm):
                problem = f"the gradient of {phase}/loss is {norm.item()}"
        if problem is None:
            self.precision.step(optimizers)
            return True
        if self.precision.absorb_overflow(optimizers):  # fp16: skip, halve the loss scale
            return False
        if self.on_nan == "skip":
            self.skipped += 1
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            return False
        raise Diverged(f"training diverged at step {step + 1}, phase {phase}: {problem}; "
                       f"{divergence_advice(self.run_dir)}")

    def settle(self, step: int) -> None:
        """The end of generator step ``step`` (0-based): read the on-device flags, one wait for the
        device. Their bad updates were already dropped: count them, or raise naming the first."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        flags = torch.stack([torch.stack([loss_ok, torch.isfinite(norm)]) for _, loss_ok, norm, _ in pending]).cpu()
        bad = ~flags.all(dim=1)
        if not bool(bad.any()):
            return
        if self.on_nan == "skip":
            self.skipped += int(bad.sum())
            return
        first = int(bad.nonzero()[0])
        phase, _, norm, losses = pending[first]
        if not flags[first, 0]:
            values = torch.stack(losses).float().cpu()
            problem = (f"{phase}/loss is {values[~torch.isfinite(values)][0].item()}"
                       if not bool(torch.isfinite(values).all()) else f"{phase}/loss is not finite on another rank")
        else:
            problem = f"the gradient of {phase}/loss is {norm.item()}"
        raise Diverged(f"training diverged at step {step + 1}, phase {phase}: {problem} (that update was "
                       f"not applied); {divergence_advice(self.run_dir)}")
