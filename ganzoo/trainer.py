"""The one trainer every variant shares.

It knows nothing about particular variants: it asks the variant for nets,
optimisers and phases (see :mod:`ganzoo.variant`) and runs them, with the device,
seeds, batches, the gradient all-reduce and the NaN checks. Training features
(EMA, LR schedules, ...) come in through the variant's toolkit events
(:mod:`ganzoo.toolkit`) and mixed precision through :mod:`ganzoo.precision`.
Everything a run writes (metrics.jsonl, grids, the loss plot, checkpoints, the
progress bar, evaluations, loggers such as TensorBoard) is an observer of the
training events (:mod:`ganzoo.events`, :mod:`ganzoo.outputs`); the loop never
looks at an option. Starting and resuming runs is :mod:`ganzoo.runs`.

One generator step (:meth:`Trainer.train_step`)::

    toolkit.before_step(state)                    # e.g. this step's learning rates
    for phase in variant.phases(step) (if step % phase.every == 0):
        only the phase's parameters require grad
        repeat phase.repeats times:
            batch = dataset.sample(batch_size) (its labels only, or nothing, without phase.uses_real); zero the gradients
            for each micro-batch of this rank: with autocast: loss = phase.loss(nets, micro); backward
            average the gradients over ranks; unscale (fp16)
            step the phase's optimisers unless the loss or gradient is not finite (ganzoo.guard); phase.after(nets)
    stop (or count, --on-nan skip) if an update was dropped
    state.step += 1; variant.end_step(state); toolkit.after_step(state)   # e.g. EMA update

A run directory holds::

    config.json            resolved settings (variant, hyperparameters, dataset spec, ...)
    metrics.jsonl          one JSON object per log interval
    samples/step-XXXXXXX.png, samples/final.png, samples/losses.png
    checkpoints/step-XXXXXXX.pt
"""
from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, cpu_threads
from .checkpoint import CHECKPOINT_DIR, checkpoint_name, list_checkpoints, rng_state, set_rng_state
from .data.base import Batch, Dataset, DataSpec
from .distributed import (SINGLE, DistContext, all_reduce_gradients, all_reduce_max, all_reduce_mean, barrier,
                          broadcast_buffers, check_consistent, sync_batchnorm)
from .errors import GanzooError
from .events import FAILED, FINISHED, STOPPED, Observer, Observers, Run
from .guard import Diverged, UpdateGuard  # Diverged: also importable from here, as before
from .io import os_reason
from .options import TrainOptions  # also importable from here, as before
from .plotting import save_image_grid, save_scatter_plot
from .precision import Precision
from .outputs import builtin_observers
from .variant import Phase, TrainState, Variant


__all__ = ["Diverged", "Interrupted", "RunResult", "Trainer", "TrainOptions", "cuda_available", "resolve_device",
           "seed_everything"]


