"""The feature network for image metrics: a small CNN trained once per dataset and cached.

There is no Inception network on these machines, so image quality is measured
in the feature space of a classifier trained on the dataset's own real training
split (``shared/QUALITY.md``). It is trained the first time a dataset is
evaluated, its test accuracy printed, and cached as

    cache_dir()/classifiers/NAME-KEY.pt

where KEY hashes the dataset's identity (name, shape, classes, split sizes and
where the test split comes from, and a SHA-256 of every byte of the train and
test images and labels: a changed file, preprocessing option or rendering gives
another key) and the training recipe (:class:`ClassifierRecipe`, including its
``version``, bumped whenever the architecture or training code changes). The
next evaluation of the same data loads it instead of training again.

Test splits: datasets with a ``"test"`` split (mnist, fashion-mnist, cifar10)
use it; ``digits`` renders a fresh set with another seed; any other labeled
image set holds out a fixed sixth of its examples (the classifier never trains
on them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import sys
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data.base import Dataset, InMemoryDataset, cache_dir
from ..errors import GanzooError
from ..progress import silenced, task
from ..io import atomic_torch_save

CACHE_FORMAT = 1


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the feature classifier is built and trained (part of the cache key).

    The default trains in about a minute on 2 CPU cores for MNIST-sized data.
    ``train_limit`` caps the training examples (for tests); ``test_limit`` the
    examples used to measure test accuracy (None: all).
    """

    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32  # channels of the first block; the others have 2x
    features: int = 128  # the penultimate layer: the feature space of the metrics
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    version: int = 1  # bump when FeatureClassifier or fit() changes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The recipe used when none is given (tests may monkeypatch a tiny one).
DEFAULT_RECIPE = ClassifierRecipe()


