"""Checkpoints: what a run saves, how it is written safely, and how it is read back.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it
loads with ``torch.load(weights_only=True)``: a file crafted to run code when
unpickled is refused rather than executed.

Contents: ``format``, ``ganzoo_version``, ``config`` (the run's config.json),
``step`` (completed generator steps), ``nets`` (state_dict of every network,
EMA copies included), ``optimizers`` (state_dict per optimiser), ``extra``
(variant-owned state), ``rng`` (torch CPU and CUDA, numpy and Python random
states), ``data`` (the dataset's sampler position and generator state) and
``health`` (whether the weights were sane when saved, see :func:`weights_health`).

Writing: the checkpoint is serialised in memory, then written to a temporary
name in the same folder, flushed, fsynced and renamed, so a full disk is an
``OSError`` on a file nobody reads and a process killed at any moment leaves
the previous checkpoint loadable. Checkpoints beyond the newest ``keep`` are
deleted, except the newest *sane* one, which the ``checkpoints/sane`` pointer
(a one-line text file) names.

Reading: a checkpoint is a zip archive with a CRC-32 per record; every CRC is
verified before loading, so a flipped byte is a damaged checkpoint, not a
silently wrong weight. The contents are then checked against the schema
above (:func:`check_schema`). For a run directory the newest valid checkpoint
by step is used; damaged, truncated or malformed newer ones are skipped with
a warning.
"""
from __future__ import annotations

