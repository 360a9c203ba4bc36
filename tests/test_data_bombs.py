"""Data files that lie: wrong checksums, huge declared sizes, undecodable images.

Issue 13: MNIST files with wrong MD5s trained silently (the check ran only for
missing files); an IDX header of 2^31 x 2^31 x 4 wrapped to 0 bytes; an IDX
``.gz`` claiming 2.1 GB was read before its shape was checked; a 2 KB PNG of
1 x 1,000,000 pixels took 6.6 GB; a CIFAR batch pickle could allocate any
shape; a folder's batch-size check counted files that do not decode.
"""
from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from ganzoo.cli import main
from ganzoo.data import download
from ganzoo.data.cifar import _load_batch
from ganzoo.data.download import RemoteFile, md5sum, verify_file
from ganzoo.data.idx import read_idx
from ganzoo.errors import GanzooError


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its peak RSS growth (MB) over the imports, and its output."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy, PIL.Image, torch, ganzoo.data.folder, ganzoo.data.mnist
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    """) + textwrap.dedent(code) + textwrap.dedent("""
        print("growth_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    growth = float(done.stdout.split("growth_mb")[-1])
    return growth, done.stdout


# -- checksums of files already present ----------------------------------------
def test_present_mnist_files_with_wrong_checksums_are_refused(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--dataset", "mnist", "--data-dir", str(folder), "--steps", "1",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images-idx3-ubyte.gz has md5" in err
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873 was expected" in err and "delete it" in err
    assert not out.exists()


def test_a_verified_checksum_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "a.gz"
    path.write_bytes(b"payload")
    remote = RemoteFile("a.gz", md5sum(path), ())
    hashed = []
    monkeypatch.setattr(download, "md5sum", lambda p: hashed.append(p) or md5sum(p))
    verify_file(remote, path, dataset="toy")
    verify_file(remote, path, dataset="toy")
    assert len(hashed) == 1  # the second check is a stat
    path.write_bytes(b"PAYLOAD")  # same size, new content and time
    os.utime(path, ns=(1, 1))
    with pytest.raises(GanzooError, match="has md5"):
        verify_file(remote, path, dataset="toy")
    assert len(hashed) == 2


# -- IDX headers -----------------------------------------------------------------
def _idx(dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_idx_dimensions_whose_product_overflows_int64_are_refused(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx((2**31, 2**31, 4)))  # 2^64 bytes: wrapped to 0 in int64
    with pytest.raises(GanzooError, match=r"implausible IDX dimensions 2147483648x2147483648x4"):
        read_idx(path)


def test_an_uncompressed_idx_shorter_than_its_header_claims_is_refused_before_allocating(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx((100_000, 100, 100), b"\x00" * 10))  # claims 1 GB, holds 10 bytes
    with pytest.raises(GanzooError, match=r"truncated: the header announces 100000x100x100 = 1000000000 bytes of "
                                          r"data but only 10 follow"):
        read_idx(path)


def test_an_idx_gzip_claiming_another_shape_is_refused_before_its_data_is_read(tmp_path):
    """A real gzip bomb: 200 MB of zeros (about 200 KB compressed) claiming 255,102 images of 28x28.
    mnist expects 60,000 images: refused from the header, with no memory spent on the data."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = folder / "train-images-idx3-ubyte.gz"
    with gzip.open(images, "wb", compresslevel=1) as handle:
        handle.write(_idx((255_102, 28, 28)))
        zeros = bytes(1 << 20)
        for _ in range(200):
            handle.write(zeros)
    growth, out = _peak_rss_mb(f"""
        from ganzoo.data.idx import read_idx
        from ganzoo.errors import GanzooError
        try:
            read_idx({str(images)!r}, expect=(60000, 28, 28))
        except GanzooError as exc:
            print("refused:", exc)
    """)
    assert "refused:" in out and "the header announces 255102x28x28, expected 60000x28x28" in out
    assert growth < 50, f"{growth:.0f} MB used before refusing"


# -- images --------------------------------------------------------------------
def test_a_one_pixel_wide_png_a_million_pixels_tall_stays_small_in_memory(tmp_path):
    folder = tmp_path / "tall"
    folder.mkdir()
    Image.new("L", (1, 1_000_000), color=200).save(folder / "tall.png")
    Image.new("L", (40, 30), color=10).save(folder / "small.png")
    assert (folder / "tall.png").stat().st_size < 10_000
    growth, out = _peak_rss_mb(f"""
        from ganzoo.data.folder import load_image_folder
        images, _, _ = load_image_folder({str(folder)!r}, 64, 3)
        print("shape", images.shape, "values", int(images[1].min()), int(images[1].max()))
    """)
    assert "shape (2, 3, 64, 64) values 200 200" in out  # the tall image's centred square
    assert growth < 200, f"{growth:.0f} MB for a 2 KB image"


def test_a_folder_batch_check_counts_only_images_that_decode(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(25):
        Image.new("RGB", (12, 12), color=(i * 9, 0, 0)).save(folder / f"ok{i:02d}.png")
    for i in range(6):
        (folder / f"broken{i}.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--dataset", f"folder:{folder}", "--image-size", "16", "--batch-size", "28",
                 "--steps", "1", "--out", str(out), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "batch size 28 exceeds the 25 usable examples of 'folder'" in err
    assert "Traceback" not in err and not out.exists()


# -- CIFAR pickles -----------------------------------------------------------------
class _DirectArray:
    """Pickles as numpy.ndarray((400000, 3072), 'B'): 1.2 GB uninitialised, from a few bytes."""

    def __reduce__(self):
        return (np.ndarray, ((400_000, 3072), "B"))


class _HugeReconstruct:
    """Pickles as numpy's own _reconstruct asked for a 1.2 GB array."""

    def __reduce__(self):
        from numpy._core import multiarray

        return (multiarray._reconstruct, (np.ndarray, (400_000, 3072), b"B"))


@pytest.mark.parametrize("crafted, problem", [
    (_DirectArray(), "it constructs a numpy array directly"),
    (_HugeReconstruct(), "it declares an array of 1,228,800,000 bytes in a file of"),
])
def test_a_cifar_pickle_cannot_allocate_more_than_its_file_holds(tmp_path, crafted, problem):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": crafted, b"labels": [0]}, protocol=2))
    assert path.stat().st_size < 1000
    with pytest.raises(GanzooError, match=f"refusing to load: {problem}"):
        _load_batch(path)
    # A genuine batch still loads, as a plain ndarray.
    good = tmp_path / "good"
    good.write_bytes(pickle.dumps({b"data": np.full((2, 3072), 7, np.uint8), b"labels": [1, 2]}, protocol=2))
    data, labels = _load_batch(good)
    assert type(data) is np.ndarray and data.shape == (2, 3, 32, 32) and labels.tolist() == [1, 2]
