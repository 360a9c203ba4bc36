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
import contextlib
import io
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .checkpoint import (CHECKPOINT_DIR, checkpoint_name, list_checkpoints, load_checkpoint, rng_state,
                         save_checkpoint, set_rng_state)
from .data.base import Dataset, DataSpec
from .distributed import (SINGLE, DistContext, all_reduce_max, all_reduce_mean, barrier, broadcast_buffers,
                          broadcast_object, check_consistent, init_from_env, shutdown, sync_batchnorm, wrap)
from .errors import GanzooError
from .io import atomic_write, check_writable_dir
from .plotting import save_image_grid, save_scatter_plot
from .progress import Progress
from .registry import VARIANTS, create_dataset, create_variant, split_dataset_name
from .variant import Phase, TrainState, Variant, coerce_hparam


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
class TrainOptions:
    """How a run is driven (everything that is not a variant hyperparameter)."""

    device: str = "auto"
    seed: int = 0
    sample_every: int = 500  # 0: only the final grid
    ckpt_every: int = 1000  # 0: only the final checkpoint
    log_every: int = 10
    keep: int = 3  # checkpoints kept on disk (0: all)
    on_nan: str = "stop"  # "stop": raise; "skip": drop the optimiser step and count it
    grid_size: int = 64  # samples in an image grid (scatter plots use 1000)
    accumulate: int = 1  # micro-batches per rank and optimiser step (gradients summed)
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only)
    eval_every: int = 0  # evaluate every N steps into metrics.jsonl (0: never)
    eval_n: int = 2500  # samples per evaluation
    progress: bool = True

    def validate(self) -> None:
        for key in ("sample_every", "ckpt_every", "keep", "eval_every"):
            if getattr(self, key) < 0:
                raise GanzooError(f"{key.replace('_', '-')} must be >= 0 (0 disables it)")
        if self.log_every <= 0:
            raise GanzooError("log-every must be positive")
        if self.accumulate <= 0:
            raise GanzooError("accumulate must be positive")
        if self.on_nan not in ("stop", "skip"):
            raise GanzooError(f"on-nan must be 'stop' or 'skip', got {self.on_nan!r}")


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


class Diverged(GanzooError):
    """A loss or gradient became NaN or infinite."""


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


