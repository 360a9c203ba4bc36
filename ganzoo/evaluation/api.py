"""``ganzoo.evaluation.evaluate``: quality metrics for a run, chosen by its data.

* 2-D mixtures (``8gaussians``, ``25gaussians``, ``ring``, ``grid``, any
  dataset with ``modes()``): modes captured, percent high-quality samples and
  reverse KL by the PacGAN/VEEGAN protocol (:mod:`.modes`, 2500 samples by
  default), plus energy distance and sliced Wasserstein against held-out real
  points (:mod:`.distance`); conditional variants: the fraction of samples
  whose nearest mode is the requested label.
* Other 2-D data (``swissroll``): the two distances.
* Labeled images: the classifier-feature metrics of :mod:`.images`.

Every result has a ``floor``: the same numbers for real data (a second
held-out real set for 2-D data; n real training images against the real test
split for images).
"""
from __future__ import annotations

import json
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..data.base import Dataset
from ..errors import GanzooError
from ..io import atomic_write
from . import classifier as _classifier
from .classifier import ClassifierRecipe, get_classifier, real_splits, to_unit_range
from .distance import energy_distance, sliced_wasserstein
from .images import K_NEAREST, check_n, embed, image_reference
from .modes import PROTOCOL_SAMPLES, dataset_modes, mode_metrics

#: Default sample counts: the PacGAN protocol for 2-D data; 5000 images.
DEFAULT_N_VECTOR = PROTOCOL_SAMPLES
DEFAULT_N_IMAGE = 5000
EVAL_FILE = "eval.json"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_n(spec) -> int:
    return DEFAULT_N_IMAGE if spec.is_image else DEFAULT_N_VECTOR


def check_sample_count(n: int, spec, conditional: bool = False) -> None:
    """GanzooError naming each metric that ``n`` is too small for."""
    if spec.is_image:
        check_n(n)
        return
    short = []
    if n < 2:
        short.append("energy distance and sliced Wasserstein need n >= 2")
    if conditional and spec.num_classes and n < spec.num_classes:
        short.append(f"label accuracy needs n >= {spec.num_classes} (one sample per class)")
    if n < 1:
        short.append("mode metrics need n >= 1")
    if short:
        raise GanzooError(f"--n {n} is too small: {'; '.join(short)}")


def check_evaluable(spec, conditional: bool, n: int, dataset_name: str = "the dataset") -> None:
    """Every check evaluation makes before sampling, for a spec: the trainer can call
    this before training with ``--eval-every`` so a bad setup fails at once."""
    check_sample_count(n, spec, conditional)
    if conditional and not spec.labeled:
        raise GanzooError(f"{dataset_name} has no labels: the conditional metrics (label accuracy) need labels")
    if spec.is_image and not spec.labeled:
        raise GanzooError(f"{dataset_name} has no labels: the image metrics need a classifier trained on "
                          "labeled real data")
    if not spec.is_image and len(spec.shape) != 1:
        raise GanzooError(f"no metrics for data of shape {list(spec.shape)} (expected vectors or images)")


def check_eval_options(variant, options: dict | None) -> dict:
    """The sampling options of an evaluation (``ganzoo eval --truncation PSI``, ``--stage N``):
    ``options`` without its None values, each one the variant lists in ``sampling_options``,
    else a one-line error. ``style_mix`` is refused: it draws a grid, not independent samples."""
    from ..sampling import check_sampling_options

    options = {key: value for key, value in (options or {}).items() if value is not None}
    if "style_mix" in options:
        raise GanzooError("--style-mix draws a style-mixing grid, not independent samples: it is for "
                          "`ganzoo sample`, not evaluation")
    return check_sampling_options(variant, options)


def eval_file_name(step: int | None = None, options: dict | None = None, stem: str = "eval") -> str:
    """The file an evaluation writes into the run directory: ``eval.json`` for a run directory,
    ``eval-step-NNNNNNN.json`` for one checkpoint (``step``), with the sampling options named as
    ``ganzoo sample`` names its files (``eval-truncation0.7.json``), so none overwrites another."""
    from ..sampling import option_file_parts

    parts = [stem] + ([f"step-{step:07d}"] if step is not None else [])
    return "-".join(parts + option_file_parts(options)) + ".json"


def _check_option_values(variant, nets: nn.ModuleDict, spec, options: dict, device) -> None:
    """One sample drawn with ``options``: the variant checks their values (psi in (0, 1], a stage
    not trained yet) before anything slow (the classifier, the real reference) is built."""
    if options:
        generate_samples(variant, nets, spec, 1, device=device, options=options)


