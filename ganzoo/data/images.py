"""Real image datasets: where their files live, preprocessing and the decode cache.

Data folders: ``--data-dir DIR`` names the dataset's own folder (it must
exist); without it, files live in ``$GANZOO_DATA/NAME`` or, when that variable
is unset, ``~/.cache/ganzoo/data/NAME`` (created on first download).

Decoded images are cached as one ``.npz`` of uint8 beside the source (in
``DIR/.ganzoo-cache/``; the user cache folder when DIR is read-only), named
with a hash of the source files (names, sizes, times) and the preprocessing,
so a changed source or setting never reads a stale cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import GanzooError
from ..io import load_npz, save_npz
from .base import DataSpec, InMemoryDataset, cache_dir

DATA_ENV = "GANZOO_DATA"


def default_data_root() -> Path:
    """$GANZOO_DATA, else ~/.cache/ganzoo/data: a root holding one folder per dataset."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path.home() / ".cache" / "ganzoo" / "data"


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder holding dataset ``name``'s files (see the module docstring)."""
    if data_dir is None:
        return default_data_root() / name
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise GanzooError(f"--data-dir {folder} does not exist; create it or point it at the {name} files")
    if not folder.is_dir():
        raise GanzooError(f"--data-dir {folder} is not a folder")
    return folder


def preprocess(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size).

    Channels: grayscale is repeated to RGB; RGB becomes luma (ITU-R 601).
    Size: the short side is resized to ``size`` (antialiased bilinear), then
    centre-cropped. Done once at load time, in chunks to bound memory.
    """
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images.contiguous()
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    chunks = []
    for chunk in images.split(4096):
        resized = torch.nn.functional.interpolate(chunk.float(), size=(new_h, new_w), mode="bilinear",
                                                  antialias=True, align_corners=False)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        chunks.append(resized[:, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks)


def fingerprint(paths: list[Path], settings: dict[str, Any]) -> str:
    """A short hash of source files (name, size, mtime) and preprocessing settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(paths):
        stat = path.stat()
        # The full path: a file moved to another class folder changes its label.
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _folder_is_writable(folder: Path) -> bool:
    """Writable, and not marked read-only: root may write anywhere, but a folder
    whose mode has no write bit is someone's read-only copy and stays untouched."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


class ImageFileDataset(InMemoryDataset):
    """A labeled image set read from files, preprocessed once and cached.

    Subclasses set ``name``, ``description``, ``spec`` (native shape, classes,
    train size) and implement :meth:`source_files` and :meth:`read_source`.
    """

    spec: ClassVar[DataSpec]
    #: "train" for training; "test" is used by evaluation.
    split_sizes: ClassVar[dict[str, int]] = {}
    #: Part of the decode cache's name: raise it when the preprocessing changes.
    cache_version: ClassVar[int] = 1

    def __init__(self, seed: int = 0, data_dir: str | os.PathLike | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 split: str = "train", download: bool = True):
        super().__init__(seed)
        native = type(self).spec
        self.channels = channels or native.shape[0]
        self.image_size = image_size or native.shape[1]
        if self.channels not in (1, 3):
            raise GanzooError(f"--channels must be 1 or 3, got {self.channels}")
        if self.image_size < 8:
            raise GanzooError(f"--image-size must be at least 8, got {self.image_size}")
        if split not in self.split_sizes:
            raise GanzooError(f"dataset {self.name!r} has no split {split!r}; use {', '.join(self.split_sizes)}")
        self.split = split
        self.download = download
        self.data_dir = resolve_data_dir(self.name, data_dir)
        self.spec = DataSpec((self.channels, self.image_size, self.image_size),
                             native.num_classes, self.split_sizes[split])

    # -- what a subclass provides -------------------------------------------
    def source_files(self) -> list[Path]:
        """Ensure the source files are present (downloading if allowed); return them."""
        raise NotImplementedError

    def read_source(self, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode the split: uint8 (N, C, H, W) at the native shape, labels (N,) int64."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------
    def _cache_paths(self, files: list[Path]) -> list[Path]:
        settings = {"dataset": self.name, "split": self.split, "channels": self.channels,
                    "size": self.image_size, "version": self.cache_version}
        name = f"{self.name}-{self.split}-{self.channels}x{self.image_size}-{fingerprint(files, settings)}.npz"
        beside = [self.data_dir / ".ganzoo-cache" / name] if _folder_is_writable(self.data_dir) else []
        return beside + [cache_dir() / "decoded" / name]

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self._load_cached()
        self.spec = dataclasses.replace(self.spec, size=int(images.shape[0]))
        return images, labels

    def _load_cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        files = self.source_files()
        candidates = self._cache_paths(files)
        for path in candidates:
            cached = load_npz(path, "images", "labels")
            if cached is not None:
                return torch.from_numpy(cached[0]), torch.from_numpy(cached[1])
        images, labels = self.read_source(files)
        images = preprocess(images, self.channels, self.image_size)
        for path in candidates:  # beside the source if writable, else the user cache
            if save_npz(path, images=images.numpy(), labels=labels.numpy()):
                break
        return images, labels
