"""Which implementation of a fused op runs: ``cuda``, ``cpu`` or ``ref``.

* ``cuda``: the CUDA kernels (``csrc/*.cu``), for CUDA tensors.
* ``cpu``: the C++ kernels (``csrc/*_cpu.cpp``, ``at::parallel_for``), for CPU tensors.
* ``ref``: plain PyTorch, always available: the correctness oracle, and the
  fallback for other devices and dtypes or when the extension cannot be built.

The choice is automatic. ``GANZOO_OPS`` forces it: ``ref`` never builds or
uses the extension, ``native`` requires it (an op raises
:class:`~ganzoo.errors.GanzooError` instead of falling back), ``auto`` (the
default) uses the kernels where they exist and the reference elsewhere.
:func:`use_backend` does the same for a block of code; :func:`report` says
what each op uses on each device and why (``ganzoo ops`` prints it).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Iterator

import torch

from ..errors import GanzooError
from . import _build

MODES = ("auto", "native", "ref")
#: The ops behind this switch, in the order ``ganzoo ops`` lists them.
OPS = ("fused_leaky_relu", "interpolate", "gradient_penalty")
#: Dtypes the kernels take (reduced precision is computed in float32).
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_override: str | None = None
_cache: dict[tuple[str, str], ModuleType | None] = {}


@dataclass(frozen=True)
class Choice:
    """What runs for one op on one device: backend "cuda", "cpu", "ref" or
    "none" (no such device here), and the reason in a few words."""

    op: str
    device: str
    backend: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mode() -> str:
    """The active mode: :func:`use_backend`'s, else ``$GANZOO_OPS``, else "auto"."""
    if _override is not None:
        return _override
    value = os.environ.get("GANZOO_OPS", "").strip().lower() or "auto"
    if value not in MODES:
        raise GanzooError(f"GANZOO_OPS={value!r} is not a mode; use one of {', '.join(MODES)}")
    return value


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with mode ``name`` ("auto", "native" or "ref"), for the
    whole process, e.g. to time or check the reference against the kernels."""
    global _override
    if name not in MODES:
        raise ValueError(f"unknown backend mode {name!r}; use one of {', '.join(MODES)}")
    previous, _override = _override, name
    try:
        yield
    finally:
        _override = previous


def kernels(device: torch.device) -> ModuleType | None:
    """The extension module to run on ``device``, or None for the reference.

    Cheap after the first call per mode and device type: the hot path of every op.
    """
    current = mode()
    if current == "ref":
        return None
    key = (current, device.type)
    if key in _cache:
        return _cache[key]
    choice, module = _resolve(device.type, build=True)
    if module is None and current == "native":
        raise GanzooError(f"GANZOO_OPS=native, but the fused ops cannot run on {device.type}: "
                          f"{choice.reason}")
    _cache[key] = module
    return module


def supports(tensor: torch.Tensor) -> bool:
    """Whether the kernels take this tensor's dtype."""
    return tensor.dtype in SUPPORTED_DTYPES


def reset() -> None:
    """Forget cached choices and the loaded extension (tests)."""
    _cache.clear()
    _build.reset()


def report(build: bool = True) -> list[Choice]:
    """What each op uses on each device (cpu, cuda) and why.

    build: build the extension if needed (the first time takes a minute or two);
    when False, an unbuilt extension is reported as such.
    """
    rows = []
    for device in ("cpu", "cuda"):
        choice, _ = _resolve(device, build=build)
        rows += [Choice(op, device, choice.backend, choice.reason) for op in OPS]
    return rows


def _resolve(device: str, build: bool) -> tuple[Choice, ModuleType | None]:
    def ref(reason: str) -> tuple[Choice, None]:
        return Choice("*", device, "ref", reason), None

    current = mode()
    if device == "cuda" and not torch.cuda.is_available():
        why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA device"
        return Choice("*", device, "none", why), None
    if device not in ("cpu", "cuda"):
        return ref(f"no kernels for {device} tensors")
    if current == "ref":
        return ref("forced by GANZOO_OPS=ref" if _override is None else "forced by use_backend('ref')")
    ext = _build.extension(build=build)
    if ext is None:
        return ref("extension not built yet (it builds on first use; `ganzoo ops` builds it)")
    if ext.module is None:
        return ref(f"the build failed: {ext.error}; log: {ext.log}")
    where = {"prebuilt": "installed extension", "cached": "extension cached",
             "built": "extension built"}[ext.origin]
    location = f" {ext.location}" if ext.location else ""
    if device == "cuda":
        if not ext.cuda:
            return ref(f"no CUDA kernels: {ext.cuda_note}")
        return Choice("*", device, "cuda", f"CUDA kernels ({where}{location})"), ext.module
    return Choice("*", device, "cpu", f"C++ kernels, at::parallel_for ({where}{location})"), ext.module