@torch.no_grad()
def generate_samples(variant, nets: nn.ModuleDict, spec, n: int, seed: int = 0, device=None,
                     chunk: int = 500, options: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples on the CPU (and their requested labels for conditional variants).

    Noise comes from a forked RNG seeded with ``seed``, so the caller's random
    stream (a training run's) is untouched; nets are in eval mode meanwhile.
    options: keyword options for ``generate`` that the variant lists in ``sampling_options``
    (e.g. ``{"truncation": 0.7}``; see :func:`check_eval_options`).
    """
    options = check_eval_options(variant, options)
    device = device or next(nets.parameters()).device
    device = torch.device(device)
    labels = None
    if variant.conditional:
        labels = torch.arange(n) % spec.num_classes
    was_training = nets.training
    nets.eval()
    parts = []
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.manual_seed(seed)
            for start in range(0, n, chunk):
                size = min(chunk, n - start)
                z = variant.latent(size, device)
                wanted = None if labels is None else labels[start:start + size].to(device)
                # In the data's own units (a --standardize run generates standardized points).
                parts.append(spec.to_data_units(variant.generate(nets, z, wanted, **options)).float().cpu())
    finally:
        nets.train(was_training)
    return torch.cat(parts), labels


# -- 2-D data ------------------------------------------------------------------------
def vector_reference(dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint held-out real sets of n points (the reference, and one for the floor)."""
    points = dataset.reference_sample(2 * n).real.detach().float().cpu()
    if points.shape[0] < 2 * n:
        half = points.shape[0] // 2
        return points[:half], points[half:2 * half]
    return points[:n], points[n:2 * n]


def vector_metrics(samples: torch.Tensor, dataset: Dataset, reference: torch.Tensor,
                   labels: torch.Tensor | None = None) -> dict[str, Any]:
    samples = samples.detach().float().cpu()
    metrics: dict[str, Any] = {}
    modes = dataset_modes(dataset)
    if modes is not None:
        centres, std = modes
        metrics.update(mode_metrics(samples, centres, std))
        if labels is not None:
            nearest = torch.cdist(samples.double(), centres.double()).argmin(dim=1)
            metrics["label_accuracy"] = float((nearest == labels.cpu()).double().mean())
    metrics["energy_distance"] = energy_distance(samples, reference)
    metrics["sliced_wasserstein"] = sliced_wasserstein(samples, reference)
    return metrics


# -- the datasets and their references, reused while training ------------------------
_REFERENCES: "weakref.WeakKeyDictionary[Dataset, dict]" = weakref.WeakKeyDictionary()


def _image_reference(dataset: Dataset, n: int, device, recipe: ClassifierRecipe | None, log):
    recipe = recipe or _classifier.DEFAULT_RECIPE
    memo = _REFERENCES.setdefault(dataset, {})
    key = ("image", n, str(device), recipe)
    if key not in memo:
        splits = real_splits(dataset)
        trained = get_classifier(dataset, recipe, device, log=log, splits=splits)
        memo[key] = image_reference(trained, splits, min(n, splits.test.shape[0]), device)
    return memo[key]


def _vector_reference(dataset: Dataset, n: int):
    memo = _REFERENCES.setdefault(dataset, {})
    key = ("vector", n)
    if key not in memo:
        memo[key] = vector_reference(dataset, n)
    return memo[key]


def translation_metrics(variant, nets: nn.ModuleDict, dataset: Dataset, n: int, *, device, k: int = K_NEAREST,
                        floor: bool = True, recipe: ClassifierRecipe | None = None,
                        log: Callable[[str], None] | None = _stderr, chunk: int = 500) -> dict[str, Any]:
    """A translation model (``variant.directions``) on a two-domain dataset, in both directions.

    Up to ``n`` held-out test images of the source domain are translated and scored in the
    target domain's classifier space against the target's real test images (FD, KID,
    precision, recall, class histogram), and by label preservation: ``label_accuracy``, how
    often the target classifier reads the source image's own label (domains whose classes mean
    the same, such as rendered and MNIST digits). Keys are prefixed ``a2b/`` and ``b2a/``.
    """
    domains = {"a": dataset.first, "b": dataset.second}
    metrics: dict[str, Any] = {}
    floors: dict[str, Any] = {}
    classifiers: dict[str, Any] = {}
    was_training = nets.training
    nets.eval()
    try:
        for direction in ("a2b", "b2a"):
            source, target = domains[direction[0]], domains[direction[2]]
            reference = _image_reference(target, n, device, recipe, log)
            splits = real_splits(source)
            count = min(n, splits.test.shape[0])
            with torch.no_grad():  # (not around _image_reference: it may train the classifier)
                translated = torch.cat([
                    variant.translate(nets, to_unit_range(part.to(device)), direction)
                    .clamp(-1, 1).cpu() for part in splits.test[:count].split(chunk)])
            features, probs = embed(reference.classifier.model, translated, device)
            scores = reference.metrics(features, probs, splits.test_labels[:count], k)
            metrics.update({f"{direction}/{key}": value for key, value in scores.items()})
            if floor:
                floors.update({f"{direction}/{key}": value
                               for key, value in reference.floor(count, k, conditional=True).items()})
            classifiers[direction[2]] = {**reference.classifier.summary(),
                                         "test_source": reference.splits.test_source}
    finally:
        nets.train(was_training)
    return {"metrics": metrics, "n_translated": count, **({"floor": floors} if floor else {}),
            "classifier": classifiers}


def compute_metrics(variant, nets: nn.ModuleDict, dataset: Dataset, n: int, *, seed: int = 0, device=None,
                    floor: bool = True, recipe: ClassifierRecipe | None = None, k: int = K_NEAREST,
                    log: Callable[[str], None] | None = _stderr, options: dict | None = None) -> dict[str, Any]:
    """The metrics of a generator on ``dataset`` (prepared), with the real floor if asked.

    options: sampling options for ``generate`` (e.g. ``{"truncation": 0.7}``; the variant must list
    each; not ``style_mix``), recorded in the result as ``sampling_options`` when given.
    """
    options = check_eval_options(variant, options)  # a translation model lists none: any option is refused
    spec = dataset.spec
    translation = bool(getattr(variant, "directions", ())) and spec.domains == 2
    if translation and options:
        raise GanzooError(f"variant {variant.name!r} translates images: sampling options do not apply")
    device = torch.device(device or next(nets.parameters()).device)
    check_sample_count(n, spec, variant.conditional)
    if variant.conditional and not spec.labeled:
        raise GanzooError(f"variant {variant.name!r} is conditional but dataset {dataset.name!r} has no labels: "
                          "the conditional metrics (label accuracy) need labels")
    _check_option_values(variant, nets, spec, options, device)
    result: dict[str, Any] = {"kind": "image" if spec.is_image else "vector", "n": n, "seed": seed}
    if options:
        result["sampling_options"] = options
    if translation:
        result["kind"] = "translation"
        result.update(translation_metrics(variant, nets, dataset, n, device=device, k=k, floor=floor,
                                          recipe=recipe, log=log))
    elif spec.is_image:
        reference = _image_reference(dataset, n, device, recipe, log)
        samples, labels = generate_samples(variant, nets, spec, n, seed, device, options=options)
        features, probs = embed(reference.classifier.model, samples, device)
        result["metrics"] = reference.metrics(features, probs, labels, k)
        result["n_real"] = int(reference.features.shape[0])
        if floor:
            result["floor"] = reference.floor(n, k, conditional=variant.conditional)
        result["classifier"] = reference.classifier.summary()
        result["classifier"]["test_source"] = reference.splits.test_source
    elif len(spec.shape) == 1:
        real, second = _vector_reference(dataset, n)
        samples, labels = generate_samples(variant, nets, spec, n, seed, device, options=options)
        result["metrics"] = vector_metrics(samples, dataset, real, labels)
        result["n_real"] = int(real.shape[0])
        if floor:
            # A second real set scored as if generated; its own labels play the requested ones.
            floor_labels = None
            if labels is not None and dataset_modes(dataset) is not None:
                centres, _ = dataset_modes(dataset)
                floor_labels = torch.cdist(second.double(), centres.double()).argmin(dim=1)
            result["floor"] = vector_metrics(second, dataset, real, floor_labels)
        if n != PROTOCOL_SAMPLES and dataset_modes(dataset) is not None:
            result["note"] = f"the PacGAN/VEEGAN protocol uses n = {PROTOCOL_SAMPLES}"
    else:
        raise GanzooError(f"no metrics for data of shape {list(spec.shape)} (expected 2-D points or images)")
    return result


# -- from a run directory or checkpoint ---------------------------------------------
def _resolve_device(device) -> torch.device:
    from ..trainer import resolve_device

    return resolve_device(str(device))


def run_dataset(config: dict[str, Any], spec, data_dir: str | Path | None = None) -> Dataset:
    """The dataset a run trained on (its config's options; ``data_dir`` where it lives now),
    checked to still have the run's shape ``spec``; not yet prepared."""
    from ..registry import create_dataset

    options = dict(config.get("dataset_options") or {})
    if data_dir is not None:
        options["data_dir"] = str(data_dir)
    dataset = create_dataset(config["dataset"], **options)
    if list(dataset.spec.shape) != list(spec.shape):
        raise GanzooError(f"dataset {config['dataset']!r} now has shape {list(dataset.spec.shape)}, "
                          f"the run was trained on {list(spec.shape)}")
    return dataset


def evaluate(path: str | Path, n: int | None = None, device: str | torch.device = "cpu", *,
             seed: int = 0, data_dir: str | Path | None = None, write: bool = True,
             recipe: ClassifierRecipe | None = None, floor: bool = True,
             log: Callable[[str], None] | None = _stderr, ema: bool = True,
             options: dict | None = None) -> dict[str, Any]:
    """Evaluate a run directory's newest checkpoint (or a checkpoint file).

    ema: score the EMA generator when the run has one (``--no-ema``: G itself).
    n: samples (default 2500 for 2-D data, 5000 for images). data_dir: where the
    run's dataset lives now (default: where it was trained from). options: sampling
    options for ``generate`` that the variant lists (``{"truncation": 0.7}``, ``{"stage": 1}``;
    not ``style_mix``, which draws a grid). Writes ``eval.json`` into the run directory
    (``eval-step-NNNNNNN.json`` for a checkpoint file; with options, their names added as
    ``ganzoo sample`` adds them: ``eval-truncation0.7.json``) unless ``write`` is False.
    Returns the result dict: ``metrics`` and ``floor`` (real data), plus the run's identity
    (and ``sampling_options`` when given).
    """
    from ..sampling import load_generator

    start = time.perf_counter()
    path = Path(path)
    device = _resolve_device(device)
    if n is not None and n <= 0:
        raise GanzooError(f"--n must be positive, got {n}")
    payload = load_checkpoint(path, map_location="cpu")  # clear errors for a missing or bad checkpoint
    checkpoint = Path(payload["path"])
    run_dir = checkpoint.parent.parent
    config = payload["config"]
    del payload
    loaded = load_generator(checkpoint, device, ema=ema)  # unknown variant: a GanzooError naming it
    spec = loaded.spec
    options = check_eval_options(loaded.variant, options)
    n = n if n is not None else default_n(spec)
    check_sample_count(n, spec, loaded.variant.conditional)
    _check_option_values(loaded.variant, loaded.nets, spec, options, device)  # before the dataset is prepared
    dataset = run_dataset(config, spec, data_dir)
    if loaded.variant.conditional and not dataset.spec.labeled:
        raise GanzooError(f"variant {loaded.variant.name!r} is conditional but dataset {dataset.name!r} "
                          "has no labels: the conditional metrics need labels")
    if spec.is_image and not dataset.spec.labeled:
        raise GanzooError(f"dataset {dataset.name!r} has no labels: the image metrics need a classifier "
                          "trained on labeled real data")
    dataset.prepare("cpu" if spec.is_image else device)
    result = {
        "run_dir": str(run_dir), "checkpoint": str(checkpoint), "step": loaded.step,
        "variant": config["variant"], "dataset": config["dataset"], "conditional": loaded.variant.conditional,
        "ema": loaded.ema,
        **compute_metrics(loaded.variant, loaded.nets, dataset, n, seed=seed, device=device, floor=floor,
                          recipe=recipe, log=log, options=options),
    }
    result["seconds"] = round(time.perf_counter() - start, 2)
    if write:
        name = eval_file_name(None if path.is_dir() else loaded.step, options)
        out = run_dir / name
        try:
            atomic_write(out, lambda handle: handle.write((json.dumps(result, indent=2) + "\n").encode()))
        except OSError as exc:
            raise GanzooError(f"cannot write {out}: {exc.strerror or exc}") from None
        result["written_to"] = str(out)
    return result


# -- during training -----------------------------------------------------------------
def flat_metrics(result: dict[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """The scalar metrics of a result as ``{prefix + name: float}`` (lists and counts of K dropped)."""
    flat = {}
    for key, value in result.get("metrics", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key in ("modes_total", "num_classes", "hq_samples"):
            continue
        flat[prefix + key] = float(value)
    return flat


def evaluate_during_training(run_dir, nets: nn.ModuleDict, variant, dataset: Dataset, n: int,
                             seed: int = 0, recipe: ClassifierRecipe | None = None) -> dict[str, float]:
    """Metrics for the trainer's ``--eval-every``: ``{NAME: value}`` scalars, no floor.

    The trainer logs them as ``eval/NAME`` in metrics.jsonl.

    The caller's random stream, the nets' train/eval mode and the dataset's
    batch stream are left as they were (the noise comes from a forked RNG, the
    real reference from the dataset's own reference generator), so a run with
    evaluation trains exactly as one without. Image datasets train their
    classifier on the first call (cached for later calls and runs). ``run_dir``
    is accepted for future use (nothing is written there: the trainer logs the
    result).
    """
    del run_dir
    result = compute_metrics(variant, nets, dataset, n, seed=seed, floor=False, recipe=recipe)
    return flat_metrics(result, prefix="")
