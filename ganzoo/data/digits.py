"""digits: labeled 28x28 grayscale digits rendered with Pillow (no download).

Stroke templates with random affine jitter, stroke width and blur (see
:mod:`ganzoo.data.render_digits`). The set is deterministic and rendered once,
then cached as ``.npz`` under :func:`~ganzoo.data.base.cache_dir`.
"""
from __future__ import annotations

import torch

from ..hookspecs import hookimpl
from ..io import load_npz, save_npz
from ..progress import task
from .base import DataSpec, InMemoryDataset, cache_dir
from .render_digits import DIGITS_VERSION, render_digits


class Digits(InMemoryDataset):
    name = "digits"
    description = "rendered 28x28 grayscale digits 0-9 with affine, stroke and blur jitter; labeled"
    count = 20_000
    data_seed = 2026  # fixed: the data is the same for every run
    spec = DataSpec(shape=(1, 28, 28), num_classes=10, size=count)

    def cache_path(self):
        return cache_dir() / f"digits-v{DIGITS_VERSION}-n{self.count}-s{self.data_seed}-28.npz"

    def load(self):
        path = self.cache_path()
        cached = load_npz(path, "images", "labels")
        if cached is not None and cached[0].shape == (self.count, 28, 28):
            images, labels = cached
        else:
            with task(f"rendering the {self.count:,} digits (once; cached in {path})", self.count,
                      unit="digit") as bar:
                images, labels = render_digits(self.count, self.data_seed, 28, advance=bar.update)
            save_npz(path, images=images, labels=labels)  # unwritable: re-rendered next time
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


@hookimpl
def register_datasets(register):
    register(Digits)
