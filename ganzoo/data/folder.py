"""Images from a folder: one subfolder per class, or a flat folder without labels.

Files are read in sorted order, decoded with Pillow, converted to RGB or
grayscale, resized so the short side is ``image_size`` and centre-cropped to a
square. Files that are not readable images are skipped with one warning that
counts them.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..env import env_number
from ..errors import GanzooError
from ..hookspecs import hookimpl
from .base import Batch, DataSpec
from .images import ImageFileDataset

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "scan_image_folder", "load_image_folder"]

#: File name endings taken as images (compared lower-case).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible_files(folder: Path, recursive: bool) -> list[Path]:
    """Non-hidden regular files under ``folder``, sorted by their relative path."""
    found: list[Path] = []
    if recursive:
        for current, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(current)
            found.extend(base / f for f in filenames if not f.startswith("."))
    else:
        found = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in found if p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(folder).parts)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise GanzooError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise GanzooError(f"{root} is not a folder (an image folder is needed)")


def _scan(root: Path) -> tuple[list[Path], list[int] | None, list[str], int, int]:
    """files, labels, classes, non-image files skipped, loose root images ignored."""
    _check_root(root)
    try:
        subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        class_files: list[tuple[str, list[Path]]] = []
        for sub in subfolders:
            inside = _visible_files(sub, recursive=True)
            if any(_is_image_name(p) for p in inside):
                class_files.append((sub.name, inside))
        loose = _visible_files(root, recursive=False)
    except OSError as error:
        raise GanzooError(f"cannot read image folder {root}: {error.strerror or error}") from None
    if class_files:
        files: list[Path] = []
        labels: list[int] = []
        skipped = 0
        for index, (_, inside) in enumerate(class_files):
            images = [p for p in inside if _is_image_name(p)]
            skipped += len(inside) - len(images)
            files.extend(images)
            labels.extend([index] * len(images))
        ignored = sum(1 for p in loose if _is_image_name(p))
        return files, labels, [name for name, _ in class_files], skipped, ignored
    images = [p for p in loose if _is_image_name(p)]
    return images, None, [], len(loose) - len(images), 0


def scan_image_folder(root: str | os.PathLike) -> tuple[list[Path], list[int] | None, list[str]]:
    """The image files under ``root`` in sorted order, their labels and the class names.

    Subfolders holding images are the classes (sorted by name; label = index),
    searched recursively; images lying directly in ``root`` beside them are
    ignored. With no such subfolder, the images directly in ``root`` are taken,
    unlabeled (labels None, no class names). Hidden files and folders are skipped.
    """
    files, labels, classes, _, _ = _scan(Path(root))
    return files, labels, classes


def _load_one(path: Path, image_size: int, mode: str) -> np.ndarray:
    """One file as uint8 ``(C, S, S)``: the centred square of side min(width, height),
    resized to ``image_size``.

    Only that square is resampled, straight to the output size: resizing the
    whole image first would make a 1 x 1,000,000 PNG (2 KB on disk) a
    64 x 64,000,000 intermediate of gigabytes. Pillow refuses images of more
    than ``Image.MAX_IMAGE_PIXELS`` x 2 pixels (a decompression bomb) at open.
    """
    with Image.open(path) as image:
        image.draft(mode, (image_size, image_size))  # JPEG: decode at a reduced scale when possible
        image = image.convert(mode)
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError("empty image")
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS, box=box)
    elif (width, height) != (side, side):
        image = image.crop(box)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        return array[None]
    return array.transpose(2, 0, 1)


def load_image_folder(
    root: str | os.PathLike, image_size: int, channels: int
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The images under ``root`` (see :func:`scan_image_folder`) as uint8 ``(N, C, S, S)``.

    Returns ``(images, labels, class_names)``: labels int64 ``(N,)`` or None.
    Unreadable files are skipped with a single warning counting them; a folder
    with no usable image is a :class:`GanzooError`.
    """
    root = Path(root)
    if channels not in (1, 3):
        raise GanzooError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    if not isinstance(image_size, int) or image_size < 1:
        raise GanzooError(f"image size must be a positive integer, not {image_size!r}")
    mode = "L" if channels == 1 else "RGB"
    files, labels, classes, skipped, ignored = _scan(root)
    total = len(files) + skipped
    images: list[np.ndarray] = []
    kept_labels: list[int] = []
    for i, path in enumerate(files):
        try:
            images.append(_load_one(path, image_size, mode))
        except Exception:  # noqa: BLE001 - a file Pillow cannot decode is skipped and counted
            skipped += 1
            continue
        if labels is not None:
            kept_labels.append(labels[i])
    notes = []
    if skipped:
        notes.append(f"skipped {skipped} of {total} files in {root} that are not readable images")
    if ignored:
        notes.append(f"ignored {ignored} images lying directly in {root} beside the class folders")
    if notes:
        warnings.warn("; ".join(notes), stacklevel=2)
    if not images:
        found = f"none of its {total} files is a readable image" if total else "it holds no image files"
        raise GanzooError(f"no usable images in {root}: {found} (expected images, or one subfolder of images per class)")
    data = np.stack(images)
    label_array = None if labels is None else np.asarray(kept_labels, dtype=np.int64)
    return data, label_array, classes


