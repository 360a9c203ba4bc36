"""Mixed precision for the trainer: ``--precision fp32|bf16|fp16``.

* ``fp32``: nothing changes (the default).
* ``bf16``: losses run under ``torch.autocast`` with bfloat16, on CPU and CUDA.
  Parameters, optimiser state and gradients stay fp32. bf16 has fp32's range,
  so no loss scaling is needed.
* ``fp16``: autocast with float16 plus a ``torch.amp.GradScaler`` (CUDA only:
  PyTorch's CPU autocast computes fp16 convolutions slowly or not at all). The
  scaler's state is checkpointed, so a resumed run continues exactly. A step
  whose loss or scaled gradients are not finite is an fp16 overflow: it is
  skipped and the scale halved (routine at the start of a run; counted as
  ``fp16_overflows`` in metrics.jsonl). Only when the scale has fallen below 1
  and values still overflow does training stop as diverged (or skip the step
  with ``--on-nan skip``): fp16's range is then too small for the run.

Gradient penalties and R1 (:func:`ganzoo.ops.gradient_penalty`) stay finite:
the penalty's inner gradient is taken w.r.t. the fp32 input, scaled by the
current loss scale and unscaled again (PyTorch's AMP recipe for gradient
penalties) so that it does not underflow in fp16, and its norm is computed in
fp32. The critic's scores are cast to fp32 before the losses.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from .errors import GanzooError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: The loss scale of the fp16 run in progress (1.0 otherwise); read by gradient penalties.
_active_scale: list[float] = [1.0]


def inner_grad_scale() -> float:
    """The factor a double-backward penalty scales its inner gradient by (the fp16 loss scale, else 1)."""
    return _active_scale[0]


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise GanzooError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise GanzooError("--precision fp16 needs a CUDA device (it relies on a gradient scaler and "
                          "fp16 kernels); on the CPU use --precision bf16 or fp32")


class Precision:
    """Autocast, loss scaling and the optimiser step, for one precision on one device."""

    def __init__(self, precision: str, device: torch.device):
        check_precision(precision, device)
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.overflows = 0  # fp16 steps skipped for an overflow

    #: Below this loss scale a non-finite value is divergence, not an fp16 overflow.
    MIN_SCALE = 1.0

    def absorb_overflow(self, optimizers: list[torch.optim.Optimizer]) -> bool:
        """fp16: treat a non-finite loss or gradient as an overflow. Drop the step's
        gradients and halve the scale; True if absorbed, False when the scale is
        already below :data:`MIN_SCALE` (or without a scaler): then it is divergence."""
        if self.scaler is None or self.scaler.get_scale() < self.MIN_SCALE:
            return False
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.scaler.update(new_scale=self.scaler.get_scale() * self.scaler.get_backoff_factor())
        self.overflows += 1
        return True

    @property
    def enabled(self) -> bool:
        return self.precision != "fp32"

    def autocast(self):
        """The context a loss runs in."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    @contextlib.contextmanager
    def loss_context(self):
        """Autocast, with the loss scale published for gradient penalties."""
        if self.scaler is not None:
            _active_scale[0] = float(self.scaler.get_scale())
        try:
            with self.autocast():
                yield
        finally:
            _active_scale[0] = 1.0

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Bring the gradients back to their true scale (before they are checked or clipped)."""
        if self.scaler is not None:
            for opt in optimizers:
                self.scaler.unscale_(opt)

    def step(self, optimizers: list[torch.optim.Optimizer]) -> None:
        if self.scaler is None:
            for opt in optimizers:
                opt.step()
            return
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.precision,
                **({"scaler": self.scaler.state_dict(), "overflows": self.overflows}
                   if self.scaler is not None else {})}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
            self.overflows = int(state.get("overflows", 0))