def cuda_available() -> bool:
    """Whether a CUDA device can be used (one place, so tests can pretend)."""
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA when present; asking for CUDA without it is a user error."""
    if device == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise GanzooError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not cuda_available():
        raise GanzooError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise GanzooError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return resolved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunResult:
    run_dir: Path
    state: TrainState
    last_metrics: dict[str, float] = field(default_factory=dict)


class Interrupted(GanzooError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class _StopSignals:
    """The first SIGINT/SIGTERM asks the loop to stop after the current step;
    a second SIGINT raises KeyboardInterrupt at once (writes are atomic, so
    nothing is corrupted either way)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint "
              "(Ctrl-C again stops at once)", file=sys.stderr)

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Trainer:
    """Runs a variant's phases on a dataset and writes a run directory."""

    def __init__(self, variant: Variant, dataset: Dataset, run_dir: Path,
                 options: TrainOptions | None = None, config: dict[str, Any] | None = None,
                 dist: DistContext = SINGLE, device: torch.device | None = None):
        self.variant, self.dataset = variant, dataset
        self.data_stream_exact = True  # False after a resume that had to reseed the batch stream
        self.run_dir = Path(run_dir)
        self.options = (options or TrainOptions()).resolved()
        self.config = config or {}
        self.device = device or resolve_device(self.options.device)
        self.dist = dist
        self._fixed: tuple[torch.Tensor, torch.Tensor | None, int] | None = None  # the grids' noise
        self.toolkit = variant.toolkit
        self.precision = Precision(self.options.precision or "fp32", self.device)
        self.guard = UpdateGuard(self.precision, dist, self.device, self.options.on_nan, self.run_dir)

    @property
    def skipped_steps(self) -> int:
        """Updates dropped under ``on_nan="skip"`` so far (checkpointed)."""
        return self.guard.skipped

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self.guard.skipped = value

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
        # The grid noise depends on the seed alone and leaves the training
        # stream untouched (so a resumed run draws the same grids).
        with self._seeded_rng(self.options.seed):
            z = self.variant.latent(n, self.device)
        return z, labels, nrow

    @contextlib.contextmanager
    def _seeded_rng(self, seed: int):
        """Torch's default RNG (CPU and this CUDA device) seeded with ``seed`` inside,
        restored to its previous state afterwards."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(seed)
            yield

    def _trainable(self, state: TrainState, phase: Phase) -> list[torch.optim.Optimizer]:
        """Make only the phase's parameters require grad (once per phase, not per repeat);
        return its optimisers."""
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

    def _phase_batch(self, phase: Phase) -> Batch:
        """The batch a phase's loss gets: a real one, or (``phase.uses_real`` False) only its size,
        device and, for a conditional variant, labels drawn as the data's would be."""
        size = self.variant.batch_size
        if phase.uses_real:
            return self.dataset.sample(size)
        labels = self.dataset.sample_labels(size) if self.variant.conditional else None
        return Batch.without_data(size, self.dataset.device, labels)

    # -- what the output observers (ganzoo.outputs) ask of the trainer ----------
    def write_grid(self, state: TrainState, path: Path) -> torch.Tensor:
        """Write a grid of the fixed noise (and labels) to ``path``: an image grid, or a scatter
        plot over real data for 2-D data; returns the samples in data units on the CPU."""
        if self._fixed is None:
            self._fixed = self._fixed_inputs(self.dataset.spec)
        z, labels, nrow = self._fixed
        nets = state.nets
        was_training = nets.training
        nets.eval()
        with torch.no_grad():
            fake, nrow = self.variant.sample_grid(self.variant.sampling_nets(nets), self.dataset, z, labels, nrow)
            fake = self.dataset.spec.to_data_units(fake)
        nets.train(was_training)
        if self.dataset.spec.is_image:
            # Small images are upscaled so a grid is readable at a glance.
            save_image_grid(fake, path, nrow=nrow, scale=2 if fake.shape[-1] <= 32 else 1)
        else:
            real = self.dataset.reference_sample(fake.shape[0]).real
            save_scatter_plot(real, fake, path, title=f"{self.variant.name} step {state.step}")
        return fake.detach().cpu()

    def checkpoint_path(self, state: TrainState) -> Path:
        return self.run_dir / CHECKPOINT_DIR / checkpoint_name(state.step)

    def checkpoint_payload(self, state: TrainState) -> dict[str, Any]:
        """Everything a resume needs, bit-identically on the CPU."""
        return {
            "ganzoo_version": __version__,
            "config": self.config,
            "step": state.step,
            "nets": state.nets.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "extra": state.extra,
            "rng": rng_state(),
            "data": self.dataset.state_dict(),
            "skipped_steps": self.skipped_steps,
            "precision": self.precision.state_dict(),
        }

    def evaluate(self, state: TrainState) -> dict[str, Any]:
        """Quality metrics of the current G (see ganzoo.evaluation) as ``eval/...`` values,
        without disturbing the training RNG or the nets' train/eval mode."""
        from .evaluation import evaluate_during_training

        was_training = state.nets.training
        with self._seeded_rng(self.options.seed + 1):
            state.nets.eval()
            try:
                results = evaluate_during_training(self.run_dir, self.variant.sampling_nets(state.nets),
                                                   self.variant, self.dataset, self.options.eval_n)
            finally:
                state.nets.train(was_training)
        return {f"eval/{k}": v for k, v in results.items()}

    def observers(self) -> list[Observer]:
        """The built-in outputs the options ask for, and the loggers they select (``loggers``)."""
        from .registry import create_logger

        return builtin_observers(self.options) + [create_logger(name) for name in self.options.loggers]

    def _last_checkpoint_hint(self) -> str:
        found = list_checkpoints(self.run_dir)
        return f"the last checkpoint is {found[-1]}" if found else "no checkpoint was written yet"

    # -- the loop -----------------------------------------------------------
    def setup(self) -> TrainState:
        """Seed, load the data onto the device, build nets and optimisers."""
        seed_everything(self.options.seed)
        self.dataset.prepare(self.device)
        nets = self.variant.networks(self.dataset.spec)
        if self.options.sync_bn and self.dist.enabled:
            nets = sync_batchnorm(nets, self.device)
        nets = nets.to(self.device)
        return TrainState(nets, self.variant.optimizers_for(nets))

    def _shard_rng(self, base_seed: int | None, shard: int):
        """One micro-batch's randomness: its own seed derived from a lockstep draw (see ganzoo.distributed)."""
        if base_seed is None:
            return contextlib.nullcontext()
        return self._seeded_rng((base_seed + 1_000_003 * shard) % 2**63)

    def restore(self, state: TrainState, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimiser moments, step, RNG and data position.

        Optimiser settings (lr, betas, ...) come from the variant as built now,
        so a forced hyperparameter change takes effect; the moments are the
        checkpoint's.
        """
        try:
            state.nets.load_state_dict(payload["nets"])
        except RuntimeError as exc:
            raise GanzooError(f"the checkpoint's networks do not match this variant's: "
                              f"{str(exc).splitlines()[0]}") from None
        if set(payload["optimizers"]) != set(state.optimizers):
            raise GanzooError(f"the checkpoint has optimisers {sorted(payload['optimizers'])}, "
                              f"the variant {sorted(state.optimizers)}")
        try:
            for key, optimizer in state.optimizers.items():
                settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
                saved = payload["optimizers"][key]
                # Today's settings go in before loading, so torch places the state for the implementation
                # that will step it (e.g. fused Adam's step counters on the device for an older checkpoint).
                if len(saved["param_groups"]) == len(settings):  # else torch refuses it below
                    saved = {**saved, "param_groups": [{**group, **fresh} for group, fresh in
                                                       zip(saved["param_groups"], settings)]}
                optimizer.load_state_dict(saved)
            state.step = int(payload["step"])
            state.extra = dict(payload.get("extra", {}))
            self.skipped_steps = int(payload.get("skipped_steps", 0))
            self.precision.load_state_dict(payload.get("precision"))
            set_rng_state(payload["rng"])
            # Plugin datasets may return None: only an explicit False means "not exact".
            self.data_stream_exact = self.dataset.load_state_dict(payload["data"]) is not False
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GanzooError(f"checkpoint {payload.get('path', '')} cannot be restored: {reason} "
                              "(resume from an older checkpoint file)") from None

    def train_step(self, state: TrainState) -> dict[str, list[torch.Tensor]]:
        """One generator step: every phase, with its repeats; returns the stats per name.

        A non-finite loss or gradient never reaches the weights: the run stops
        with :class:`Diverged`, or with ``on_nan="skip"`` that update is dropped
        and counted (:mod:`ganzoo.guard`, which also says when the check
        waits for the device: with fused Adam only once, at the step's end).
        """
        stats_out: dict[str, list[torch.Tensor]] = {
            name: [torch.tensor(float(value))] for name, value in self.toolkit.before_step(state).items()}
        accumulate = self.options.accumulate
        shards = self.dist.world * accumulate
        mine = range(self.dist.rank * accumulate, (self.dist.rank + 1) * accumulate)
        self.guard.begin_step()
        for phase in self.variant.phases(state.step):
            if state.step % phase.every:
                continue
            optimizers = self._trainable(state, phase)
            for _ in range(phase.repeats):
                # Every rank draws the same global batch and keeps its shards.
                batch = self._phase_batch(phase)
                base_seed = int(torch.randint(0, 2**62, (1,)).item()) if shards > 1 else None
                broadcast_buffers(state.nets, self.dist)  # rank 0's BatchNorm statistics everywhere
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                self.guard.start(optimizers)
                repeat_stats: dict[str, list[torch.Tensor]] = {}
                for shard in mine:
                    micro = batch.shard(shard, shards) if shards > 1 else batch
                    with self._shard_rng(base_seed, shard):
                        with self.precision.loss_context():
                            loss, stats = phase.loss(state.nets, micro)
                        self.guard.saw(loss)
                        self.precision.backward(loss / accumulate if accumulate > 1 else loss)
                    for key, value in stats.items():
                        value = value.detach() if torch.is_tensor(value) else torch.tensor(float(value))
                        repeat_stats.setdefault(f"{phase.name}/{key}", []).append(value)
                all_reduce_gradients(optimizers, self.dist)
                self.precision.unscale(optimizers)
                if not self.guard.update(state.step, phase.name, optimizers):
                    continue  # dropped on the host (fp16 overflow, or on_nan="skip")
                if phase.after is not None:
                    phase.after(state.nets)
                # A dropped update's stats reach the log only under on_nan="skip" (else the step raises):
                # there they become NaN, which the log's means skip.
                ok = self.guard.last_ok if self.options.on_nan == "skip" else None
                for name, values in repeat_stats.items():
                    if ok is not None:
                        values = [torch.where(ok.to(v.device), v.float(), torch.nan) for v in values]
                    stats_out.setdefault(name, []).extend(values)
        self.guard.settle(state.step)
        state.step += 1
        self.variant.end_step(state)
        self.toolkit.after_step(state)
        return stats_out

    def run(self, state: TrainState | None = None, resume: dict[str, Any] | None = None,
            resume_note: dict[str, Any] | None = None) -> RunResult:
        """Train until the variant's ``steps``, writing logs, grids and checkpoints.

        With ``resume`` (a loaded checkpoint) the run continues where it
        stopped; on the CPU the result is bit-identical to an uninterrupted run.
        An output that cannot be written (a full disk) stops the run with a
        GanzooError naming the file and the last checkpoint.
        """
        try:
            return self._run(state, resume, resume_note)
        except OSError as exc:
            target = exc.filename or self.run_dir
            raise GanzooError(f"could not write {target}: {os_reason(exc)}; {self._last_checkpoint_hint()}") from None

    def _run(self, state: TrainState | None, resume: dict[str, Any] | None,
             resume_note: dict[str, Any] | None) -> RunResult:
        opts = self.options
        main = self.dist.is_main  # only rank 0 writes anything: the others have no observers
        state = state or self.setup()
        if resume is not None:
            self.restore(state, resume)
        total = self.variant.steps
        if opts.progress and main:
            verb = f"resuming at step {state.step} of" if resume is not None else "training"
            ranks = f" on {self.dist.world} ranks" if self.dist.enabled else ""
            where = f"cpu, {cpu_threads.describe()}" if self.device.type == "cpu" else str(self.device)
            print(f"{verb} {self.variant.name} on {self.dataset.name} ({where}{ranks}) for {total} steps "
                  f"-> {self.run_dir}", file=sys.stderr)
        run = Run(self.run_dir, self.config, opts, self.variant, self.dataset, self.device, total,
                  resumed=resume is not None, trainer=self)
        observers = run.observers = Observers(self.observers() if main else [])
        # Stats stay on the device until log time: no host sync per step.
        pending: dict[str, list[torch.Tensor]] = {}
        interval_start = run_start = time.perf_counter()
        interval_steps = 0
        last: dict[str, float] = {}
        status = FAILED
        with _StopSignals() as stop:
            try:
                run.emit("on_start", state=state)
                if resume is not None:
                    exact = self.data_stream_exact
                    run.emit("on_log", state=state, record={"event": "resume", "step": state.step,
                                                            **(resume_note or {}),
                                                            **({} if exact else {"data_stream": "reseeded"})})
                    if not exact and main:
                        print(f"ganzoo: note: the checkpoint's batch order was saved on another kind of device "
                              f"than {self.device.type}; batches continue from a reseeded stream (resume on the "
                              "run's own device to continue it exactly)", file=sys.stderr)
                while state.step < total:
                    for name, values in self.train_step(state).items():
                        pending.setdefault(name, []).extend(values)
                    interval_steps += 1
                    # Ranks stop together: a signal seen by any rank stops all after this step.
                    signum = int(all_reduce_max(stop.signum or 0, self.dist, self.device))
                    if state.step % opts.log_every == 0 or state.step == total or signum:
                        now = time.perf_counter()
                        names = sorted(pending)
                        # nanmean: an update dropped on the device (on_nan="skip") leaves its NaN stats here.
                        means = torch.stack([torch.stack(pending[n]).float().nanmean() for n in names]) \
                            if names else torch.zeros(0)
                        last = dict(zip(names, all_reduce_mean(means, self.dist).tolist()))
                        record = {"step": state.step, "time": round(now - run_start, 3),
                                  "step_time": (now - interval_start) / max(interval_steps, 1), **last}
                        if self.skipped_steps:
                            record["skipped_steps"] = self.skipped_steps
                        if self.precision.overflows:
                            record["fp16_overflows"] = self.precision.overflows
                        run.emit("on_log", state=state, record=record)
                        pending, interval_steps, interval_start = {}, 0, now
                    if signum:
                        status = STOPPED
                        observers.end(run, state, STOPPED)  # the grid and a checkpoint of where it stopped
                        raise Interrupted(f"stopped by {signal.Signals(signum).name} at step {state.step}; "
                                          f"checkpoint {self.checkpoint_path(state)}; resume with: "
                                          f"ganzoo train --resume {self.run_dir}", exit_code=128 + signum)
                    run.emit("on_step", state=state)
                if self.dist.enabled:
                    check_consistent(state.nets, self.dist, self.device)
                    run.emit("on_log", state=state, record={"event": "ranks_consistent", "step": state.step,
                                                            "world": self.dist.world})
                status = FINISHED
                observers.end(run, state, FINISHED)  # the final grid and checkpoint
            finally:
                if status == FAILED:
                    observers.end(run, state, FAILED)
        barrier(self.dist)  # nobody leaves before the final checkpoint exists
        return RunResult(self.run_dir, state, last)

def __getattr__(name: str) -> Any:
    """``train``, ``resume`` and the run-directory helpers moved to :mod:`ganzoo.runs`."""
    if name in ("train", "resume", "prepare_run_dir", "default_run_dir", "FREE_ON_RESUME"):
        from . import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'ganzoo.trainer' has no attribute {name!r}")