# -- the registered dataset ----------------------------------------------------
#: Folders whose decoded images would exceed this many bytes stream from disk
#: instead of being held in memory (override with GANZOO_IN_MEMORY_LIMIT_MB).
IN_MEMORY_LIMIT_MB = 4096


class ImageFolder(ImageFileDataset):
    """folder: any folder of images (``--dataset folder --data-dir PATH`` or ``folder:PATH``).

    Class subfolders become labels. Sets that fit in memory are decoded once
    and cached; larger ones stream through a DataLoader with worker processes.
    """

    name = "folder"
    description = "any folder of images (--data-dir PATH or folder:PATH); class subfolders become labels"
    spec = DataSpec(shape=(3, 64, 64), num_classes=None, size=None)
    split_sizes = {"train": 0}  # the real size is known once the folder is scanned
    cache_version = 2  # 2: the centred square is resampled directly (see _load_one)

    def __init__(self, seed: int = 0, data_dir: str | os.PathLike | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 split: str = "train", download: bool = True):
        if data_dir is None:
            raise GanzooError("dataset 'folder' needs a folder: --dataset folder --data-dir PATH, or folder:PATH")
        super().__init__(seed, data_dir, image_size, channels, split, download)
        self.files, self.file_labels, self.classes = scan_image_folder(self.data_dir)
        if not self.files:
            raise GanzooError(f"no image files in {self.data_dir} (expected images, or one subfolder of images per class)")
        self.spec = DataSpec((self.channels, self.image_size, self.image_size),
                             len(self.classes) if self.file_labels is not None else None, len(self.files))
        limit = env_number("GANZOO_IN_MEMORY_LIMIT_MB", IN_MEMORY_LIMIT_MB, minimum=0) * 2**20
        self.streaming = len(self.files) * self.channels * self.image_size**2 > limit
        self._loader_iter = None
        self._loader_batch = None

    def source_files(self) -> list[Path]:
        return self.files

    def read_source(self, files: list[Path]):
        images, labels, _ = load_image_folder(self.data_dir, self.image_size, self.channels)
        labels = labels if labels is not None else np.full(len(images), -1, dtype=np.int64)
        return torch.from_numpy(images), torch.from_numpy(labels)

    def load(self):
        images, labels = super().load()
        # -1 marks "no labels" inside the cache file (npz cannot hold None).
        return images, (None if self.file_labels is None else labels)

    def _prepare(self) -> None:
        if not self.streaming:
            super()._prepare()

    def __len__(self) -> int:
        return len(self.files) if self.streaming else super().__len__()

    # -- streaming ----------------------------------------------------------
    def _new_epoch(self, batch_size: int):
        files = _FolderFiles(self.files, self.file_labels, self.image_size, "L" if self.channels == 1 else "RGB")
        order = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=self.generator,
                                                                device=self.device).item()))
        workers = min(4, os.cpu_count() or 1)
        loader = torch.utils.data.DataLoader(files, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=workers, generator=order,
                                             pin_memory=self.device.type == "cuda",
                                             persistent_workers=False)
        self._loader_batch = batch_size
        return iter(loader)

    def sample(self, batch_size: int) -> Batch:
        if not self.streaming:
            return super().sample(batch_size)
        if self._loader_iter is None or self._loader_batch != batch_size:
            self._loader_iter = self._new_epoch(batch_size)
        try:
            images, labels = next(self._loader_iter)
        except StopIteration:
            self._loader_iter = self._new_epoch(batch_size)
            images, labels = next(self._loader_iter)
        images = images.to(self.device, non_blocking=True)
        labels = None if self.file_labels is None else labels.to(self.device, non_blocking=True)
        return Batch(self._scale(images), labels)

    def reference_sample(self, n: int) -> Batch:
        if not self.streaming:
            return super().reference_sample(n)
        pick = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(0x5EED))[:n]
        files = _FolderFiles(self.files, self.file_labels, self.image_size, "L" if self.channels == 1 else "RGB")
        items = [files[int(i)] for i in pick]
        images = torch.stack([img for img, _ in items]).to(self.device)
        labels = None if self.file_labels is None else torch.tensor([lab for _, lab in items], device=self.device)
        return Batch(self._scale(images), labels)


class _FolderFiles(torch.utils.data.Dataset):
    """Decodes one file per item in DataLoader workers; an unreadable file yields its neighbour."""

    def __init__(self, files, labels, image_size, mode):
        self.files, self.labels, self.image_size, self.mode = files, labels, image_size, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            try:
                image = _load_one(self.files[i], self.image_size, self.mode)
            except Exception:  # noqa: BLE001 - skipped like in the in-memory path
                continue
            return torch.from_numpy(image), (self.labels[i] if self.labels is not None else -1)
        raise GanzooError(f"no readable image among the {len(self.files)} files")


@hookimpl
def register_datasets(register):
    register(ImageFolder)
