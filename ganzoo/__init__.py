"""ganzoo: a zoo of GAN variants behind one plugin registry and one trainer.

Public API for users and plugin authors::

    import ganzoo
    ganzoo.list_variants()                      # ['cgan', 'dcgan', 'lsgan', 'vanilla', 'wgan-gp']
    result = ganzoo.train("wgan-gp", "digits", out="runs/demo", hparams={"steps": 100})
    images = ganzoo.sample("runs/demo", n=16)

    @ganzoo.hookimpl
    def register_variants(register):
        register(MyVariant)

Public modules besides these names: ``ganzoo.ops`` (fused LeakyReLU, gradient
penalty and R1), ``ganzoo.toolkit`` (the training features: EMA, schedules,
DiffAugment, packing, ...) and ``ganzoo.nets`` (the built-in networks).

Imports are lazy: ``import ganzoo`` loads neither torch-heavy modules nor plugins.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (light: pluggy only)

_EXPORTS = {
    "GanzooError": "ganzoo.errors",
    "UnknownNameError": "ganzoo.errors",
    "DuplicateNameError": "ganzoo.errors",
    "PluginError": "ganzoo.errors",
    "list_variants": "ganzoo.registry",
    "get_variant": "ganzoo.registry",
    "create_variant": "ganzoo.registry",
    "list_datasets": "ganzoo.registry",
    "get_dataset": "ganzoo.registry",
    "create_dataset": "ganzoo.registry",
    "plugin_failures": "ganzoo.registry",
    "list_loggers": "ganzoo.registry",
    "create_logger": "ganzoo.registry",
    "Observer": "ganzoo.events",
    "Variant": "ganzoo.variant",
    "Phase": "ganzoo.variant",
    "TrainState": "ganzoo.variant",
    "TwoPlayerVariant": "ganzoo.variants.base",
    "BCELossMixin": "ganzoo.variants.base",
    "Dataset": "ganzoo.data.base",
    "InMemoryDataset": "ganzoo.data.base",
    "SampledDataset": "ganzoo.data.base",
    "DataSpec": "ganzoo.data.base",
    "Batch": "ganzoo.data.base",
    "train": "ganzoo.runs",
    "TrainOptions": "ganzoo.trainer",
    "sample": "ganzoo.sampling",
    "load_generator": "ganzoo.sampling",
    "evaluate": "ganzoo.evaluation.api",
    "check_variant": "ganzoo.testing",
}

__all__ = ["__version__", "hookimpl", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ganzoo' has no attribute {name!r}")
