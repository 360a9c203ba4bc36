"""CIFAR-10 loading from a tiny archive in the official layout; hostile archives and pickles."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ganzoo.data.cifar import load_cifar10, safe_extract_tar
from ganzoo.errors import GanzooError

PREFIX = "cifar-10-batches-py/"
PER_BATCH = 4


def _batch(seed: int, n: int = PER_BATCH, protocol: int = 2) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    blob = pickle.dumps(
        {b"batch_label": b"batch %d" % seed, b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n},
        protocol=protocol,
    )
    return blob, data, np.asarray(labels)


def _add(tar: tarfile.TarFile, name: str, payload: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(payload))


def _make_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(PREFIX.rstrip("/"))
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, payload in members.items():
            _add(tar, name, payload)
    return path


@pytest.fixture
def archive(tmp_path):
    members, expected = {}, {"train": ([], []), "test": ([], [])}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        # Mix pickle protocols: 2 as the official (Python 2) files, 5 as a modern re-pickle.
        blob, data, labels = _batch(seed, protocol=2 if seed % 2 == 0 else 5)
        members[PREFIX + name] = blob
        split = "test" if name == "test_batch" else "train"
        expected[split][0].append(data)
        expected[split][1].append(labels)
    members[PREFIX + "batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)
    members[PREFIX + "readme.html"] = b"<html></html>"
    path = _make_archive(tmp_path / "cifar-10-python.tar.gz", members)
    return path, {k: (np.concatenate(d), np.concatenate(l)) for k, (d, l) in expected.items()}


def test_load_train_and_test(archive, tmp_path):
    path, expected = archive
    cache = tmp_path / "cache"
    for split, n in (("train", 5 * PER_BATCH), ("test", PER_BATCH)):
        data, labels = load_cifar10(path, cache, split)
        assert data.shape == (n, 3, 32, 32) and data.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        want_data, want_labels = expected[split]
        # Official row layout: 1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major.
        np.testing.assert_array_equal(data[:, 1, 2, 3], want_data[:, 1024 + 2 * 32 + 3])
        np.testing.assert_array_equal(data.reshape(n, -1), want_data)
        np.testing.assert_array_equal(labels, want_labels)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]  # no staging folders left
    # Second load reads the extracted cache: works without the archive.
    path.unlink()
    data, _ = load_cifar10(path, cache, "train")
    assert data.shape[0] == 5 * PER_BATCH
    with pytest.raises(GanzooError, match="unknown CIFAR-10 split"):
        load_cifar10(path, cache, "valid")


def test_missing_batch_re_extracts(archive, tmp_path):
    path, _ = archive
    cache = tmp_path / "cache"
    load_cifar10(path, cache, "train")
    (cache / "cifar-10-batches-py" / "data_batch_3").unlink()
    data, _ = load_cifar10(path, cache, "train")
    assert data.shape[0] == 5 * PER_BATCH
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]


def test_safe_extract_returns_files(archive, tmp_path):
    path, _ = archive
    files = safe_extract_tar(path, tmp_path / "out", PREFIX)
    assert sorted(f.name for f in files) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta", "readme.html"]
    )
    assert all(f.is_file() and f.parent == tmp_path / "out" / "cifar-10-batches-py" for f in files)


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "evil_name, problem",
    [
        ("cifar-10-batches-py/../../escape", "contains '..'"),
        ("../escape", "contains '..'"),
        ("/tmp/ganzoo-absolute-escape", "absolute path"),
        ("elsewhere/data_batch_1", "outside cifar-10-batches-py/"),
    ],
)
def test_hostile_member_names_are_refused_before_writing(tmp_path, evil_name, problem):
    blob, _, _ = _batch(0)
    members = {PREFIX + "data_batch_1": blob, evil_name: b"pwned", PREFIX + "data_batch_2": blob}
    path = _make_archive(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "work" / "dest"
    dest.mkdir(parents=True)
    before = _snapshot(tmp_path)
    with pytest.raises(GanzooError) as info:
        safe_extract_tar(path, dest, PREFIX)
    assert problem in str(info.value) and repr(evil_name) in str(info.value)
    assert _snapshot(tmp_path) == before  # nothing inside dest, nothing beside it
    assert not Path("/tmp/ganzoo-absolute-escape").exists()
    with pytest.raises(GanzooError, match="refusing to extract"):
        load_cifar10(path, tmp_path / "cache", "train")
    assert not (tmp_path / "cache" / "cifar-10-batches-py").exists()


@pytest.mark.parametrize(
    "kind, problem",
    [
        (tarfile.SYMTYPE, "is a link"),
        (tarfile.LNKTYPE, "is a link"),
        (tarfile.CHRTYPE, "is not a regular file or folder"),
        (tarfile.FIFOTYPE, "is not a regular file or folder"),
    ],
)
def test_links_and_devices_are_refused(tmp_path, kind, problem):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, PREFIX + "ok", b"fine")
        info = tarfile.TarInfo(PREFIX + "data_batch_1")
        info.type = kind
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    dest = tmp_path / "dest"
    with pytest.raises(GanzooError, match=r"refusing to extract: member 'cifar-10-batches-py/data_batch_1' " + problem):
        safe_extract_tar(path, dest, PREFIX)
    assert not dest.exists() or _snapshot(dest) == []


def test_truncated_archive_is_one_line_and_leaves_nothing(archive, tmp_path):
    path, _ = archive
    blob = path.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    dest = tmp_path / "dest"
    with pytest.raises(GanzooError) as info:
        safe_extract_tar(cut, dest, PREFIX)
    assert "corrupt or truncated archive" in str(info.value) and "\n" not in str(info.value)
    assert not dest.exists() or _snapshot(dest) == []
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(GanzooError, match="corrupt or truncated archive"):
        safe_extract_tar(junk, dest, PREFIX)


class _System:
    """Pickles as a call to os.system, as a crafted batch would."""

    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def _archive_with_batch(tmp_path: Path, payload: bytes) -> Path:
    good, _, _ = _batch(1)
    members = {PREFIX + f"data_batch_{i}": good for i in range(1, 6)}
    members[PREFIX + "data_batch_3"] = payload
    return _make_archive(tmp_path / "crafted.tar.gz", members)


def test_pickle_referencing_os_system_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({b"data": _System(), b"labels": [0]}, protocol=2)
    assert b"system" in payload
    path = _archive_with_batch(tmp_path, payload)
    with pytest.raises(GanzooError) as info:
        load_cifar10(path, tmp_path / "cache", "train")
    message = str(info.value)
    assert "data_batch_3" in message and "refusing to load" in message
    assert "system" in message  # names what it refused (posix.system / nt.system)
    assert not (tmp_path / "pwned-by-pickle").exists()


@pytest.mark.parametrize(
    "content, problem",
    [
        ({b"data": np.zeros((4, 3071), np.uint8), b"labels": [0] * 4}, r"uint8 of shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"uint8 of shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"3 labels for 4 images"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 10, 2]}, r"labels outside 0\.\.9"),
        ([1, 2, 3], r"not a CIFAR-10 batch"),
    ],
)
def test_malformed_batches(tmp_path, content, problem):
    path = _archive_with_batch(tmp_path, pickle.dumps(content, protocol=2))
    with pytest.raises(GanzooError, match=r"data_batch_3: .*" + problem):
        load_cifar10(path, tmp_path / "cache", "train")


def test_garbage_batch(tmp_path):
    path = _archive_with_batch(tmp_path, b"\x80\x02garbage")
    with pytest.raises(GanzooError, match=r"data_batch_3: not a valid CIFAR-10 batch"):
        load_cifar10(path, tmp_path / "cache", "train")
