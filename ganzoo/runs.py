"""Starting and continuing runs: ``train()`` and ``resume()`` (``ganzoo train``).

Everything is validated, and the data loaded, before a run directory is
created or changed, so a bad input leaves nothing behind; then the
:class:`~ganzoo.trainer.Trainer` runs.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import CHECKPOINT_DIR, list_checkpoints, load_checkpoint
from .data.base import Dataset
from .distributed import DistContext, barrier, broadcast_object, init_from_env, shutdown
from .errors import GanzooError
from .io import atomic_write, check_writable_dir
from .precision import check_precision
from .progress import silenced
from .registry import (VARIANTS, create_dataset, create_variant, dataset_option_names, get_dataset,
                       split_dataset_name)
from .runlock import LOCK_NAME, RunLock
from .trainer import Interrupted, RunResult, Trainer, TrainOptions, cuda_available, resolve_device
from .variant import PRESET_KEY, Variant, coerce_hparam


def default_run_dir(variant: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{variant}-{dataset}-{stamp}"


def prepare_run_dir(run_dir: Path) -> None:
    """Refuse an unwritable directory or one that already holds a run, before any work."""
    run_dir = Path(run_dir)
    try:  # a name too long for the filesystem fails already in exists()
        if run_dir.exists() and not run_dir.is_dir():
            raise GanzooError(f"--out {run_dir} is a file; pass a directory")
        _refuse_a_run_there(run_dir)
        check_writable_dir(run_dir)
    except OSError as exc:
        raise GanzooError(_unwritable(run_dir, exc)) from None


def _unwritable(run_dir: Path, exc: OSError) -> str:
    return f"cannot write to --out {run_dir}: {exc.strerror or exc}; choose a writable directory"


def _refuse_a_run_there(run_dir: Path) -> None:
    if (run_dir / "config.json").exists():
        if not list_checkpoints(run_dir) and not RunLock(run_dir).holder():
            raise GanzooError(f"{run_dir} already holds a run that stopped before its first checkpoint (nothing to "
                              "resume); remove it or pass another --out")
        raise GanzooError(f"{run_dir} already holds a run; pass another --out, remove it, "
                          f"or continue it with --resume {run_dir}")


def _own_run_dir(run_dir: Path, dist: DistContext, fresh: bool) -> RunLock:
    """Rank 0 takes the run directory's lock (see ganzoo.runlock), creating the
    directory for a fresh run; every rank raises the same error if it cannot.

    A fresh run checks again, under the lock, that no other run has written its
    config meanwhile (two runs started on one --out at once); if it created the
    directory and cannot own it, it removes it again, so nothing is left behind.
    """
    lock = RunLock(run_dir)
    problem = None
    if dist.is_main:
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            if fresh:
                try:
                    _refuse_a_run_there(run_dir)
                except GanzooError:
                    lock.release()
                    raise
        except (GanzooError, OSError) as exc:
            problem = str(exc) if isinstance(exc, GanzooError) else _unwritable(run_dir, exc)
            if created:
                try:
                    run_dir.rmdir()  # only if empty: never another run's files
                except OSError:
                    pass
    problem = broadcast_object(problem, dist)
    if problem:
        raise GanzooError(problem)
    return lock


def _run_identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in ("variant", "dataset", "seed", "created")}


def _refuse_a_foreign_checkpoint(run_dir: Path, checkpoint_path: Path, saved: dict[str, Any]) -> None:
    """A checkpoint of another run (dropped or copied into this run directory) is refused:
    resuming it would train that run here and overwrite this run's config.json."""
    try:
        own = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return  # a bare checkpoint folder, or a config lost: the checkpoint's own config is used
    if not isinstance(own, dict):
        return
    mine, theirs = _run_identity(own), _run_identity(saved)
    differ = [f"{k} {theirs[k]!r} (run: {mine[k]!r})" for k in mine if mine[k] is not None and mine[k] != theirs[k]]
    if differ:
        raise GanzooError(f"{checkpoint_path} belongs to another run than {run_dir} ({', '.join(differ)}); "
                          "resume that run from its own directory, or remove the checkpoint")


def _write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write(run_dir / "config.json", lambda h: h.write((json.dumps(config, indent=2) + "\n").encode()))


def _stored_options(dataset_name: str, dataset_options: dict[str, Any]) -> dict[str, Any]:
    """Dataset options as config.json keeps them (absolute paths, so a resume works from anywhere)."""
    return get_dataset(dataset_name).stored_options(dataset_options)


