"""``ganzoo export RUN --format torchscript|onnx``: a generator that runs without ganzoo.

The exported module maps noise (and labels, for conditional variants) to samples in the
data's own units -- images ``(N, C, H, W)`` in [-1, 1], vectors ``(N, D)`` -- exactly as
``ganzoo sample`` draws them (the EMA generator when the run has one). It is traced with the
fused ops' plain-PyTorch reference, so the file holds only standard torch operators and
loads with torch alone::

    extra = {"ganzoo.json": ""}
    g = torch.jit.load("G.pt", _extra_files=extra)     # TorchScript
    info = json.loads(extra["ganzoo.json"])            # the description below
    images = g(torch.randn(16, *info["latent_shape"])) # conditional: g(z, labels)

A TorchScript file carries ``ganzoo.json`` (``torch.jit.load(path, _extra_files=...)``):
the variant, the step, the noise shape and distribution, whether labels are needed, the
number of classes and the output shape and range. ONNX (``--format onnx``, needs the
``onnx`` package) gets the same description in its metadata properties, inputs ``z``
(and ``labels``) with a dynamic batch axis and output ``samples``.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import GanzooError
from .sampling import LoadedGenerator

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
EXAMPLE_BATCH = 4


class _Generator(nn.Module):
    """noise (and labels) -> samples in data units, for tracing."""

    def __init__(self, loaded: LoadedGenerator):
        super().__init__()
        self.loaded = loaded
        self.nets = loaded.nets  # registered, so tracing sees the parameters

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        loaded = self.loaded
        return loaded.spec.to_data_units(loaded.variant.generate(self.nets, z, labels))


def description(loaded: LoadedGenerator, fmt: str, z: torch.Tensor) -> dict[str, Any]:
    """What a user of the exported file needs to know to call it (``z``: example noise)."""
    spec, variant = loaded.spec, loaded.variant
    return {
        "format": fmt, "variant": variant.name, "step": loaded.step, "ema": loaded.ema,
        "latent_shape": list(z.shape[1:]), "latent_distribution": getattr(variant, "latent_distribution", "normal"),
        "conditional": variant.conditional, "num_classes": spec.num_classes if variant.conditional else None,
        "output_shape": list(spec.shape),
        "output_range": [-1.0, 1.0] if spec.is_image else None,
        "dataset": loaded.config.get("dataset"),
    }


def export(loaded: LoadedGenerator, out: Path, fmt: str) -> dict[str, Any]:
    """Write the generator of ``loaded`` to ``out`` in ``fmt``; returns the description."""
    if fmt not in FORMATS:
        raise GanzooError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    from .io import atomic_write
    from .ops.backend import use_backend

    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:  # torch's exporter needs it
        raise GanzooError("--format onnx needs the onnx package: pip install onnx")
    module = _Generator(loaded).eval()
    with torch.random.fork_rng():  # the caller's random stream is left alone
        torch.manual_seed(0)
        z = loaded.variant.latent(EXAMPLE_BATCH, torch.device("cpu"))
    info = description(loaded, fmt, z)
    labels = (torch.arange(EXAMPLE_BATCH) % loaded.spec.num_classes) if loaded.variant.conditional else None
    inputs = (z, labels) if labels is not None else (z,)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with use_backend("ref"), torch.no_grad():  # standard operators only: loadable without ganzoo
        if fmt == "torchscript":
            traced = torch.jit.trace(module, inputs, check_trace=False)
            extra = {"ganzoo.json": json.dumps(info)}
            atomic_write(out, lambda handle: torch.jit.save(traced, handle, _extra_files=extra))
        else:
            import io

            names = ["z", "labels"][:len(inputs)]
            buffer = io.BytesIO()
            torch.onnx.export(module, inputs, buffer, input_names=names, output_names=["samples"],
                              dynamic_axes={name: {0: "batch"} for name in [*names, "samples"]}, dynamo=False)
            import onnx

            model = onnx.load_from_string(buffer.getvalue())
            for key, value in info.items():
                entry = model.metadata_props.add()
                entry.key, entry.value = key, json.dumps(value)
            atomic_write(out, lambda handle: handle.write(model.SerializeToString()))
    return info
