"""CIFAR-10 from its python archive: a safe tar extraction and a safe unpickler.

The archive holds pickled batches. Unpickling runs whatever callables a pickle
names, so the batches are read with an unpickler that only resolves what a
numpy array needs; anything else is refused. The archive is extracted member by
member after every name and type is checked, into a temporary folder that is
renamed into place at the end, so a bad archive leaves nothing behind.
"""
from __future__ import annotations

import codecs
import gzip
import lzma
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import GanzooError
from ..hookspecs import hookimpl
from .base import DataSpec
from .download import CIFAR10_FILES, ensure_files
from .images import ImageFileDataset

__all__ = ["CIFAR10", "CIFAR10_FOLDER", "safe_extract_tar", "load_cifar10"]

CIFAR10_FOLDER = "cifar-10-batches-py"
_SPLITS = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CORRUPT_TAR = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def _member_problem(member: tarfile.TarInfo, prefix: str) -> str | None:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in path.parts or ".." in name.replace("\\", "/").split("/"):
        return "contains '..'"
    if member.issym() or member.islnk():
        return "is a link"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder (device, fifo or other special file)"
    clean = "/".join(part for part in path.parts if part != ".")
    if not (clean + ("/" if member.isdir() else "")).startswith(prefix) and clean != prefix.rstrip("/"):
        return f"lies outside {prefix}"
    return None


