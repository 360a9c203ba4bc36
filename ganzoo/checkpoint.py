"""Checkpoints: what a run saves, and how ``ganzoo sample`` loads it back.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it
loads with ``torch.load(weights_only=True)``: a file crafted to run code when
unpickled is refused rather than executed.

Contents: ``format``, ``ganzoo_version``, ``config`` (the run's config.json),
``step`` (completed generator steps), ``nets`` (state_dict of every network),
``optimizers`` (state_dict per optimiser) and ``extra`` (variant-owned state).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import GanzooError
from .io import atomic_write

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file, fsync, rename)."""
    atomic_write(path, lambda handle: torch.save({"format": FORMAT, **payload}, handle))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest step first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise GanzooError(f"{path} holds no checkpoints (expected {path / CHECKPOINT_DIR}/step-*.pt)")
        return found[-1]
    raise GanzooError(f"{path} does not exist; pass a run directory or a checkpoint file")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only); GanzooError if it is damaged or unsafe."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln or "WeightsUnpickler" in ln]
        reason = lines[0].split(". Please")[0] if lines else type(exc).__name__
        raise GanzooError(
            f"{path} was refused: it holds objects a plain ganzoo checkpoint never has ({reason}); "
            "it may be unsafe to load"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise GanzooError(f"{path} is unreadable or truncated: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise GanzooError(f"{path} is not a ganzoo checkpoint (format {FORMAT})")
    return payload