class FeatureClassifier(nn.Module):
    """Three conv3x3 blocks (pool after the first two), Linear(features)-ReLU, Linear(classes).

    Block: conv3x3 [-> maxpool 2] -> ReLU -> BatchNorm; widths w, 2w, 2w. Pooling
    before the activation keeps the full-resolution work to one thin conv, so
    training is CPU-cheap. Input: images in [-1, 1], (N, C, H, W), H, W >= 4.
    :meth:`embed` gives the penultimate features; :meth:`forward` the logits.
    """

    def __init__(self, shape: tuple[int, int, int], num_classes: int, width: int = 32, features: int = 128):
        super().__init__()
        channels, height, width_px = shape
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True), nn.BatchNorm2d(w),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True), nn.BatchNorm2d(2 * w),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(2 * w),
            nn.Flatten(),
        )
        flat = 2 * w * (height // 4) * (width_px // 4)
        self.embedding = nn.Sequential(nn.Linear(flat, features), nn.ReLU(inplace=True))
        self.head = nn.Linear(features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


# -- real data: train and test splits ----------------------------------------------
@dataclass
class RealSplits:
    """A labeled image dataset's real data as uint8 (N, C, H, W) and int64 labels, on the CPU."""

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    test_source: str  # "split", "rendered" or "holdout"
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for tensor in (self.train, self.train_labels, self.test, self.test_labels):
            tensor = tensor.contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()

    def identity(self) -> dict[str, Any]:
        return {"dataset": self.name, "shape": list(self.shape), "num_classes": self.num_classes,
                "train_size": int(self.train.shape[0]), "test_size": int(self.test.shape[0]),
                "test_source": self.test_source, "data_sha256": self.fingerprint()}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float in [-1, 1] (how datasets serve images); floats pass through."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


DIGITS_TEST_COUNT = 10_000


@functools.lru_cache(maxsize=2)
def _rendered_digits(count: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data.render_digits import render_digits

    with task(f"rendering {count:,} held-out digits (the classifier's test set)", count, unit="digit") as bar:
        images, labels = render_digits(count, seed, size, advance=bar.update)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def _in_memory(dataset: InMemoryDataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    if dataset.data is None:
        dataset.prepare("cpu")
    return dataset.data.cpu(), None if dataset.labels is None else dataset.labels.cpu()


def real_splits(dataset: Dataset) -> RealSplits:
    """The dataset's real training and test images (see the module docstring)."""
    spec = dataset.spec
    if not spec.is_image:
        raise GanzooError(f"dataset {dataset.name!r} is not an image dataset; image metrics need images")
    if not spec.labeled:
        raise GanzooError(f"dataset {dataset.name!r} has no labels: the image metrics need a classifier "
                          "trained on labeled real data (use a labeled dataset, e.g. digits or mnist)")
    if not isinstance(dataset, InMemoryDataset):
        raise GanzooError(f"dataset {dataset.name!r} is not held in memory; image metrics need a fixed real set")
    train, train_labels = _in_memory(dataset)
    if train.dtype != torch.uint8:
        raise GanzooError(f"dataset {dataset.name!r} does not hold uint8 images")
    split_sizes = getattr(type(dataset), "split_sizes", {}) or {}
    if "test" in split_sizes and getattr(dataset, "split", "train") != "test":
        test_set = type(dataset)(seed=0, data_dir=dataset.data_dir, image_size=dataset.image_size,
                                 channels=dataset.channels, split="test",
                                 download=getattr(dataset, "download", True))
        test, test_labels = _in_memory(test_set)
        source = "split"
    elif dataset.name == "digits" and hasattr(dataset, "data_seed"):
        # A fresh rendering with another seed: same distribution, no shared images.
        test, test_labels = _rendered_digits(DIGITS_TEST_COUNT, int(dataset.data_seed) + 1, int(train.shape[-1]))
        if test.shape[1:] != train.shape[1:]:
            raise GanzooError("rendered digits test set does not match the training images' shape")
        source = "rendered"
    else:
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(train.shape[0], generator=g)
        held = max(1, train.shape[0] // 6)
        test, test_labels = train[order[-held:]], train_labels[order[-held:]]
        train, train_labels = train[order[:-held]], train_labels[order[:-held]]
        source = "holdout"
    return RealSplits(dataset.name, train, train_labels, test, test_labels, source, int(spec.num_classes))


# -- training and the cache -------------------------------------------------------------
@dataclass
class TrainedClassifier:
    model: FeatureClassifier
    key: str
    path: Path
    test_accuracy: float
    train_seconds: float
    trained: bool  # True: trained in this call; False: loaded from the cache
    recipe: ClassifierRecipe

    def summary(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "test_accuracy": self.test_accuracy,
                "train_seconds": round(self.train_seconds, 1), "trained_now": self.trained,
                "recipe": self.recipe.to_dict()}


def classifier_key(splits: RealSplits, recipe: ClassifierRecipe) -> str:
    blob = json.dumps({"identity": splits.identity(), "recipe": recipe.to_dict(), "format": CACHE_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def classifier_path(name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir() / "classifiers" / f"{safe}-{key}.pt"


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch), labels.split(batch)):
        correct += int((model(to_unit_range(x).to(device)).argmax(1).cpu() == y).sum())
    return correct / max(1, images.shape[0])


def batch_plan(available: int, recipe: ClassifierRecipe) -> tuple[int, int, int]:
    """(training images used, batch size, batches per epoch) of ``recipe`` on ``available`` images."""
    n = available if recipe.train_limit is None else min(recipe.train_limit, available)
    batch = min(recipe.batch_size, n)
    return n, batch, max(1, n // batch)


def fit(splits: RealSplits, recipe: ClassifierRecipe, device, log: Callable[[str], None],
        advance: Callable[[int], None] | None = None) -> FeatureClassifier:
    """Train a FeatureClassifier on the train split (Adam, linear lr decay to 0);
    ``advance(1)`` after every batch (a progress bar)."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # leave the caller's random stream alone
        torch.manual_seed(recipe.seed)
        model = FeatureClassifier(splits.shape, splits.num_classes, recipe.width, recipe.features).to(device)
        train, labels = splits.train, splits.train_labels
        n, batch, per_epoch = batch_plan(train.shape[0], recipe)
        train, labels = train[:n], labels[:n]
        total = per_epoch * recipe.epochs
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
        g = torch.Generator().manual_seed(recipe.seed)
        step = 0
        for epoch in range(recipe.epochs):
            model.train()
            order = torch.randperm(n, generator=g)
            running = 0.0
            for i in range(per_epoch):
                index = order[i * batch:(i + 1) * batch]
                x = to_unit_range(train[index]).to(device)
                y = labels[index].to(device)
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                running += loss.item()
                step += 1
                if advance is not None:
                    advance(1)
            log(f"  epoch {epoch + 1}/{recipe.epochs}: train loss {running / per_epoch:.4f}")
    model.eval()
    return model


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_cached(path: Path, key: str, splits: RealSplits, recipe: ClassifierRecipe, device):
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        if payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
            return None
        model = FeatureClassifier(splits.shape, splits.num_classes, recipe.width, recipe.features).to(device)
        model.load_state_dict(payload["state_dict"])
    except Exception:  # a damaged or foreign file is simply trained again
        return None
    model.eval()
    return TrainedClassifier(model, key, path, float(payload["test_accuracy"]), float(payload["train_seconds"]),
                             False, recipe)


_MEMO: "weakref.WeakKeyDictionary[Dataset, dict]" = weakref.WeakKeyDictionary()


def get_classifier(dataset: Dataset, recipe: ClassifierRecipe | None = None, device: str | torch.device = "cpu",
                   log: Callable[[str], None] | None = _stderr,
                   splits: RealSplits | None = None) -> TrainedClassifier:
    """The cached classifier for ``dataset``'s real data, trained (and cached) if missing.

    Prints the test accuracy when it trains (through ``log``; None: silent).
    """
    recipe = recipe or DEFAULT_RECIPE
    quiet = log is None
    log = log or (lambda message: None)
    device = torch.device(device)
    memo = _MEMO.setdefault(dataset, {}) if _weakrefable(dataset) else {}
    if (recipe, device) in memo:
        return dataclasses.replace(memo[(recipe, device)], trained=False)
    splits = splits or real_splits(dataset)
    key = classifier_key(splits, recipe)
    path = classifier_path(splits.name, key)
    found = _load_cached(path, key, splits, recipe, device) if path.exists() else None
    if found is None:
        n_train, _, per_epoch = batch_plan(splits.train.shape[0], recipe)
        batches = per_epoch * recipe.epochs
        start = time.perf_counter()
        # One-off work, shown as such (silenced with the caller's log).
        with silenced() if quiet else contextlib.nullcontext(), \
                task(f"training the {splits.name} feature classifier for the metrics ({n_train:,} images, "
                     f"{recipe.epochs} epochs; once, cached as {path})", batches, unit="batch") as bar:
            model = fit(splits, recipe, device, log, advance=bar.update)
        seconds = time.perf_counter() - start
        test, test_labels = splits.test, splits.test_labels
        if recipe.test_limit is not None:
            test, test_labels = test[:recipe.test_limit], test_labels[:recipe.test_limit]
        acc = accuracy(model, test, test_labels, device)
        log(f"{splits.name} classifier: test accuracy {100 * acc:.2f}% on {test.shape[0]:,} "
            f"{splits.test_source} test images, trained in {seconds:.0f} s")
        payload = {"format": CACHE_FORMAT, "key": key, "identity": splits.identity(), "recipe": recipe.to_dict(),
                   "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                   "test_accuracy": acc, "train_seconds": seconds,
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(path, payload)
        except OSError as exc:
            log(f"warning: could not cache the classifier at {path}: {exc}")
        found = TrainedClassifier(model, key, path, acc, seconds, True, recipe)
    memo[(recipe, device)] = found
    return found


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False
