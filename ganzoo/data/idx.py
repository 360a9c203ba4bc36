"""Read IDX files (the MNIST format), gzip-compressed or not, with strict checks.

An IDX file is a big-endian header (two zero bytes, a type byte, the number of
dimensions, then one 32-bit size per dimension) followed by the data, row-major.
Only unsigned bytes (type 0x08) are supported: that is what MNIST-style image
and label files hold. Every problem is a one-line :class:`GanzooError` naming
the file.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import GanzooError

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "read_idx", "read_idx_images_labels", "find_idx_file"]

IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension
_UBYTE = 0x08
_KIND = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
_GZIP_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _open(path: Path) -> BinaryIO:
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
    except FileNotFoundError:
        raise GanzooError(f"{path}: file not found") from None
    except OSError as error:
        raise GanzooError(f"{path}: cannot open ({error.strerror or error})") from None


def _read_exact(handle: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``handle``; return how many bytes were read (less at EOF)."""
    filled = 0
    while filled < len(view):
        n = handle.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _dims_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


#: The largest IDX payload read (bytes); MNIST's largest file holds 47 MB.
MAX_IDX_BYTES = 1 << 32


def read_idx(path: str | os.PathLike, *, magic: int | None = None,
             expect: tuple[int | None, ...] | None = None) -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes (``.gz`` or uncompressed).

    Returns a writable uint8 array shaped as the header's dimensions. With
    ``magic`` (e.g. 2051 for images, 2049 for labels) the header must carry
    exactly that magic number; with ``expect`` (e.g. ``(60000, 28, 28)``,
    None for "any") the dimensions must match it. Both, the payload's size
    limit (:data:`MAX_IDX_BYTES`) and, for an uncompressed file, its size on
    disk are checked before any memory is allocated for the data.
    """
    path = Path(path)
    compressed = path.name.endswith(".gz")
    handle = _open(path)
    try:
        try:
            head = handle.read(4)
            if len(head) < 4:
                raise GanzooError(f"{path}: too short for an IDX file ({len(head)} bytes)")
            found = int.from_bytes(head, "big")
            if magic is not None and found != magic:
                kind = _KIND.get(magic, "this file")
                raise GanzooError(f"{path}: wrong magic number {found} (expected {magic} for {kind})")
            if head[0] != 0 or head[1] != 0 or head[2] != _UBYTE or head[3] == 0:
                raise GanzooError(
                    f"{path}: wrong magic number {found} (expected an IDX file of unsigned bytes, "
                    f"e.g. {IMAGES_MAGIC} for images or {LABELS_MAGIC} for labels)"
                )
            ndim = head[3]
            raw_dims = handle.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise GanzooError(f"{path}: truncated IDX header ({ndim} dimensions announced)")
            dims = tuple(int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            if expect is not None and (len(dims) != len(expect)
                                       or any(e is not None and d != e for d, e in zip(dims, expect))):
                wanted = "x".join("N" if e is None else str(e) for e in expect)
                raise GanzooError(f"{path}: the header announces {_dims_text(dims)}, expected {wanted}")
            expected = math.prod(dims)  # Python ints: 2**31 x 2**31 x 4 must not wrap to 0
            if expected > MAX_IDX_BYTES:
                raise GanzooError(f"{path}: implausible IDX dimensions {_dims_text(dims)} "
                                  f"({expected:,} bytes; at most {MAX_IDX_BYTES:,} are read)")
            if not compressed:
                on_disk = os.fstat(handle.fileno()).st_size - 4 - 4 * ndim
                if on_disk < expected:
                    raise GanzooError(
                        f"{path}: truncated: the header announces {_dims_text(dims)} = {expected} bytes "
                        f"of data but only {on_disk} follow"
                    )
            data = np.empty(expected, dtype=np.uint8)
            got = _read_exact(handle, memoryview(data))
            if got < expected:
                raise GanzooError(
                    f"{path}: truncated: the header announces {_dims_text(dims)} = {expected} bytes "
                    f"of data but only {got} follow"
                )
            extra = handle.read(1 << 16)
            if extra:
                more = len(extra) + len(handle.read())
                raise GanzooError(
                    f"{path}: too long: {more} bytes follow the {expected} bytes of data that the "
                    f"header announces ({_dims_text(dims)})"
                )
        except _GZIP_ERRORS as error:
            if not compressed:
                raise GanzooError(f"{path}: read error ({error})") from None
            detail = str(error) or type(error).__name__
            raise GanzooError(
                f"{path}: corrupt or truncated gzip stream ({detail}); delete it and get it again"
            ) from None
    finally:
        handle.close()
    return data.reshape(dims)


def read_idx_images_labels(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    num_classes: int | None = 10,
    image_dims: tuple[int | None, int | None, int | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An IDX image file and its label file: uint8 ``(N, H, W)`` and int64 ``(N,)``.

    Labels must number as many as the images and lie in ``0..num_classes-1``
    (no range check when ``num_classes`` is None). ``image_dims`` (e.g.
    ``(60000, 28, 28)``) is checked in the headers, before the data is read.
    """
    images = read_idx(images_path, magic=IMAGES_MAGIC, expect=image_dims)
    labels_raw = read_idx(labels_path, magic=LABELS_MAGIC, expect=None if image_dims is None else image_dims[:1])
    if images.ndim != 3:  # guaranteed by the magic number; kept for clarity
        raise GanzooError(f"{images_path}: expected 3 dimensions, found {images.ndim}")
    if labels_raw.shape[0] != images.shape[0]:
        raise GanzooError(
            f"{labels_path}: {labels_raw.shape[0]} labels for the {images.shape[0]} images "
            f"of {images_path} (the counts must match)"
        )
    labels = labels_raw.astype(np.int64)
    if num_classes is not None and labels.size and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        where = int(np.argmax(labels >= num_classes))
        raise GanzooError(
            f"{labels_path}: label {bad} (first bad one at index {where}) is outside 0..{num_classes - 1}"
        )
    return images, labels


def find_idx_file(folder: str | os.PathLike, name_gz: str) -> Path | None:
    """``folder/name_gz`` if it exists, else its uncompressed twin (no ``.gz``), else None."""
    folder = Path(folder)
    candidates = [folder / name_gz]
    if name_gz.endswith(".gz"):
        candidates.append(folder / name_gz[: -len(".gz")])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
