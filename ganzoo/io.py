"""Small file helpers: atomic writes, so a crash never leaves half a file."""
from __future__ import annotations

import errno
import functools
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np


@functools.cache
def _umask() -> int:
    """The process's umask (read once, when a file is first written: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(handle)`` to a temporary file beside ``path``, fsync, then rename.

    Readers see either the old file or the complete new one; on any error the
    temporary file is removed and the error is re-raised.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give it
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # A failed write() names no file, a failed rename the temporary one: name the target.
            exc.filename, exc.filename2 = str(path), None
        raise


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`.

    The object is serialised in memory first: torch's zip writer turns a full
    disk into a ``RuntimeError`` ("unexpected pos"), while writing the bytes
    raises the ``OSError`` (ENOSPC) callers handle.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def drop_partial_last_line(path: Path) -> None:
    """Cut a JSON-lines file back to its last complete line, so records appended
    after a crash mid-write are not glued to half a record."""
    try:
        with open(path, "r+b") as handle:
            size = handle.seek(0, io.SEEK_END)
            end = size
            while end > 0:
                start = max(0, end - 65536)
                handle.seek(start)
                chunk = handle.read(end - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    end = start + newline + 1
                    break
                end = start
            if end != size:
                handle.truncate(end)
    except FileNotFoundError:
        pass


def os_reason(exc: OSError) -> str:
    """An OSError as a few lower-case words ("no space left on device")."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    return (exc.strerror or str(exc)).lower()


def check_writable_dir(path: Path) -> None:
    """Raise OSError unless ``path`` (or its nearest existing parent) can be written."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{probe} is not writable")


def load_npz(path: Path, *keys: str) -> tuple[np.ndarray, ...] | None:
    """The arrays ``keys`` of a cache file, or None when it is missing or damaged."""
    if not path.exists():
        return None
    try:
        with np.load(path) as cached:
            return tuple(cached[key] for key in keys)
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is rebuilt by the caller


def save_npz(path: Path, **arrays: np.ndarray) -> bool:
    """Write a cache file atomically; False (and nothing written) when the folder is unwritable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    except OSError:
        return False
    return True
