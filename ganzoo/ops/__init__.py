"""Ops on the training hot path: gradient penalty (WGAN-GP, R1) and a fused LeakyReLU.

Each op has a plain-PyTorch reference and C++/CUDA kernels (``csrc/``), built
on first use; :mod:`ganzoo.ops.backend` chooses (``GANZOO_OPS=auto|native|ref``,
``ganzoo ops`` shows the choice). Importing this package compiles nothing.
"""
from ._build import FusedOpsWarning
from .backend import report as backend_report
from .backend import use_backend
from .fused_leaky_relu import FusedLeakyReLU, fused_leaky_relu, leaky_relu_ref
from .gradient_penalty import (
    gradient_norm_penalty,
    gradient_penalty,
    interpolate,
    per_sample_norm,
    r1_penalty,
)

__all__ = [
    "FusedLeakyReLU",
    "FusedOpsWarning",
    "backend_report",
    "fused_leaky_relu",
    "gradient_norm_penalty",
    "gradient_penalty",
    "interpolate",
    "leaky_relu_ref",
    "per_sample_norm",
    "r1_penalty",
    "use_backend",
]