def _grad_norm(optimizers: list[torch.optim.Optimizer]) -> torch.Tensor:
    grads = [p.grad for opt in optimizers for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class Trainer:
    """Runs a variant's phases on a dataset and writes a run directory."""

    def __init__(self, variant: Variant, dataset: Dataset, run_dir: Path,
                 options: TrainOptions | None = None, config: dict[str, Any] | None = None,
                 dist: DistContext = SINGLE, device: torch.device | None = None):
        self.variant, self.dataset = variant, dataset
        self.data_stream_exact = True  # False after a resume that had to reseed the batch stream
        self.run_dir = Path(run_dir)
        self.options = options or TrainOptions()
        self.config = config or {}
        self.device = device or resolve_device(self.options.device)
        self.dist = dist
        self.skipped_steps = 0
        self._wrapped: dict[str, nn.Module] = {}  # DDP wrappers by net name, made on first use
        self._phase_views: dict[tuple[str, ...], nn.ModuleDict] = {}

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

    def _checkpoint_path(self, state: TrainState) -> Path:
        return self.run_dir / CHECKPOINT_DIR / checkpoint_name(state.step)

    def _save_checkpoint(self, state: TrainState) -> Path:
        path = self._checkpoint_path(state)
        save_checkpoint(path, {
            "ganzoo_version": __version__,
            "config": self.config,
            "step": state.step,
            "nets": state.nets.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "extra": state.extra,
            "rng": rng_state(),
            "data": self.dataset.state_dict(),
            "skipped_steps": self.skipped_steps,
        }, keep=self.options.keep)
        return path

    def _evaluate(self, state: TrainState) -> dict[str, Any]:
        """Quality metrics of the current G (see ganzoo.evaluation), without
        disturbing the training RNG or the nets' train/eval mode."""
        from .evaluation import evaluate_during_training

        was_training = state.nets.training
        with self._seeded_rng(self.options.seed + 1):
            state.nets.eval()
            try:
                results = evaluate_during_training(self.run_dir, state.nets, self.variant, self.dataset,
                                                   self.options.eval_n)
            finally:
                state.nets.train(was_training)
        return {f"eval/{k}": v for k, v in results.items()}

    def _last_checkpoint_hint(self) -> str:
        found = list_checkpoints(self.run_dir)
        if not found:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is {found[-1]}"

    # -- the loop -----------------------------------------------------------
    def setup(self) -> TrainState:
        """Seed, load the data onto the device, build nets and optimisers."""
        seed_everything(self.options.seed)
        self.dataset.prepare(self.device)
        nets = self.variant.build(self.dataset.spec)
        if self.options.sync_bn and self.dist.enabled:
            nets = sync_batchnorm(nets, self.device)
        nets = nets.to(self.device)
        return TrainState(nets, self.variant.make_optimizers(nets))

    def _phase_nets(self, state: TrainState, optimizers: list[torch.optim.Optimizer],
                    phase: Phase) -> nn.ModuleDict:
        """The nets a phase's loss sees: under DDP, the ones it trains are wrapped.

        Networks the phase does not train are passed plain, so DDP never waits
        for gradients that a phase does not produce.
        """
        if not self.dist.enabled:
            return state.nets
        if phase.updates not in self._phase_views:
            owned = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
            view = {}
            for name, net in state.nets.items():
                params = list(net.parameters())
                if params and all(id(p) in owned for p in params):
                    if name not in self._wrapped:
                        self._wrapped[name] = wrap(net, self.device)
                    view[name] = self._wrapped[name]
                else:
                    view[name] = net
            self._phase_views[phase.updates] = nn.ModuleDict(view)
            self._trainable(state, phase)  # wrapping made every parameter trainable again
        return self._phase_views[phase.updates]

    def _shard_context(self, nets: nn.ModuleDict, base_seed: int | None, shard: int, sync: bool):
        """RNG and DDP context for one micro-batch: its own seed; DDP syncs on the last only."""
        stack = contextlib.ExitStack()
        if base_seed is not None:
            stack.enter_context(self._seeded_rng((base_seed + 1_000_003 * shard) % 2**63))
        if not sync:
            for net in nets.values():
                if isinstance(net, nn.parallel.DistributedDataParallel):
                    stack.enter_context(net.no_sync())
        return stack

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
        for key, optimizer in state.optimizers.items():
            settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            optimizer.load_state_dict(payload["optimizers"][key])
            for group, fresh in zip(optimizer.param_groups, settings):
                group.update(fresh)
        state.step = int(payload["step"])
        state.extra = dict(payload.get("extra", {}))
        self.skipped_steps = int(payload.get("skipped_steps", 0))
        set_rng_state(payload["rng"])
        # Plugin datasets may return None: only an explicit False means "not exact".
        self.data_stream_exact = self.dataset.load_state_dict(payload["data"]) is not False

    def train_step(self, state: TrainState) -> dict[str, list[torch.Tensor]]:
        """One generator step: every phase, with its repeats; returns the stats per name.

        A non-finite loss or gradient raises :class:`Diverged`, or with
        ``on_nan="skip"`` drops that optimiser step and counts it.
        """
        stats_out: dict[str, list[torch.Tensor]] = {}
        accumulate = self.options.accumulate
        shards = self.dist.world * accumulate
        mine = range(self.dist.rank * accumulate, (self.dist.rank + 1) * accumulate)
        for phase in self.variant.phases(state.step):
            if state.step % phase.every:
                continue
            optimizers = self._trainable(state, phase)
            nets = self._phase_nets(state, optimizers, phase)
            for _ in range(phase.repeats):
                # Every rank draws the same global batch and keeps its shards.
                batch = self.dataset.sample(self.variant.batch_size)
                base_seed = int(torch.randint(0, 2**62, (1,)).item()) if shards > 1 else None
                for net in nets.values():
                    if isinstance(net, nn.parallel.DistributedDataParallel):
                        broadcast_buffers(net.module, self.dist)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                bad_loss = None
                repeat_stats: dict[str, list[torch.Tensor]] = {}
                for k, shard in enumerate(mine):
                    micro = batch.shard(shard, shards) if shards > 1 else batch
                    with self._shard_context(nets, base_seed, shard, sync=k == accumulate - 1):
                        loss, stats = phase.loss(nets, micro)
                        if not torch.isfinite(loss) and bad_loss is None:
                            bad_loss = loss.item()
                        # Always backward, even a NaN: under DDP every rank must join the all-reduce.
                        (loss / accumulate if accumulate > 1 else loss).backward()
                    for key, value in stats.items():
                        value = value.detach() if torch.is_tensor(value) else torch.tensor(float(value))
                        repeat_stats.setdefault(f"{phase.name}/{key}", []).append(value)
                problem = None
                if all_reduce_max(float(bad_loss is not None), self.dist, self.device):
                    problem = (f"{phase.name}/loss is {bad_loss}" if bad_loss is not None
                               else f"{phase.name}/loss is not finite on another rank")
                else:
                    norm = _grad_norm(optimizers)  # after DDP's all-reduce: the same on every rank
                    if not torch.isfinite(norm):
                        problem = f"the gradient of {phase.name}/loss is {norm.item()}"
                if problem is not None:
                    if self.options.on_nan == "skip":
                        self.skipped_steps += 1
                        for opt in optimizers:
                            opt.zero_grad(set_to_none=True)
                        continue
                    raise Diverged(
                        f"training diverged at step {state.step + 1}, phase {phase.name}: {problem}; "
                        f"{self._last_checkpoint_hint()} (resume with --resume and a lower --lr, "
                        "or train with --on-nan skip)"
                    )
                for opt in optimizers:
                    opt.step()
                if phase.after is not None:
                    phase.after(state.nets)
                for name, values in repeat_stats.items():
                    stats_out.setdefault(name, []).extend(values)
        state.step += 1
        self.variant.end_step(state)
        return stats_out

    def run(self, state: TrainState | None = None, resume: dict[str, Any] | None = None,
            resume_note: dict[str, Any] | None = None) -> RunResult:
        """Train until the variant's ``steps``, writing logs, grids and checkpoints.

        With ``resume`` (a loaded checkpoint) the run continues where it
        stopped; on the CPU the result is bit-identical to an uninterrupted run.
        """
        opts = self.options
        main = self.dist.is_main  # only rank 0 writes anything
        state = state or self.setup()
        if resume is not None:
            self.restore(state, resume)
        fixed = self._fixed_inputs(self.dataset.spec)
        if main:
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            (self.run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)

        total = self.variant.steps
        if opts.progress and main:
            verb = f"resuming at step {state.step} of" if resume is not None else "training"
            ranks = f" on {self.dist.world} ranks" if self.dist.enabled else ""
            print(f"{verb} {self.variant.name} on {self.dataset.name} ({self.device}{ranks}) for {total} steps "
                  f"-> {self.run_dir}", file=sys.stderr)
        progress = Progress(total, f"{self.variant.name}/{self.dataset.name}", enabled=opts.progress and main)
        # Stats stay on the device until log time: no host sync per step.
        pending: dict[str, list[torch.Tensor]] = {}
        last: dict[str, float] = {}
        interval_start = run_start = time.perf_counter()
        interval_steps = 0
        log_file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") if main else None

        def log(record: dict[str, Any]) -> None:
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()

        with _StopSignals() as stop, contextlib.closing(log_file or io.StringIO()):
            if resume is not None:
                exact = self.data_stream_exact
                log({"event": "resume", "step": state.step, **(resume_note or {}),
                     **({} if exact else {"data_stream": "reseeded"})})
                if not exact and main:
                    print(f"ganzoo: note: the checkpoint's batch order was saved on another kind of device than "
                          f"{self.device.type}; batches continue from a reseeded stream (resume on the run's "
                          "own device to continue it exactly)", file=sys.stderr)
            while state.step < total:
                for name, values in self.train_step(state).items():
                    pending.setdefault(name, []).extend(values)
                interval_steps += 1
                done = state.step == total
                # Ranks stop together: a signal seen by any rank stops all after this step.
                signum = int(all_reduce_max(stop.signum or 0, self.dist, self.device))
                if state.step % opts.log_every == 0 or done or signum:
                    now = time.perf_counter()
                    names = sorted(pending)
                    means = torch.stack([torch.stack(pending[n]).float().mean() for n in names]) \
                        if names else torch.zeros(0)
                    last = dict(zip(names, all_reduce_mean(means, self.dist).tolist()))
                    record = {"step": state.step, "time": round(now - run_start, 3),
                              "step_time": (now - interval_start) / max(interval_steps, 1), **last}
                    if self.skipped_steps:
                        record["skipped_steps"] = self.skipped_steps
                    log(record)
                    pending, interval_steps, interval_start = {}, 0, now
                    progress.update(state.step, {k: v for k, v in last.items() if k.endswith("/loss")})
                if signum:
                    progress.close()
                    path = self._save_checkpoint(state) if main else self._checkpoint_path(state)
                    raise Interrupted(f"stopped by {signal.Signals(signum).name} at step {state.step}; "
                                      f"checkpoint {path}; resume with: ganzoo train --resume {self.run_dir}",
                                      exit_code=128 + signum)
                if main and opts.eval_every and (state.step % opts.eval_every == 0 or done):
                    log({"step": state.step, **self._evaluate(state)})
                if main and opts.sample_every and state.step % opts.sample_every == 0 and not done:
                    self._save_samples(state, fixed, f"step-{state.step:07d}")
                if main and opts.ckpt_every and state.step % opts.ckpt_every == 0 and not done:
                    self._save_checkpoint(state)
            progress.close()
            if self.dist.enabled:
                check_consistent(state.nets, self.dist, self.device)
                log({"event": "ranks_consistent", "step": state.step, "world": self.dist.world})
        if main:
            self._save_samples(state, fixed, "final")
            self._save_checkpoint(state)
        barrier(self.dist)  # nobody leaves before the final checkpoint exists
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
        raise GanzooError(f"{run_dir} already holds a run; pass another --out, remove it, "
                          f"or continue it with --resume {run_dir}")
    try:
        check_writable_dir(run_dir)
    except OSError as exc:
        raise GanzooError(f"cannot write to --out {run_dir}: {exc}; choose a writable directory") from None


def _write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write(run_dir / "config.json", lambda h: h.write((json.dumps(config, indent=2) + "\n").encode()))


def _stored_options(dataset_options: dict[str, Any]) -> dict[str, Any]:
    """Dataset options as config.json keeps them (absolute paths, so a resume works from anywhere)."""
    return {k: str(Path(v).expanduser().resolve()) if k == "data_dir" else v
            for k, v in dataset_options.items()}


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
    dataset_name, data_dir = split_dataset_name(dataset_name)  # folder:PATH
    if data_dir is not None:
        dataset_options["data_dir"] = data_dir
    data = create_dataset(dataset_name, seed=options.seed, **dataset_options)
    model = create_variant(variant, data.spec, **(hparams or {}))
    if options.eval_every:  # fail now, not at the first evaluation
        from .evaluation.api import check_evaluable

        check_evaluable(data.spec, model.conditional, options.eval_n, dataset_name)
    dist, device = init_from_env(resolve_device(options.device))
    # Every rank checks the same things, so a bad input stops all of them alike.
    run_dir = Path(out) if out is not None else broadcast_object(default_run_dir(variant, dataset_name), dist)
    prepare_run_dir(run_dir)
    _check_batch(model, data, options, dist)
    _prepare_data(data, device, dist)

    config = {
        "ganzoo_version": __version__,
        "variant": variant,
        "variant_plugin": VARIANTS.entry(variant).plugin,
        "dataset": dataset_name,
        "data": data.spec.to_dict(),
        "dataset_options": _stored_options(dataset_options),
        "hparams": model.hparams,
        "seed": options.seed,
        "device": str(device),
        "options": {k: getattr(options, k)
                    for k in ("sample_every", "ckpt_every", "log_every", "grid_size", "eval_every", "eval_n")},
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(run_dir, config)
    try:
        return Trainer(model, data, run_dir, options, config, dist=dist, device=device).run()
    finally:
        shutdown()


def _check_batch(model: Variant, data: Dataset, options: TrainOptions, dist: DistContext) -> None:
    shards = dist.world * options.accumulate
    if model.batch_size % shards:
        raise GanzooError(f"batch size {model.batch_size} does not split into {dist.world} rank(s) x "
                          f"{options.accumulate} micro-batch(es); use a multiple of {shards}")
    if model.batch_size > (data.spec.size or model.batch_size):
        raise GanzooError(f"batch size {model.batch_size} exceeds the {data.spec.size} examples of {data.name!r}")


def _prepare_data(data: Dataset, device: torch.device, dist: DistContext) -> None:
    """Rank 0 loads (and downloads, caches) first; the others then read its cache."""
    if dist.is_main:
        data.prepare(device)
    barrier(dist)
    if not dist.is_main:
        data.prepare(device)


#: Hyperparameters a resume may change without --force (extending a run is routine).
FREE_ON_RESUME = frozenset({"steps"})


def resume(path: str | Path, *, variant: str | None = None, dataset: str | None = None,
           hparams: dict[str, Any] | None = None, options: TrainOptions | None = None,
           dataset_options: dict[str, Any] | None = None, force: bool = False) -> RunResult:
    """Continue a run from its newest valid checkpoint (or the checkpoint ``path``).

    Asking for another variant, dataset or data shape is refused with the
    differences listed; other hyperparameter changes (e.g. the learning rate)
    need ``force`` and are logged in metrics.jsonl and config.json. ``steps``
    may always be raised to extend a run.
    """
    options = options or TrainOptions()
    options.validate()
    path = Path(path)
    payload = load_checkpoint(path)
    checkpoint_path = Path(payload["path"])
    run_dir = checkpoint_path.parent.parent
    saved = payload["config"]
    options.seed = int(saved["seed"])  # the RNG state comes from the checkpoint anyway

    fixed: list[str] = []
    if variant is not None and variant != saved["variant"]:
        fixed.append(f"variant {saved['variant']!r} -> {variant!r}")
    if dataset is not None and dataset != saved["dataset"]:
        fixed.append(f"dataset {saved['dataset']!r} -> {dataset!r}")
    wanted_options = _stored_options({k: v for k, v in (dataset_options or {}).items() if v is not None})
    for key, value in wanted_options.items():
        if saved.get("dataset_options", {}).get(key) != value:
            fixed.append(f"--{key.replace('_', '-')} {saved.get('dataset_options', {}).get(key)!r} -> {value!r}")
    variant_cls = VARIANTS.get(saved["variant"])
    new_hparams = dict(saved["hparams"])
    forced: dict[str, Any] = {}
    for key, value in (hparams or {}).items():
        known = variant_cls.known_hparams()
        value = coerce_hparam(key, value, known[key]) if key in known else value
        old = new_hparams.get(key)
        if isinstance(old, list):
            old = tuple(old)
        if old != value:
            new_hparams[key] = value
            if key not in FREE_ON_RESUME:
                forced[key] = [old, value]
    if fixed:
        raise GanzooError(f"cannot resume {run_dir} with a different setup: {'; '.join(fixed)} "
                          "(start a new run instead)")
    if forced and not force:
        listed = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in forced.items())
        raise GanzooError(f"resuming {run_dir} would change {listed}; add --force to apply the change")

    data = create_dataset(saved["dataset"], seed=options.seed, **saved.get("dataset_options", {}))
    model = create_variant(saved["variant"], data.spec, **new_hparams)
    if list(data.spec.shape) != list(saved["data"]["shape"]):
        raise GanzooError(f"cannot resume {run_dir}: the data now has shape {list(data.spec.shape)}, "
                          f"the run was trained on {saved['data']['shape']}")
    if int(payload["step"]) >= model.steps:
        raise GanzooError(f"{run_dir} already finished {payload['step']} of {model.steps} steps; "
                          f"raise --steps to train further")
    if options.device == "auto":
        # Continue on the kind of device the run trained on, so the batch stream and
        # the RNG continue exactly; a CUDA run continues on the CPU only where no GPU is.
        trained_on = torch.device(saved.get("device", "cpu")).type
        if trained_on == "cpu" or (trained_on == "cuda" and cuda_available()):
            options.device = trained_on
    dist, device = init_from_env(resolve_device(options.device))
    _check_batch(model, data, options, dist)
    _prepare_data(data, device, dist)
    config = dict(saved, hparams=model.hparams, device=str(device))
    if forced:
        config["forced_on_resume"] = saved.get("forced_on_resume", []) + [{"step": payload["step"], **forced}]
    if dist.is_main:
        _write_config(run_dir, config)
        for stale in (run_dir / CHECKPOINT_DIR).glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
    note = {"checkpoint": checkpoint_path.name, **({"forced": forced} if forced else {})}
    try:
        return Trainer(model, data, run_dir, options, config, dist=dist, device=device).run(
            resume=payload, resume_note=note)
    finally:
        shutdown()
