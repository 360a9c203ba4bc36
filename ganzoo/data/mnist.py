"""mnist and fashion-mnist: the canonical IDX files, verified by MD5.

Files are read from the data folder (``.gz`` or uncompressed, see
:mod:`ganzoo.data.images` for where that is) and downloaded from the canonical
mirrors when missing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..hookspecs import hookimpl
from .base import DataSpec
from .download import FASHION_MNIST_FILES, MNIST_FILES, RemoteFile, ensure_files, verify_file
from .idx import find_idx_file, read_idx_images_labels
from .images import ImageFileDataset

_SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class IdxDataset(ImageFileDataset):
    """An MNIST-format dataset: four IDX files, 28x28 grayscale, 10 classes."""

    remote_files: tuple[RemoteFile, ...] = ()
    split_sizes = {"train": 60_000, "test": 10_000}

    def source_files(self) -> list[Path]:
        names = _SPLIT_FILES[self.split]
        found = [find_idx_file(self.data_dir, name) for name in names]
        published = {f.name: f for f in self.remote_files}
        for path in found:
            # A present .gz must carry its published MD5 (checked once, remembered); an
            # uncompressed twin has no published checksum and is checked by its header and shape.
            if path is not None and path.name in published:
                verify_file(published[path.name], path, dataset=self.name)
        if any(path is None for path in found):
            # Uncompressed twins count as present; only fetch what is really missing.
            wanted = [f for f in self.remote_files if f.name in names]
            fetched = ensure_files(wanted, self.data_dir, dataset=self.name, download=self.download)
            found = [path or fetched[name] for path, name in zip(found, names)]
        return found

    def read_source(self, files: list[Path]):
        # The expected shape is checked in the headers, before a byte of data is allocated.
        images, labels = read_idx_images_labels(files[0], files[1], num_classes=10,
                                                image_dims=(self.split_sizes[self.split], 28, 28))
        return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


class MNIST(IdxDataset):
    name = "mnist"
    description = "MNIST handwritten digits (LeCun & Cortes; CC BY-SA 3.0), 60,000 train images"
    spec = DataSpec(shape=(1, 28, 28), num_classes=10, size=60_000)
    remote_files = MNIST_FILES


class FashionMNIST(IdxDataset):
    name = "fashion-mnist"
    description = "Fashion-MNIST clothing images (Zalando; MIT), 60,000 train images"
    spec = DataSpec(shape=(1, 28, 28), num_classes=10, size=60_000)
    remote_files = FASHION_MNIST_FILES


@hookimpl
def register_datasets(register):
    register(MNIST)
    register(FashionMNIST)
