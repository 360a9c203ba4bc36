"""IDX reader: the real MNIST / Fashion-MNIST files and every kind of broken file."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from ganzoo.data.idx import find_idx_file, read_idx, read_idx_images_labels
from ganzoo.errors import GanzooError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real {folder} IDX files not found in {path} (shared data not mounted)")
    return path


@pytest.mark.parametrize(
    "folder, train_counts, test_counts",
    [
        ("mnist", MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
        ("fashion-mnist", [6000] * 10, [1000] * 10),
    ],
)
def test_real_files_load(folder, train_counts, test_counts):
    path = _shared(folder)
    for split, n, counts in (("train", 60000, train_counts), ("t10k", 10000, test_counts)):
        images, labels = read_idx_images_labels(
            path / f"{split}-images-idx3-ubyte.gz", path / f"{split}-labels-idx1-ubyte.gz"
        )
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert images.min() == 0 and images.max() == 255
        assert images.flags.writeable
        assert np.bincount(labels, minlength=10).tolist() == counts


def _idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def _write(path: Path, content: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def _pair(tmp_path: Path, n: int = 5, n_labels: int | None = None, compress: bool = True, labels=None):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
    n_labels = n if n_labels is None else n_labels
    labels = np.arange(n_labels, dtype=np.uint8) % 10 if labels is None else np.asarray(labels, np.uint8)
    suffix = ".gz" if compress else ""
    images_path = _write(tmp_path / f"img-idx3-ubyte{suffix}", _idx_bytes(2051, (n, 4, 3), pixels.tobytes()), compress)
    labels_path = _write(tmp_path / f"lab-idx1-ubyte{suffix}", _idx_bytes(2049, (len(labels),), labels.tobytes()), compress)
    return images_path, labels_path, pixels, labels


@pytest.mark.parametrize("compress", [True, False])
def test_synthetic_roundtrip(tmp_path, compress):
    images_path, labels_path, pixels, labels = _pair(tmp_path, compress=compress)
    images, got_labels = read_idx_images_labels(images_path, labels_path)
    np.testing.assert_array_equal(images, pixels)  # row-major (N, H, W), H=4 rows, W=3 columns
    np.testing.assert_array_equal(got_labels, labels.astype(np.int64))
    assert read_idx(labels_path).shape == (5,)


def test_corrupt_gzip(tmp_path):
    images_path, labels_path, _, _ = _pair(tmp_path)
    blob = bytearray(images_path.read_bytes())
    blob[12:20] = b"\xff" * 8  # damage the deflate stream
    images_path.write_bytes(bytes(blob))
    with pytest.raises(GanzooError, match=r"img-idx3-ubyte\.gz: corrupt or truncated gzip"):
        read_idx_images_labels(images_path, labels_path)


def test_truncated_gzip_stream(tmp_path):
    images_path, labels_path, _, _ = _pair(tmp_path, n=50)
    blob = images_path.read_bytes()
    images_path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(GanzooError, match=r"img-idx3-ubyte\.gz: corrupt or truncated gzip"):
        read_idx_images_labels(images_path, labels_path)


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_payload(tmp_path, compress):
    suffix = ".gz" if compress else ""
    path = _write(tmp_path / f"x-idx3-ubyte{suffix}", _idx_bytes(2051, (3, 4, 4), bytes(40)), compress)
    with pytest.raises(GanzooError, match=r"x-idx3-ubyte.*truncated.*3x4x4 = 48 bytes.*only 40"):
        read_idx(path)


def test_payload_too_long(tmp_path):
    path = _write(tmp_path / "x-idx1-ubyte.gz", _idx_bytes(2049, (3,), bytes(7)), True)
    with pytest.raises(GanzooError, match=r"x-idx1-ubyte\.gz: too long: 4 bytes follow"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    images_path, labels_path, _, labels = _pair(tmp_path)
    labels_path.write_bytes(gzip.compress(_idx_bytes(1234, (5,), labels.tobytes())))
    with pytest.raises(GanzooError) as info:
        read_idx_images_labels(images_path, labels_path)
    message = str(info.value)
    assert message == f"{labels_path}: wrong magic number 1234 (expected 2049 for labels)"
    # Swapped files: labels where images belong.
    with pytest.raises(GanzooError, match=r"wrong magic number 2049 \(expected 2051 for images\)"):
        read_idx_images_labels(_pair(tmp_path)[1], _pair(tmp_path)[1])


def test_not_unsigned_bytes(tmp_path):
    path = _write(tmp_path / "floats.idx", _idx_bytes(0x00000D01, (2,), bytes(8)), False)
    with pytest.raises(GanzooError, match=r"floats\.idx: wrong magic number 3329"):
        read_idx(path)


def test_count_mismatch(tmp_path):
    images_path, labels_path, _, _ = _pair(tmp_path, n=5, n_labels=4)
    with pytest.raises(GanzooError, match=r"lab-idx1-ubyte\.gz: 4 labels for the 5 images"):
        read_idx_images_labels(images_path, labels_path)


def test_label_out_of_range(tmp_path):
    images_path, labels_path, _, _ = _pair(tmp_path, labels=[0, 1, 12, 3, 4])
    with pytest.raises(GanzooError, match=r"label 12 \(first bad one at index 2\) is outside 0\.\.9"):
        read_idx_images_labels(images_path, labels_path)
    _, labels = read_idx_images_labels(images_path, labels_path, num_classes=None)
    assert labels.tolist() == [0, 1, 12, 3, 4]


def test_missing_and_short_files(tmp_path):
    with pytest.raises(GanzooError, match="file not found"):
        read_idx(tmp_path / "nope-idx1-ubyte.gz")
    short = _write(tmp_path / "short.idx", b"\x00\x00", False)
    with pytest.raises(GanzooError, match=r"short\.idx: too short"):
        read_idx(short)


def test_find_idx_file(tmp_path):
    name = "train-images-idx3-ubyte.gz"
    assert find_idx_file(tmp_path, name) is None
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == tmp_path / "train-images-idx3-ubyte"
    (tmp_path / name).write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == tmp_path / name  # the .gz wins when both exist
