"""The one trainer every variant shares.

It knows nothing about particular variants: it asks the variant for nets,
optimisers and phases (see :mod:`ganzoo.variant`) and runs them, and it owns
everything around them: device, seeds, batches, fixed-noise sample grids,
``metrics.jsonl``, the progress line and checkpoints.

A run directory holds::

    config.json            resolved settings (variant, hyperparameters, dataset spec, ...)
    metrics.jsonl          one JSON object per log interval
    samples/step-XXXXXXX.png, samples/final.png
    checkpoints/step-XXXXXXX.pt
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .checkpoint import CHECKPOINT_DIR, checkpoint_name, save_checkpoint
from .data.base import Dataset, DataSpec
from .errors import GanzooError
from .io import check_writable_dir
from .plotting import save_image_grid, save_scatter_plot
from .progress import Progress
from .registry import VARIANTS, create_dataset, create_variant
from .variant import Phase, TrainState, Variant


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA without it is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise GanzooError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise GanzooError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise GanzooError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return resolved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainOptions:
    """How a run is driven (everything that is not a variant hyperparameter)."""

    device: str = "auto"
    seed: int = 0
    sample_every: int = 500  # 0: only the final grid
    ckpt_every: int = 1000  # 0: only the final checkpoint
    log_every: int = 10
    grid_size: int = 64  # samples in an image grid (scatter plots use 1000)
    progress: bool = True

    def validate(self) -> None:
        for key in ("sample_every", "ckpt_every"):
            if getattr(self, key) < 0:
                raise GanzooError(f"{key.replace('_', '-')} must be >= 0 (0 disables it)")
        if self.log_every <= 0:
            raise GanzooError("log-every must be positive")


@dataclass
class RunResult:
    run_dir: Path
    state: TrainState
    last_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Runs a variant's phases on a dataset and writes a run directory."""

    def __init__(self, variant: Variant, dataset: Dataset, run_dir: Path,
                 options: TrainOptions | None = None, config: dict[str, Any] | None = None):
        self.variant, self.dataset = variant, dataset
        self.run_dir = Path(run_dir)
        self.options = options or TrainOptions()
        self.config = config or {}
        self.device = resolve_device(self.options.device)

    # -- setup --------------------------------------------------------------
    def _fixed_inputs(self, spec: DataSpec) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Noise (and labels) reused for every sample grid, so grids are comparable."""
        n = self.options.grid_size if spec.is_image else 1000
        labels = None
        nrow = int(math.ceil(math.sqrt(n)))
        if self.variant.conditional:
            classes = spec.num_classes
            nrow = classes if spec.is_image and classes <= 16 else nrow
            if spec.is_image:
                n = classes * max(1, n // classes)  # one column per class
            labels = torch.arange(n, device=self.device) % classes
        # A forked RNG: the grid noise depends on the seed alone and leaves the
        # training stream untouched (so a resumed run draws the same grids).
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(self.options.seed)
            z = self.variant.latent(n, self.device)
        return z, labels, nrow

    def _trainable(self, state: TrainState, phase: Phase) -> list[torch.optim.Optimizer]:
        """Make only the phase's parameters require grad; return its optimisers."""
        try:
            optimizers = [state.optimizers[key] for key in phase.updates]
        except KeyError as exc:
            raise GanzooError(
                f"variant {self.variant.name!r}: phase {phase.name!r} updates unknown optimiser {exc}"
            ) from None
        owned = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
        for p in state.nets.parameters():
            p.requires_grad_(id(p) in owned)
        return optimizers

    # -- outputs ------------------------------------------------------------
    def _save_samples(self, state: TrainState, fixed, name: str) -> Path:
        z, labels, nrow = fixed
        nets = state.nets
        was_training = nets.training
        nets.eval()
        with torch.no_grad():
            fake = self.variant.generate(nets, z, labels)
        nets.train(was_training)
        path = self.run_dir / "samples" / f"{name}.png"
        if self.dataset.spec.is_image:
            # Small images are upscaled so a grid is readable at a glance.
            save_image_grid(fake, path, nrow=nrow, scale=2 if fake.shape[-1] <= 32 else 1)
        else:
            real = self.dataset.reference_sample(fake.shape[0]).real
            save_scatter_plot(real, fake, path, title=f"{self.variant.name} step {state.step}")
        return path

    def _save_checkpoint(self, state: TrainState) -> Path:
        path = self.run_dir / CHECKPOINT_DIR / checkpoint_name(state.step)
        save_checkpoint(path, {
            "ganzoo_version": __version__,
            "config": self.config,
            "step": state.step,
            "nets": state.nets.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "extra": state.extra,
        })
        return path

    # -- the loop -----------------------------------------------------------
    def setup(self) -> TrainState:
        """Seed, load the data onto the device, build nets and optimisers."""
        seed_everything(self.options.seed)
        self.dataset.prepare(self.device)
        nets = self.variant.build(self.dataset.spec).to(self.device)
        return TrainState(nets, self.variant.make_optimizers(nets))

    def train_step(self, state: TrainState) -> dict[str, list[torch.Tensor]]:
        """One generator step: every phase, with its repeats; returns the stats per name."""
        stats_out: dict[str, list[torch.Tensor]] = {}
        batch_size = self.variant.batch_size
        for phase in self.variant.phases(state.step):
            if state.step % phase.every:
                continue
            optimizers = self._trainable(state, phase)
            for _ in range(phase.repeats):
                batch = self.dataset.sample(batch_size)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss, stats = phase.loss(state.nets, batch)
                loss.backward()
                for opt in optimizers:
                    opt.step()
                if phase.after is not None:
                    phase.after(state.nets)
                for key, value in stats.items():
                    value = value.detach() if torch.is_tensor(value) else torch.tensor(float(value))
                    stats_out.setdefault(f"{phase.name}/{key}", []).append(value)
        state.step += 1
        self.variant.end_step(state)
        return stats_out

    def run(self, state: TrainState | None = None) -> RunResult:
        """Train until the variant's ``steps``, writing logs, grids and checkpoints."""
        opts = self.options
        state = state or self.setup()
        fixed = self._fixed_inputs(self.dataset.spec)
        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        (self.run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)

        total = self.variant.steps
        if opts.progress:
            print(f"training {self.variant.name} on {self.dataset.name} ({self.device}) for {total} steps "
                  f"-> {self.run_dir}", file=sys.stderr)
        progress = Progress(total, f"{self.variant.name}/{self.dataset.name}", enabled=opts.progress)
        # Stats stay on the device until log time: no host sync per step.
        pending: dict[str, list[torch.Tensor]] = {}
        last: dict[str, float] = {}
        interval_start = run_start = time.perf_counter()
        interval_steps = 0
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as log:
            while state.step < total:
                for name, values in self.train_step(state).items():
                    pending.setdefault(name, []).extend(values)
                interval_steps += 1
                done = state.step == total
                if state.step % opts.log_every == 0 or done:
                    now = time.perf_counter()
                    last = {name: torch.stack(v).float().mean().item() for name, v in pending.items()}
                    record = {"step": state.step, "time": round(now - run_start, 3),
                              "step_time": (now - interval_start) / max(interval_steps, 1), **last}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    pending, interval_steps, interval_start = {}, 0, now
                    progress.update(state.step, {k: v for k, v in last.items() if k.endswith("/loss")})
                    bad = [name for name, v in last.items() if not math.isfinite(v)]
                    if bad:
                        progress.close()
                        raise GanzooError(
                            f"training diverged at step {state.step}: {', '.join(bad)} is not finite; "
                            "try a lower --lr"
                        )
                if opts.sample_every and state.step % opts.sample_every == 0 and not done:
                    self._save_samples(state, fixed, f"step-{state.step:07d}")
                if opts.ckpt_every and state.step % opts.ckpt_every == 0 and not done:
                    self._save_checkpoint(state)
        progress.close()
        self._save_samples(state, fixed, "final")
        self._save_checkpoint(state)
        return RunResult(self.run_dir, state, last)