def _progress_as_options_say(function):
    """Run ``function`` with every progress display (one-off tasks included) off when its
    ``options`` say ``progress=False``, and on every rank but rank 0 of a torchrun job."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        options = kwargs.get("options")
        quiet = (options is not None and not options.progress) or os.environ.get("RANK", "0") != "0"
        if not quiet:
            return function(*args, **kwargs)
        with silenced():
            return function(*args, **kwargs)
    return wrapper


@_progress_as_options_say
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
    options = (options or TrainOptions()).resolved()
    variant_cls = VARIANTS.get(variant)
    dataset_name = dataset or variant_cls.default_dataset
    dataset_options = {k: v for k, v in (dataset_options or {}).items() if v is not None}
    dataset_name, data_dir = split_dataset_name(dataset_name)  # folder:PATH
    if data_dir is not None:
        dataset_options["data_dir"] = data_dir
    taken = dataset_option_names(dataset_name)
    for key, value in variant_cls.dataset_defaults.items():  # the variant's asks, under the user's
        if key in taken:
            dataset_options.setdefault(key, value)
    data = create_dataset(dataset_name, seed=options.seed, **dataset_options)
    model = create_variant(variant, data.spec, **(hparams or {}))
    if options.eval_every:  # fail now, not at the first evaluation
        from .evaluation.api import check_evaluable

        check_evaluable(data.spec, model.conditional, options.eval_n, dataset_name)
    dist, device = init_from_env(resolve_device(options.device))
    # Every rank checks the same things, so a bad input stops all of them alike.
    check_precision(options.precision, device)
    run_dir = Path(out) if out is not None else broadcast_object(default_run_dir(variant, dataset_name), dist)
    prepare_run_dir(run_dir)
    _check_batch(model, data, options, dist)
    _check_networks(model, data)
    _prepare_data(data, device, dist)
    _check_batch(model, data, options, dist)  # again: a folder's size counts only the files that decoded

    config = {
        "ganzoo_version": __version__,
        "variant": variant,
        "variant_plugin": VARIANTS.entry(variant).plugin,
        "dataset": dataset_name,
        "data": data.spec.to_dict(),
        "dataset_options": _stored_options(dataset_name, dataset_options),
        "hparams": model.hparams,
        "seed": options.seed,
        "device": str(device),
        "options": options.run_options(),
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-safe
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    created = not run_dir.exists()
    lock = _own_run_dir(run_dir, dist, fresh=True)
    before = set(run_dir.iterdir()) if dist.is_main else set()
    try:
        if dist.is_main:
            _write_config(run_dir, config)
        return Trainer(model, data, run_dir, options, config, dist=dist, device=device).run()
    except BaseException as exc:
        # A run that stops before its first checkpoint (a divergence at step 1, a full disk,
        # an error caught late) has nothing to resume: leave the directory as it was found.
        if dist.is_main and not list_checkpoints(run_dir) and _roll_back(run_dir, before) \
                and isinstance(exc, GanzooError) and not isinstance(exc, Interrupted):
            raise GanzooError(f"{exc}; {run_dir} was left as it was found (nothing to resume)") from None
        raise
    finally:
        lock.release()
        if created and dist.is_main:
            try:
                run_dir.rmdir()  # only when the roll-back emptied it
            except OSError:
                pass
        shutdown()


def _roll_back(run_dir: Path, before: set[Path]) -> bool:
    """Remove what a failed fresh run added to ``run_dir`` (never what was there before it)."""
    for path in set(run_dir.iterdir()) - before:
        if path.name == LOCK_NAME:
            continue  # released by the caller
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            return False
    return True


def _check_batch(model: Variant, data: Dataset, options: TrainOptions, dist: DistContext) -> None:
    shards = dist.world * options.accumulate
    if model.batch_size % shards:
        raise GanzooError(f"batch size {model.batch_size} does not split into {dist.world} rank(s) x "
                          f"{options.accumulate} micro-batch(es); use a multiple of {shards}")
    multiple = model.toolkit.batch_multiple()  # e.g. pack=M: every micro-batch splits into packs
    if (model.batch_size // shards) % multiple:
        raise GanzooError(f"each micro-batch of {model.batch_size // shards} must be a multiple of {multiple} "
                          f"(pack x minibatch_std); use a batch size that is a multiple of {shards * multiple}")
    if model.batch_size > (data.spec.size or model.batch_size):
        usable = " usable" if data.generator is not None else ""  # after prepare(): what decoded
        raise GanzooError(f"batch size {model.batch_size} exceeds the {data.spec.size}{usable} examples of "
                          f"{data.name!r}; use --batch-size {data.spec.size} or less")


def _check_networks(model: Variant, data: Dataset, saved: dict[str, torch.Tensor] | None = None,
                    forced: dict[str, Any] | None = None) -> None:
    """Build the nets once, so an option the nets cannot take fails before anything is written;
    on resume, also that they hold the checkpoint's tensors (``saved``) with the same shapes."""
    try:
        with torch.random.fork_rng(devices=[]):
            nets = model.networks(data.spec)
            model.optimizers_for(nets)  # e.g. betas outside [0, 1) are refused here, not mid-run
    except (ValueError, TypeError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GanzooError(f"variant {model.name!r} cannot build its networks and optimisers with these "
                          f"settings: {reason}") from None
    if saved is None:
        return
    built = {k: tuple(v.shape) for k, v in nets.state_dict().items()}
    differ = sorted(set(built) ^ set(saved)) + sorted(k for k in set(built) & set(saved)
                                                      if built[k] != tuple(saved[k].shape))
    if differ:
        cause = (f"the change of {', '.join(sorted(forced))} changes the networks"
                 if forced else "the variant now builds other networks than the checkpoint holds")
        raise GanzooError(f"cannot resume with these settings: {cause} ({len(differ)} tensors differ, e.g. "
                          f"{', '.join(differ[:3])}); a run cannot continue with other networks: start a new run")


def _prepare_data(data: Dataset, device: torch.device, dist: DistContext) -> None:
    """Rank 0 loads (and downloads, caches) first; the others then read its cache."""
    if dist.is_main:
        data.prepare(device)
    barrier(dist)
    if not dist.is_main:
        data.prepare(device)


#: Hyperparameters a resume may change without --force (extending a run is routine).
FREE_ON_RESUME = frozenset({"steps"})


@_progress_as_options_say
def resume(path: str | Path, *, variant: str | None = None, dataset: str | None = None,
           hparams: dict[str, Any] | None = None, options: TrainOptions | None = None,
           dataset_options: dict[str, Any] | None = None, force: bool = False) -> RunResult:
    """Continue a run from its newest valid checkpoint (or the checkpoint ``path``).

    Asking for another variant, dataset or data shape is refused with the
    differences listed; other hyperparameter changes (e.g. the learning rate)
    need ``force`` and are logged in metrics.jsonl and config.json. ``steps``
    may always be raised to extend a run.
    """
    (options or TrainOptions()).validate()
    path = Path(path)
    payload = load_checkpoint(path)
    checkpoint_path = Path(payload["path"])
    if checkpoint_path.parent.name != CHECKPOINT_DIR:
        # The run's files go beside checkpoints/: for a loose file that would be whatever
        # folder holds its folder (the current directory, a home directory).
        raise GanzooError(f"{checkpoint_path} is not inside a run directory's {CHECKPOINT_DIR}/ folder, so there "
                          f"is no run to continue; put it into RUN_DIR/{CHECKPOINT_DIR}/ and resume RUN_DIR")
    run_dir = checkpoint_path.parent.parent
    saved = payload["config"]
    _refuse_a_foreign_checkpoint(run_dir, checkpoint_path, saved)
    # Like the device: the run's own options (--ckpt-every, --precision, ...) unless given anew.
    options = (options or TrainOptions()).resolved(saved.get("options"))
    options.seed = int(saved["seed"])  # the RNG state comes from the checkpoint anyway

    fixed: list[str] = []
    if variant is not None and variant != saved["variant"]:
        fixed.append(f"variant {saved['variant']!r} -> {variant!r}")
    if dataset is not None and dataset != saved["dataset"]:
        fixed.append(f"dataset {saved['dataset']!r} -> {dataset!r}")
    wanted_options = _stored_options(split_dataset_name(saved["dataset"])[0],
                                     {k: v for k, v in (dataset_options or {}).items() if v is not None})
    for key, value in wanted_options.items():
        if saved.get("dataset_options", {}).get(key) != value:
            fixed.append(f"--{key.replace('_', '-')} {saved.get('dataset_options', {}).get(key)!r} -> {value!r}")
    variant_cls = VARIANTS.get(saved["variant"])
    if PRESET_KEY in (hparams or {}):
        raise GanzooError(f"--set {PRESET_KEY}=... picks the settings a run starts with; {run_dir} keeps its own "
                          "(change one hyperparameter with --set KEY=VALUE --force, or start a new run)")
    new_hparams = variant_cls.saved_hparams(saved["hparams"])
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
    check_precision(options.precision, device)
    _check_batch(model, data, options, dist)
    _check_networks(model, data, payload["nets"], forced)
    _prepare_data(data, device, dist)
    _check_batch(model, data, options, dist)
    config = dict(saved, hparams=model.hparams, device=str(device), options=options.run_options())
    if forced:
        config["forced_on_resume"] = saved.get("forced_on_resume", []) + [{"step": payload["step"], **forced}]
    lock = _own_run_dir(run_dir, dist, fresh=False)  # not while another process trains this run
    try:
        if dist.is_main:
            _write_config(run_dir, config)
            for stale in (run_dir / CHECKPOINT_DIR).glob(".*.tmp"):  # left by a process killed mid-write
                stale.unlink(missing_ok=True)
        note = {"checkpoint": checkpoint_path.name, **({"forced": forced} if forced else {})}
        return Trainer(model, data, run_dir, options, config, dist=dist, device=device).run(
            resume=payload, resume_note=note)
    finally:
        lock.release()
        shutdown()