import math
import numbers
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import GanzooError
from .io import atomic_torch_save, atomic_write, os_reason

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
SANE = "sane"  # pointer to the newest checkpoint whose weights were sane
_NAME = re.compile(r"^step-(\d+)\.pt$")
#: A weight (or float buffer) larger than this in magnitude marks a checkpoint as not sane:
#: Adam moves a weight by about ``lr`` per step, so a healthy run at GAN learning rates
#: (1e-4 .. 1e-3) stays orders of magnitude below it, and a run blown up by a huge ``--lr``
#: lands far above it.
SANE_WEIGHT_LIMIT = 1e4


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def weights_health(nets_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``{"finite", "max_abs_weight", "sane"}`` of a state_dict's floating tensors.

    sane: every value finite and at most :data:`SANE_WEIGHT_LIMIT` in magnitude.
    """
    largest, finite = 0.0, True
    for tensor in nets_state.values():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        peak = float(tensor.detach().abs().max())
        if not math.isfinite(peak):
            finite = False
        else:
            largest = max(largest, peak)
    return {"finite": finite, "max_abs_weight": largest,
            "sane": finite and largest <= SANE_WEIGHT_LIMIT}


def save_checkpoint(path: Path, payload: dict[str, Any], keep: int = 0) -> dict[str, Any]:
    """Write ``payload`` atomically and keep the newest ``keep`` checkpoints (0: all);
    returns the weights' health (see :func:`weights_health`).

    ``payload["health"]`` is filled in (see :func:`weights_health`); a sane
    checkpoint moves the ``sane`` pointer to itself, and the checkpoint it
    names is never deleted by ``keep``. A failed write (e.g. a full disk)
    raises GanzooError and leaves the previous checkpoints as they were.
    """
    path = Path(path)
    folder = path.parent
    health = weights_health(payload.get("nets", {}))
    try:
        atomic_torch_save(path, {"format": FORMAT, **payload, "health": health})
        if health["sane"]:
            atomic_write(folder / SANE, lambda handle: handle.write(path.name.encode() + b"\n"))
    except OSError as exc:
        previous = [p for p in list_checkpoints(folder.parent) if p != path]
        kept = f"the previous checkpoint {previous[-1].name} is intact" if previous else "no earlier checkpoint exists"
        raise GanzooError(f"could not write checkpoint {path}: {os_reason(exc)}; {kept}") from None
    if keep > 0:
        protected = {path, last_sane_checkpoint(folder.parent)}
        for old in list_checkpoints(folder.parent)[:-keep]:
            if old not in protected:
                old.unlink(missing_ok=True)
    return health


def last_sane_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint the ``sane`` pointer names, when it still exists."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    try:
        name = (folder / SANE).read_text().strip()
    except OSError:
        return None
    return folder / name if _NAME.match(name) and (folder / name).is_file() else None


def divergence_advice(run_dir: Path) -> str:
    """Where a diverged run can go on from: the newest checkpoint whose weights were sane (kept
    on disk whatever ``--keep`` says), or plainly that the run must restart."""
    found = list_checkpoints(run_dir)
    sane = last_sane_checkpoint(run_dir)
    if sane is not None:
        newer = " (newer ones already hold blown-up weights)" if found and found[-1] != sane else ""
        return (f"the last checkpoint with sane weights is {sane}{newer}; resume from it with a lower --lr "
                f"and --force (ganzoo train --resume {sane} --lr LR --force), or train with --on-nan skip")
    if found:
        return (f"no checkpoint with sane weights exists ({found[-1].name} already holds blown-up weights: beyond "
                f"{SANE_WEIGHT_LIMIT:g} in size or not finite): the run must restart; start a new run with a "
                "lower --lr")
    return "no checkpoint was written: start again with a lower --lr, or train with --on-nan skip"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest step first (temporary files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory (not validated)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            if (path / "config.json").is_file():
                raise GanzooError(f"{path} holds no checkpoints: its run stopped before writing one, so there "
                                  "is nothing to continue; start a new run (remove the folder or pass another --out)")
            raise GanzooError(f"{path} holds no checkpoints (expected {path / CHECKPOINT_DIR}/step-*.pt)")
        return found[-1]
    raise GanzooError(f"{path} does not exist; pass a run directory or a checkpoint file")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (CRC-checked, weights_only, schema-checked); GanzooError if it is
    damaged, malformed or unsafe.

    For a run directory, checkpoints are tried newest step first: a damaged
    or malformed newer file gives a warning and the newest valid one.
    """
    path = Path(path)
    if path.is_dir():
        newest_first = list(reversed(list_checkpoints(path)))
        if not newest_first:
            resolve_checkpoint(path)  # raises the "no checkpoints" error
        problems = []
        for candidate in newest_first:
            try:
                payload = _load_file(candidate, map_location)
            except GanzooError as exc:
                problems.append(str(exc))
                continue
            if problems:
                warnings.warn(f"skipped damaged checkpoint(s): {'; '.join(problems)}; using {candidate.name}",
                              stacklevel=2)
            payload["path"] = str(candidate)
            return payload
        raise GanzooError(f"no loadable checkpoint in {path}: {problems[0]}")
    payload = _load_file(resolve_checkpoint(path), map_location)
    payload["path"] = str(path)
    return payload


def _verify_crc(path: Path) -> None:
    """Every record's CRC-32 (torch.save writes a zip archive with one per record)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise GanzooError(f"{path} is unreadable or truncated: {str(exc) or type(exc).__name__}") from None
    if bad is not None:
        raise GanzooError(f"{path} is damaged: the checksum of its record {bad!r} does not match "
                          "(a changed byte on disk)")


def _load_file(path: Path, map_location) -> dict[str, Any]:
    _verify_crc(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" not in message:  # a damaged file, not a crafted one
            raise GanzooError(f"{path} is unreadable or truncated: {message.splitlines()[0]}") from None
        lines = [ln.strip() for ln in message.splitlines() if "GLOBAL" in ln]
        reason = lines[0].split(". Please")[0] if lines else "objects outside the allowed set"
        raise GanzooError(
            f"{path} was refused: it holds objects a plain ganzoo checkpoint never has ({reason}); "
            "it may be unsafe to load"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise GanzooError(f"{path} is unreadable or truncated: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise GanzooError(f"{path} is not a ganzoo checkpoint (format {FORMAT})")
    problem = check_schema(payload)
    if problem:
        raise GanzooError(f"{path} is malformed: {problem}")
    return payload


# -- schema ----------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _tensor_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in value.items())


def check_schema(payload: dict[str, Any]) -> str | None:
    """What is wrong with a loaded checkpoint's structure, or None when it is well-formed.

    Checks every field the trainer and ``ganzoo sample`` read, with its type,
    so a malformed file is skipped like a truncated one instead of failing
    half-way through a resume.
    """
    config = payload.get("config")
    if not isinstance(config, dict):
        return "'config' is not a mapping"
    for key, kind in (("variant", str), ("dataset", str), ("hparams", dict), ("data", dict)):
        if not isinstance(config.get(key), kind):
            return f"config[{key!r}] is missing or not a {kind.__name__}"
    if not _is_int(config.get("seed")):
        return "config['seed'] is missing or not an integer"
    shape = config["data"].get("shape")
    if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(d) and d > 0 for d in shape):
        return "config['data']['shape'] is not a list of positive integers"
    if not _is_int(payload.get("step")) or payload["step"] < 0:
        return f"'step' is not a non-negative integer ({payload.get('step')!r})"
    if not _tensor_dict(payload.get("nets")) or not payload["nets"]:
        return "'nets' is not a mapping of names to tensors"
    optimizers = payload.get("optimizers")
    if not isinstance(optimizers, dict):
        return "'optimizers' is not a mapping"
    for name, state in optimizers.items():
        if not (isinstance(state, dict) and isinstance(state.get("state"), dict)
                and isinstance(state.get("param_groups"), list)
                and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in state["param_groups"])):
            return f"optimizer {name!r} has no valid 'state' and 'param_groups'"
    if not isinstance(payload.get("extra", {}), dict):
        return "'extra' is not a mapping"
    problem = _rng_problem(payload.get("rng"))
    if problem:
        return problem
    data = payload.get("data")
    if not isinstance(data, dict):
        return "'data' (the batch stream's state) is not a mapping"
    if "generator" in data and not (torch.is_tensor(data["generator"]) and data["generator"].dtype == torch.uint8):
        return "data['generator'] is not a byte tensor"
    if "order" in data and not (torch.is_tensor(data["order"]) and data["order"].dim() == 1
                                and not data["order"].is_floating_point() and _is_int(data.get("position"))):
        return "data['order'] / data['position'] are not an index tensor and an integer"
    if not _is_int(payload.get("skipped_steps", 0)):
        return "'skipped_steps' is not an integer"
    if not isinstance(payload.get("precision") or {}, dict):
        return "'precision' is not a mapping"
    return None


def _rng_problem(rng) -> str | None:
    if not isinstance(rng, dict):
        return "'rng' is not a mapping"
    if not (torch.is_tensor(rng.get("torch")) and rng["torch"].dtype == torch.uint8):
        return "rng['torch'] is not a byte tensor"
    state = rng.get("numpy")
    if not (isinstance(state, dict) and isinstance(state.get("kind"), str) and torch.is_tensor(state.get("keys"))
            and state["keys"].numel() == 624 and _is_int(state.get("pos")) and _is_int(state.get("has_gauss"))
            and isinstance(state.get("gauss"), float)):
        return "rng['numpy'] is not a numpy random state"
    python = rng.get("python")
    if not (isinstance(python, list) and len(python) == 3 and _is_int(python[0])
            and isinstance(python[1], list) and len(python[1]) == 625 and all(_is_int(v) for v in python[1])):
        return "rng['python'] is not a Python random state"
    cuda = rng.get("cuda", [])
    if not (isinstance(cuda, list) and all(torch.is_tensor(t) and t.dtype == torch.uint8 for t in cuda)):
        return "rng['cuda'] is not a list of byte tensors"
    return None


# -- random states ---------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every global random state a run uses, as weights_only-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value
