"""Checkpoints: what a run saves, how it is written safely, and how it is read back.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it
loads with ``torch.load(weights_only=True)``: a file crafted to run code when
unpickled is refused rather than executed.

Contents: ``format``, ``ganzoo_version``, ``config`` (the run's config.json),
``step`` (completed generator steps), ``nets`` (state_dict of every network,
EMA copies included), ``optimizers`` (state_dict per optimiser), ``extra``
(variant-owned state), ``rng`` (torch CPU and CUDA, numpy and Python random
states) and ``data`` (the dataset's sampler position and generator state).

Writing: each file goes to a temporary name in the same folder, is flushed and
fsynced, then renamed; only then is the ``latest`` pointer (a one-line text
file) moved to it, and checkpoints beyond the newest ``keep`` are deleted. A
process killed at any moment leaves the previous checkpoint loadable.
"""
from __future__ import annotations

import errno
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import GanzooError
from .io import atomic_write

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any], keep: int = 0) -> None:
    """Write ``payload`` atomically, move ``latest`` to it, keep the newest ``keep`` (0: all).

    A failed write (e.g. a full disk) raises GanzooError and leaves the
    previous checkpoint and pointer as they were.
    """
    path = Path(path)
    try:
        atomic_write(path, lambda handle: torch.save({"format": FORMAT, **payload}, handle))
        atomic_write(path.parent / LATEST, lambda handle: handle.write(path.name.encode() + b"\n"))
    except OSError as exc:
        previous = _pointed(path.parent)
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise GanzooError(f"could not write checkpoint {path}: {reason}; {kept}") from None
    if keep > 0:
        for old in list_checkpoints(path.parent.parent)[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)


def _pointed(folder: Path) -> Path | None:
    try:
        name = (folder / LATEST).read_text().strip()
    except OSError:
        return None
    return folder / name if _NAME.match(name) and (folder / name).is_file() else None


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
            raise GanzooError(f"{path} holds no checkpoints (expected {path / CHECKPOINT_DIR}/step-*.pt)")
        return _pointed(path / CHECKPOINT_DIR) or found[-1]
    raise GanzooError(f"{path} does not exist; pass a run directory or a checkpoint file")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only); GanzooError if it is damaged or unsafe.

    For a run directory, the checkpoint ``latest`` points to is tried first,
    then older ones: a truncated or corrupt newest file gives a warning and the
    previous valid checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        newest_first = list(reversed(list_checkpoints(path)))
        pointed = _pointed(path / CHECKPOINT_DIR)
        if pointed in newest_first:
            newest_first.remove(pointed)
            newest_first.insert(0, pointed)
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


def _load_file(path: Path, map_location) -> dict[str, Any]:
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
    return payload


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
