"""Quality metrics for trained runs: mode coverage for 2-D data, classifier-feature metrics for images.

::

    from ganzoo.evaluation import evaluate
    result = evaluate("runs/wgan-gp-grid", n=2500)   # also writes runs/wgan-gp-grid/eval.json
    result["metrics"]["modes"], result["floor"]["modes"]

Modules: :mod:`.modes` (PacGAN/VEEGAN modes, high-quality %, reverse KL),
:mod:`.distance` (energy distance, sliced Wasserstein), :mod:`.classifier` (the
cached feature classifier), :mod:`.images` (Fréchet distance, KID, k-NN
precision/recall, confidence, class histogram, label accuracy), :mod:`.api`
(:func:`evaluate`, :func:`evaluate_during_training`) and :mod:`.cli` (``ganzoo eval``).

Imports are lazy so that ``ganzoo --help`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate": "ganzoo.evaluation.api",
    "evaluate_during_training": "ganzoo.evaluation.api",
    "compute_metrics": "ganzoo.evaluation.api",
    "generate_samples": "ganzoo.evaluation.api",
    "flat_metrics": "ganzoo.evaluation.api",
    "check_evaluable": "ganzoo.evaluation.api",
    "mode_metrics": "ganzoo.evaluation.modes",
    "dataset_modes": "ganzoo.evaluation.modes",
    "reverse_kl": "ganzoo.evaluation.modes",
    "energy_distance": "ganzoo.evaluation.distance",
    "sliced_wasserstein": "ganzoo.evaluation.distance",
    "frechet_distance": "ganzoo.evaluation.images",
    "kernel_inception_distance": "ganzoo.evaluation.images",
    "precision_recall": "ganzoo.evaluation.images",
    "class_statistics": "ganzoo.evaluation.images",
    "ClassifierRecipe": "ganzoo.evaluation.classifier",
    "get_classifier": "ganzoo.evaluation.classifier",
    "real_splits": "ganzoo.evaluation.classifier",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ganzoo.evaluation' has no attribute {name!r}")
