"""How a run is driven: :class:`TrainOptions`, everything that is not a variant hyperparameter."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import GanzooError


#: Options a run keeps: recorded in config.json and applied again on resume unless given anew.
RUN_OPTIONS: dict[str, Any] = {
    "sample_every": 500,  # 0: only the final grid
    "ckpt_every": 1000,  # 0: only the final checkpoint
    "log_every": 10,
    "keep": 3,  # checkpoints kept on disk (0: all; the newest sane one is always kept)
    "on_nan": "stop",  # "stop": raise; "skip": drop the optimiser step and count it
    "grid_size": 64,  # samples in an image grid (scatter plots use 1000)
    "accumulate": 1,  # micro-batches per rank and optimiser step (gradients summed)
    "eval_every": 0,  # evaluate every N steps into metrics.jsonl (0: never)
    "eval_n": 2500,  # samples per evaluation
    "precision": "fp32",  # fp32, bf16 or fp16
    "loggers": [],  # observers registered by plugins (register_loggers), e.g. ["tensorboard"]
}


@dataclass
class TrainOptions:
    """How a run is driven (everything that is not a variant hyperparameter).

    The options of :data:`RUN_OPTIONS` may be left ``None`` ("not given"):
    :meth:`resolved` fills them from a resumed run's config.json, else from
    the defaults there, so a resume keeps e.g. the run's ``--ckpt-every``.
    """

    device: str = "auto"
    seed: int = 0
    sample_every: int | None = None
    ckpt_every: int | None = None
    log_every: int | None = None
    keep: int | None = None
    on_nan: str | None = None
    grid_size: int | None = None
    accumulate: int | None = None
    eval_every: int | None = None
    eval_n: int | None = None
    precision: str | None = None
    loggers: list[str] | tuple[str, ...] | None = None
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only)
    progress: bool = True

    def resolved(self, saved: dict[str, Any] | None = None) -> "TrainOptions":
        """A copy with every unset run option taken from ``saved`` (a run's config
        ``options``), else from :data:`RUN_OPTIONS`; validated."""
        saved = saved or {}
        filled = {k: saved.get(k, default) if getattr(self, k) is None else getattr(self, k)
                  for k, default in RUN_OPTIONS.items()}
        options = dataclasses.replace(self, **filled)
        options.validate()
        return options

    def run_options(self) -> dict[str, Any]:
        """The run options as config.json records them."""
        return {k: getattr(self, k) for k in RUN_OPTIONS}

    def validate(self) -> None:
        for key in ("sample_every", "ckpt_every", "keep", "eval_every"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise GanzooError(f"{key.replace('_', '-')} must be >= 0 (0 disables it)")
        if self.log_every is not None and self.log_every <= 0:
            raise GanzooError("log-every must be positive")
        if self.accumulate is not None and self.accumulate <= 0:
            raise GanzooError("accumulate must be positive")
        if self.loggers is not None:
            from .registry import LOGGERS

            self.loggers = list(dict.fromkeys(self.loggers))  # in the order given, once each
            if "none" in self.loggers:  # `--logger none`: no loggers (a resume drops the run's own)
                if len(self.loggers) > 1:
                    raise GanzooError("--logger none cannot be combined with other loggers")
                self.loggers = []
            for name in self.loggers:
                LOGGERS.get(name).check_available()  # an unknown name: an error listing the known ones
        if self.on_nan not in (None, "stop", "skip"):
            raise GanzooError(f"on-nan must be 'stop' or 'skip', got {self.on_nan!r}")