def safe_extract_tar(archive: str | os.PathLike, dest: str | os.PathLike, allowed_prefix: str) -> list[Path]:
    """Extract the regular files and folders of ``archive`` under ``dest``; return the files.

    Every member must be a relative path without ``..``, a regular file or
    folder (no links or devices), and lie under ``allowed_prefix`` (e.g.
    ``"cifar-10-batches-py/"``); otherwise nothing is written. Extraction goes
    to a temporary folder inside ``dest`` that is renamed into place at the end
    (replacing an older copy), so an error leaves nothing half-extracted.
    """
    archive, dest = Path(archive), Path(dest)
    prefix = allowed_prefix.strip("/") + "/"
    top = prefix.split("/")[0]
    if not top or top in (".", ".."):
        raise ValueError(f"allowed_prefix must name a folder, not {allowed_prefix!r}")
    if not archive.is_file():
        raise GanzooError(f"{archive}: archive not found")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole archive: truncation shows up here
            for member in members:
                problem = _member_problem(member, prefix)
                if problem:
                    raise GanzooError(f"{archive}: refusing to extract: member {member.name!r} {problem}")
            if not any(m.isfile() for m in members):
                raise GanzooError(f"{archive}: no files under {prefix} in the archive")
            try:
                dest.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{top}.extract-"))
            except OSError as error:
                raise GanzooError(f"cannot write into {dest}: {error.strerror or error}") from None
            try:
                relative: list[Path] = []
                for member in members:
                    rel = Path(*[p for p in PurePosixPath(member.name).parts if p != "."])
                    target = staging / rel
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    if source is None:  # pragma: no cover - regular files always have data
                        raise GanzooError(f"{archive}: cannot read member {member.name!r}")
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    if target.stat().st_size != member.size:
                        raise GanzooError(f"{archive}: member {member.name!r} is truncated")
                    relative.append(rel)
                final = dest / top
                if final.exists() or final.is_symlink():  # an older, incomplete copy: swap it out
                    os.replace(final, staging / f".{top}.old")
                os.replace(staging / top, final)
            finally:  # removes the staging folder and any older copy moved into it
                shutil.rmtree(staging, ignore_errors=True)
    except GanzooError:
        raise
    except _CORRUPT_TAR as error:
        detail = str(error) or type(error).__name__
        raise GanzooError(f"{archive}: corrupt or truncated archive ({detail}); delete it and get it again") from None
    except OSError as error:
        raise GanzooError(f"{archive}: cannot extract into {dest} ({error.strerror or error})") from None
    return [dest / rel for rel in relative]


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; refuses all others.

    Memory is bounded too: an array can only be built from bytes the file
    holds, so ``numpy.ndarray`` cannot be called directly (it would allocate
    any shape, uninitialised) and ``_reconstruct`` may not allocate more bytes
    than the file has.
    """

    def __init__(self, handle, path: Path):
        super().__init__(handle, encoding="bytes")
        self.path = path
        self.allowed = _numpy_globals()
        budget = path.stat().st_size
        refuse = self._refuse

        class _NoDirectArray(np.ndarray):
            """ndarray for ``_reconstruct`` (it builds instances without calling __new__); a pickle
            that calls it directly asks for memory the file does not hold."""

            def __new__(cls, *args, **kwargs):
                refuse("it constructs a numpy array directly instead of from its bytes")

        reconstruct = self.allowed[("numpy.core.multiarray", "_reconstruct")]

        def bounded_reconstruct(subtype, shape, dtype):
            try:
                size = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
            except (TypeError, ValueError):
                refuse("it declares an array shape that is not a tuple of integers")
            if size > budget:
                refuse(f"it declares an array of {size:,} bytes in a file of {budget:,}")
            return reconstruct(subtype, shape, dtype)

        self.allowed[("numpy", "ndarray")] = _NoDirectArray
        for module in ("numpy.core", "numpy._core"):
            self.allowed[(f"{module}.multiarray", "_reconstruct")] = bounded_reconstruct

    def _refuse(self, why: str):
        raise GanzooError(f"{self.path}: refusing to load: {why} (a crafted or damaged file?)")

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise GanzooError(
                f"{self.path}: refusing to load: the pickle references {module}.{name}, "
                "which a CIFAR batch never needs (a crafted or foreign file?)"
            ) from None


def _get(batch: dict, key: str):
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, path).load()
    except GanzooError:
        raise
    except FileNotFoundError:
        raise GanzooError(f"{path}: CIFAR-10 batch not found") from None
    except Exception as error:  # any unpickling failure of a user file is the user's to fix
        raise GanzooError(f"{path}: not a valid CIFAR-10 batch ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise GanzooError(f"{path}: not a CIFAR-10 batch (a pickled {type(batch).__name__}, not a dict)")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if isinstance(data, np.ndarray):
        data = np.asarray(data)  # the plain ndarray view of _NoDirectArray
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise GanzooError(f"{path}: 'data' must be uint8 of shape (N, 3072), found {dtype} {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise GanzooError(f"{path}: 'labels' is not a list of integers") from None
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise GanzooError(f"{path}: {labels.size} labels for {data.shape[0]} images (the counts must match)")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise GanzooError(f"{path}: labels outside 0..9 (found {labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(
    archive: str | os.PathLike, cache_root: str | os.PathLike, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` ("train": 50,000; "test": 10,000) as uint8 (N, 3, 32, 32) and int64 (N,).

    The batches are extracted from ``archive`` into ``cache_root/cifar-10-batches-py``
    the first time (or when one is missing) and read from there afterwards.
    """
    if split not in _SPLITS:
        raise GanzooError(f"unknown CIFAR-10 split {split!r}; use 'train' or 'test'")
    archive, cache_root = Path(archive), Path(cache_root)
    folder = cache_root / CIFAR10_FOLDER
    names = _SPLITS[split]
    if not all((folder / name).is_file() for name in names):
        safe_extract_tar(archive, cache_root, CIFAR10_FOLDER + "/")
        absent = [name for name in names if not (folder / name).is_file()]
        if absent:
            raise GanzooError(f"{archive}: the archive lacks {', '.join(f'{CIFAR10_FOLDER}/{n}' for n in absent)}")
    parts = [_load_batch(folder / name) for name in names]
    data = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    return data, labels


# -- the registered dataset ----------------------------------------------------


class CIFAR10(ImageFileDataset):
    """cifar10: the python release, extracted safely into the data folder."""

    name = "cifar10"
    description = "CIFAR-10 (Krizhevsky 2009), 32x32 RGB, 10 classes, 50,000 train images"
    spec = DataSpec(shape=(3, 32, 32), num_classes=10, size=50_000)
    split_sizes = {"train": 50_000, "test": 10_000}

    def source_files(self) -> list[Path]:
        fetched = ensure_files(CIFAR10_FILES, self.data_dir, dataset=self.name, download=self.download)
        return [fetched[CIFAR10_FILES[0].name]]

    def read_source(self, files: list[Path]):
        images, labels = load_cifar10(files[0], self.data_dir, self.split)
        return torch.from_numpy(images), torch.from_numpy(labels)


@hookimpl
def register_datasets(register):
    register(CIFAR10)
