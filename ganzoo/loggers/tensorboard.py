"""``--logger tensorboard`` (or ``--tensorboard``): scalars, sample grids and hyperparameters for
TensorBoard, in ``RUN_DIR/tensorboard/``.

It registers through the public ``register_loggers`` hook, exactly as a third-party logger
(W&B, MLflow, ...) would. It needs the ``tensorboard`` package (``pip install
'ganzoo[tensorboard]'``), imported only when a run selects it. View with
``tensorboard --logdir RUN_DIR/tensorboard``.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..errors import GanzooError
from ..events import FINISHED, Observer
from ..hookspecs import hookimpl

LOG_DIR = "tensorboard"


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package
        raise GanzooError("the tensorboard logger needs the tensorboard package: "
                          "pip install 'ganzoo[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardLogger(Observer):
    """Every on_log value as a scalar (``D/loss``, ``lr/G``, ``eval/fd``, ``step_time``, ...),
    every sample grid as an image, the run's config as text at the start, and its
    hyperparameters with the final logged values in the HPARAMS tab at the end."""

    name = "tensorboard"
    description = "scalars, sample grids and hyperparameters for TensorBoard (RUN_DIR/tensorboard)"

    def __init__(self):
        self.writer = None
        self.last: dict[str, float] = {}

    @classmethod
    def check_available(cls) -> None:
        _writer_class()

    def on_start(self, run, state):
        self.writer = _writer_class()(log_dir=str(run.run_dir / LOG_DIR), purge_step=state.step + 1
                                      if run.resumed else None)
        self.writer.add_text("config", "```\n" + json.dumps(run.config, indent=2, default=str) + "\n```",
                             global_step=state.step)

    def on_log(self, run, state, record):
        if self.writer is None or "event" in record:
            return
        step = int(record.get("step", state.step))
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, global_step=step)
            self.last[key] = value

    def on_samples(self, run, state, images, path):
        if self.writer is None:
            return
        import numpy as np
        from PIL import Image

        # The grid exactly as written (an image grid, or the scatter plot of 2-D data).
        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image("samples", pixels, global_step=state.step, dataformats="HWC")

    def on_end(self, run, state, status):
        if self.writer is None:
            return
        try:
            if status == FINISHED:
                hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                           for k, v in run.config.get("hparams", {}).items()}
                hparams.update(variant=run.variant.name, dataset=run.dataset.name, seed=run.options.seed)
                metrics = {f"final/{k}": v for k, v in self.last.items() if k.endswith("/loss") or
                           k.startswith("eval/")}
                self.writer.add_hparams(hparams, metrics or {"final/step": float(state.step)},
                                        run_name="hparams", global_step=state.step)
        finally:
            self.writer.close()
            self.writer = None


@hookimpl
def register_loggers(register):
    register(TensorBoardLogger)
