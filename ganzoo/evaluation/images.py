"""Image metrics in the feature space of the dataset's classifier (see :mod:`.classifier`).

* :func:`frechet_distance`: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  between Gaussian fits of two feature sets (FID's formula; needs n >= 2).
* :func:`kernel_inception_distance`: unbiased MMD^2 with the cubic polynomial
  kernel ``(x.y / d + 1)^3``, averaged over random subsets of min(1000, n/2)
  (Bińkowski et al. 2018; needs n >= 2), reported with its standard deviation
  over subsets. It can be slightly negative when the sets match.

FD and KID are in the units of this classifier's features: compare them
between runs on the same dataset (the same cached classifier), never with
Inception-based FID/KID figures from papers.
* :func:`precision_recall`: k-NN precision and recall (Kynkäänniemi et al.
  2019): precision is the fraction of generated samples inside the real
  manifold (within the k-th nearest-neighbour radius of some real sample),
  recall the fraction of real samples inside the generated manifold; k = 3,
  so each set needs more than k points.
* :func:`class_statistics`: the fraction of samples the classifier labels with
  confidence >= 0.9, the class histogram, the number of classes present and
  the largest class share (mode collapse shows as missing classes or one
  large share); with ``labels``: the accuracy on samples drawn for each
  requested label (conditional variants).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GanzooError
from .classifier import RealSplits, TrainedClassifier, to_unit_range

K_NEAREST = 3
CONFIDENCE = 0.9
KID_SUBSETS = 50
KID_SUBSET_SIZE = 1000

#: The smallest n each image metric accepts (per set).
MIN_N = {"frechet_distance": 2, "kid": 2, "precision_recall": K_NEAREST + 1}


def check_n(n: int, k: int = K_NEAREST) -> None:
    """GanzooError naming the metrics ``n`` is too small for."""
    needs = {"Fréchet distance (FD)": 2, "KID": 2, f"precision/recall (k={k})": k + 1}
    short = [f"{name} needs n >= {least}" for name, least in needs.items() if n < least]
    if short:
        raise GanzooError(f"--n {n} is too small for the image metrics: {'; '.join(short)}")


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, device, batch: int = 500
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, F), softmax probabilities (N, classes)) as float64 on the CPU.

    images: uint8 (0..255) or float in [-1, 1], (N, C, H, W).
    """
    model.eval()
    features, probs = [], []
    for chunk in images.split(batch):
        x = to_unit_range(chunk).to(device)
        if x.dtype != torch.float32:
            x = x.float()
        f = model.embed(x)
        features.append(f.double().cpu())
        probs.append(torch.softmax(model.head(f), dim=1).double().cpu())
    return torch.cat(features), torch.cat(probs)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of feature sets x (N, F) and y (M, F); 0 for x == y."""
    x, y = x.double(), y.double()
    if min(x.shape[0], y.shape[0]) < 2:
        raise GanzooError(f"Fréchet distance needs at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    root_x = _sqrt_psd(cov_x)
    middle = root_x @ cov_y @ root_x
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu_x - mu_y).square().sum() + cov_x.trace() + cov_y.trace() - 2 * trace_sqrt
    return float(value.clamp_min(0))


def polynomial_mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD^2 between feature sets a (m, d) and b (m, d) with the kernel (x.y / d + 1)^3."""
    a, b = a.double(), b.double()
    m, d = a.shape
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * kxy.mean())


def kernel_inception_distance(x: torch.Tensor, y: torch.Tensor, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over subsets of the unbiased MMD^2 with kernel (x.y/d + 1)^3."""
    x, y = x.double(), y.double()
    smaller = min(x.shape[0], y.shape[0])
    # Subsets of at most half the smaller set, so their spread means something.
    m = min(subset_size, max(2, smaller // 2))
    if smaller < 2:
        raise GanzooError(f"KID needs at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = x[torch.randperm(x.shape[0], generator=g)[:m]]
        b = y[torch.randperm(y.shape[0], generator=g)[:m]]
        values.append(polynomial_mmd2(a, b))
    values_t = torch.tensor(values, dtype=torch.float64)
    return float(values_t.mean()), float(values_t.std()) if len(values) > 1 else 0.0


def _kth_radius(points: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point."""
    radii = []
    for part in points.split(chunk):
        distances = torch.cdist(part, points)
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0: the point itself
    return torch.cat(radii)


def _inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    hits = []
    for part in queries.split(chunk):
        hits.append((torch.cdist(part, points) <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K_NEAREST) -> tuple[float, float]:
    """k-NN precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real``."""
    if min(real.shape[0], fake.shape[0]) <= k:
        raise GanzooError(f"precision/recall with k={k} needs more than {k} samples per set, "
                          f"got {real.shape[0]} and {fake.shape[0]}")
    real, fake = real.float(), fake.float()
    precision = _inside(fake, real, _kth_radius(real, k)).double().mean()
    recall = _inside(real, fake, _kth_radius(fake, k)).double().mean()
    return float(precision), float(recall)


def class_statistics(probs: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
    """Confidence, class histogram and (with requested ``labels``) label accuracy."""
    classes = probs.shape[1]
    confidence, predicted = probs.max(dim=1)
    histogram = torch.bincount(predicted, minlength=classes)
    n = probs.shape[0]
    stats: dict[str, Any] = {
        "confident_fraction": float((confidence >= CONFIDENCE).double().mean()),
        "classes_present": int((histogram > 0).sum()),
        "num_classes": classes,
        "largest_class_share": float(histogram.max()) / n,
        "class_histogram": [int(c) for c in histogram],
    }
    if labels is not None:
        labels = labels.cpu()
        correct = predicted == labels
        stats["label_accuracy"] = float(correct.double().mean())
        stats["label_accuracy_per_class"] = [
            float(correct[labels == c].double().mean()) if bool((labels == c).any()) else math.nan
            for c in range(classes)
        ]
    return stats


@dataclass
class ImageReference:
    """The classifier and the real test features a generated set is compared with."""

    classifier: TrainedClassifier
    splits: RealSplits
    features: torch.Tensor  # (n_ref, F) real test features
    device: Any

    def metrics(self, features: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor | None = None,
                k: int = K_NEAREST) -> dict[str, Any]:
        """Every image metric of a set against the real test features."""
        kid, kid_std = kernel_inception_distance(features, self.features)
        precision, recall = precision_recall(self.features, features, k)
        return {"frechet_distance": frechet_distance(features, self.features), "kid": kid, "kid_std": kid_std,
                "precision": precision, "recall": recall, **class_statistics(probs, labels)}

    def floor(self, n: int, k: int = K_NEAREST, conditional: bool = False, seed: int = 1) -> dict[str, Any]:
        """The same numbers for n real training images (the best a generator can hope for)."""
        g = torch.Generator().manual_seed(seed)
        index = torch.randperm(self.splits.train.shape[0], generator=g)[:n]
        features, probs = embed(self.classifier.model, self.splits.train[index], self.device)
        labels = self.splits.train_labels[index] if conditional else None
        return self.metrics(features, probs, labels, k)


def image_reference(classifier: TrainedClassifier, splits: RealSplits, n: int, device, seed: int = 0
                    ) -> ImageReference:
    """Embed a fixed random subset of min(n, test size) real test images."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(splits.test.shape[0], generator=g)[:n]
    features, _ = embed(classifier.model, splits.test[index], device)
    return ImageReference(classifier, splits, features, device)
