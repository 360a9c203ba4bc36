"""Fetch dataset files into a folder, verified by MD5, never leaving half a file.

:func:`ensure_files` checks the files already in a folder and downloads the
missing ones from their mirrors, in order. A download streams into a hidden
temporary file beside its final name (``.NAME.part-PID-XXXX``) and is renamed into
place only once its checksum matches; on any failure the temporary file is
removed before the next mirror is tried. When every mirror fails, the error
names the exact files to put into the folder by hand (the offline route).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import GanzooError
from ..io import atomic_write

__all__ = [
    "RemoteFile",
    "md5sum",
    "ensure_files",
    "MNIST_FILES",
    "FASHION_MNIST_FILES",
    "CIFAR10_FILES",
]

_CHUNK = 1 << 16
_USER_AGENT = "ganzoo (dataset download; python urllib)"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the data folder, checksum and mirrors."""

    name: str  #: file name in the data folder, e.g. "train-images-idx3-ubyte.gz"
    md5: str  #: published MD5 checksum (lower-case hex)
    urls: tuple[str, ...]  #: full URLs of the file, tried in order


def _mirrored(name: str, md5: str, *bases: str) -> RemoteFile:
    return RemoteFile(name, md5, tuple(base + name for base in bases))


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

#: The four MNIST IDX files, with the checksums of torchvision's ``MNIST.resources``.
MNIST_FILES: tuple[RemoteFile, ...] = (
    _mirrored("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", *_MNIST_MIRRORS),
    _mirrored("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", *_MNIST_MIRRORS),
    _mirrored("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", *_MNIST_MIRRORS),
    _mirrored("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", *_MNIST_MIRRORS),
)

#: The four Fashion-MNIST IDX files, with the checksums published by Zalando
#: (the same as torchvision's ``FashionMNIST.resources``).
FASHION_MNIST_FILES: tuple[RemoteFile, ...] = (
    _mirrored("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", *_FASHION_MIRRORS),
    _mirrored("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", *_FASHION_MIRRORS),
    _mirrored("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", *_FASHION_MIRRORS),
    _mirrored("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", *_FASHION_MIRRORS),
)

#: The CIFAR-10 python archive.
CIFAR10_FILES: tuple[RemoteFile, ...] = (
    RemoteFile(
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    ),
)