def default_run_dir(variant: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{variant}-{dataset}-{stamp}"


def prepare_run_dir(run_dir: Path) -> None:
    """Refuse an unwritable directory or one that already holds a run, before any work."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GanzooError(f"--out {run_dir} is a file; pass a directory")
    if (run_dir / "config.json").exists():
        raise GanzooError(f"{run_dir} already holds a run; pass another --out or remove it")
    try:
        check_writable_dir(run_dir)
    except OSError as exc:
        raise GanzooError(f"cannot write to --out {run_dir}: {exc}; choose a writable directory") from None


def train(variant: str, dataset: str | None = None, *, out: str | Path | None = None,
          hparams: dict[str, Any] | None = None, options: TrainOptions | None = None,
          dataset_options: dict[str, Any] | None = None) -> RunResult:
    """Train ``variant`` on ``dataset`` (default: the variant's default dataset).

    ``hparams`` overrides the variant's hyperparameters (``steps``,
    ``batch_size``, ``lr_g``, ...); ``dataset_options`` are passed to the
    dataset (``data_dir``, ``image_size``, ``channels``). Everything is
    validated, and the data loaded (or downloaded), before the run directory
    is created, so a bad input leaves nothing behind.
    """
    options = options or TrainOptions()
    options.validate()
    variant_cls = VARIANTS.get(variant)
    dataset_name = dataset or variant_cls.default_dataset
    dataset_options = {k: v for k, v in (dataset_options or {}).items() if v is not None}
    data = create_dataset(dataset_name, seed=options.seed, **dataset_options)
    dataset_name = data.name  # "folder:PATH" -> "folder"
    model = create_variant(variant, data.spec, **(hparams or {}))
    run_dir = Path(out) if out is not None else default_run_dir(variant, dataset_name)
    prepare_run_dir(run_dir)
    device = resolve_device(options.device)
    if model.batch_size > (data.spec.size or model.batch_size):
        raise GanzooError(f"batch size {model.batch_size} exceeds the {data.spec.size} examples of {dataset_name!r}")
    data.prepare(device)

    config = {
        "ganzoo_version": __version__,
        "variant": variant,
        "variant_plugin": VARIANTS.entry(variant).plugin,
        "dataset": dataset_name,
        "data": data.spec.to_dict(),
        "dataset_options": {k: str(v) if isinstance(v, Path) else v for k, v in dataset_options.items()},
        "hparams": model.hparams,
        "seed": options.seed,
        "device": str(device),
        "options": {k: getattr(options, k) for k in ("sample_every", "ckpt_every", "log_every", "grid_size")},
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Trainer(model, data, run_dir, options, config).run()