def md5sum(path: str | os.PathLike) -> str:
    """The MD5 of a file's bytes, as lower-case hex."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Where verified checksums are remembered, {resolved path: [size, mtime_ns, md5]} as JSON: beside
#: the files (``DIR/.ganzoo-cache/``) like the decode cache, in the user cache when DIR is read-only.
VERIFIED_MEMO = "verified-files.json"


def _memo_path(folder: Path) -> Path:
    from .base import cache_dir
    from .images import _folder_is_writable

    return (folder / ".ganzoo-cache" if _folder_is_writable(folder) else cache_dir()) / VERIFIED_MEMO


def _read_memo(path: Path) -> dict:
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def verify_file(remote: RemoteFile, path: Path, *, dataset: str) -> None:
    """Check that ``path`` holds ``remote``'s published MD5, or raise GanzooError.

    The MD5 of a file whose size and modification time have not changed since
    it last matched is not computed again: a successful check is remembered
    in :data:`VERIFIED_MEMO` beside the file (in the user cache when its folder
    is read-only), keyed by the file's path.
    """
    if not path.is_file():
        raise GanzooError(f"{dataset}: {path} is not a file; remove it and put {remote.name} there")
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns, remote.md5]
    memo_path = _memo_path(path.parent)
    memo = _read_memo(memo_path)
    if memo.get(key) == stamp:
        return
    actual = md5sum(path)
    if actual != remote.md5:
        raise GanzooError(
            f"{dataset}: {path} has md5 {actual} but {remote.md5} was expected "
            f"(corrupt or a different file); delete it to download it again"
        )
    memo[key] = stamp
    try:  # remembering is an optimisation: an unwritable cache only means hashing again next time
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo_path, lambda handle: handle.write(json.dumps(memo).encode()))
    except OSError:
        pass


class _AttemptFailed(Exception):
    """One mirror did not deliver a complete, verified file."""


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _download_bar(label: str, total: int | None, enabled: bool):
    """The shared progress display (ganzoo.progress), counting bytes; a first line names the file."""
    from ..progress import Bar, enabled as progress_enabled

    if enabled and progress_enabled():
        size = f" ({_size(total)})" if total else ""
        try:
            sys.stderr.write(f"ganzoo: downloading {label}{size}\n")
        except (OSError, ValueError):
            pass
    return Bar(label, total, unit="B", unit_scale=True, enabled=enabled)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror.lower()
        return str(reason)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


#: Partial files of the old naming (no PID) older than this are left-overs, not live downloads.
_LEGACY_PART_AGE_S = 3600


def remove_stale_parts(folder: Path, name: str) -> list[Path]:
    """Delete ``.NAME.part-PID-XXXX`` files whose download process no longer runs.

    A download killed by a signal (SIGTERM, SIGHUP, SIGKILL) cannot remove its
    partial file; the next download of the same file does, as long as the
    PID in the name is gone on this machine (a download still running in
    another process keeps its file). Partial files of the old naming
    (``.NAME.part-XXXX``, no PID) are removed once an hour old. Returns what
    was removed.
    """
    from ..runlock import pid_alive

    removed = []
    for part in folder.glob(f".{name}.part-*"):
        tag = part.name[len(f".{name}.part-"):]
        pid_text = tag.split("-", 1)[0]
        try:
            stale = (not pid_alive(int(pid_text))) if pid_text.isdigit() and "-" in tag else \
                time.time() - part.stat().st_mtime > _LEGACY_PART_AGE_S
            if stale:
                part.unlink()
                removed.append(part)
        except OSError:
            continue
    return removed


def _fetch(remote: RemoteFile, url: str, folder: Path, timeout: float, progress: bool) -> Path:
    """Download ``url`` to ``folder/remote.name``, verified; raise _AttemptFailed on failure."""
    final = folder / remote.name
    remove_stale_parts(folder, remote.name)
    try:
        # The PID in the name lets a later download tell a dead process's file from a live one's.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{remote.name}.part-{os.getpid()}-")
    except OSError as error:
        raise GanzooError(f"cannot write into {folder}: {_reason(error)}") from error
    done, ok, bar = 0, False, None
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _download_bar(remote.name, total, progress)
                digest = hashlib.md5()
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            if total is not None and done != total:
                raise _AttemptFailed(f"{url}: transfer interrupted after {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != remote.md5:
            raise _AttemptFailed(f"{url}: checksum mismatch: got md5 {actual}, expected {remote.md5}")
        os.replace(tmp, final)
        ok = True
        return final
    except _AttemptFailed:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is an HTTPException.
        raise _AttemptFailed(f"{url}: {_reason(error)}") from error
    finally:
        if bar is not None:
            bar.close(note=None if ok else "(failed)")
        if not ok:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _put_hint(files: list[RemoteFile], folder: Path) -> str:
    return f"put {', '.join(f.name for f in files)} into {folder}"


def ensure_files(
    files: Iterable[RemoteFile],
    folder: str | os.PathLike,
    *,
    dataset: str,
    download: bool = True,
    progress: bool = True,
    timeout: float = 30.0,
) -> dict[str, Path]:
    """Make sure every file is in ``folder`` with its checksum; return ``{name: path}``.

    Files already present are verified (a mismatch is an error, never silently
    replaced) and not downloaded again. Missing ones are downloaded when
    ``download`` is true, trying each mirror in order; otherwise, or when every
    mirror fails, a :class:`GanzooError` names the files to put into ``folder``.
    """
    files = list(files)
    folder = Path(folder)
    found: dict[str, Path] = {}
    missing: list[RemoteFile] = []
    for remote in files:
        path = folder / remote.name
        if path.exists():
            verify_file(remote, path, dataset=dataset)
            found[remote.name] = path
        else:
            missing.append(remote)
    if not missing:
        return found
    if not download:
        what = "files not found" if len(missing) == len(files) else f"missing {', '.join(r.name for r in missing)}"
        raise GanzooError(f"{dataset}: {what} and downloading is off; " + _put_hint(files, folder))
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GanzooError(f"{dataset}: cannot create {folder}: {_reason(error)}") from error
    try:
        _download_missing(missing, files, folder, dataset=dataset, progress=progress, timeout=timeout, found=found)
    except BaseException:
        for path in created:  # leave no empty folders behind after a failed first download
            try:
                path.rmdir()
            except OSError:
                break
        raise
    return {remote.name: found[remote.name] for remote in files}


def _download_missing(
    missing: list[RemoteFile],
    files: list[RemoteFile],
    folder: Path,
    *,
    dataset: str,
    progress: bool,
    timeout: float,
    found: dict[str, Path],
) -> None:
    for remote in missing:
        reasons = []
        for url in remote.urls:
            try:
                found[remote.name] = _fetch(remote, url, folder, timeout, progress)
                break
            except _AttemptFailed as error:
                reasons.append(str(error))
            except GanzooError as error:
                raise GanzooError(f"{dataset}: {error}") from None
        else:
            last = reasons[-1] if reasons else "no download address known"
            raise GanzooError(
                f"{dataset}: could not download {remote.name} ({last}); offline? "
                + _put_hint(files, folder)
            )
