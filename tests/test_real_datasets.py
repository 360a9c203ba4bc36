"""mnist, fashion-mnist, cifar10 and folder as registered datasets, and through the CLI."""
from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.data import cifar, mnist
from ganzoo.data.download import RemoteFile, md5sum

from .conftest import SHARED_DATA
from .test_cifar import PREFIX, _batch, _make_archive


def shared(name: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{folder} is absent: the canonical {name} files live beside the project in shared/data")
    return folder


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_datasets_load(name):
    data = ganzoo.create_dataset(name, data_dir=shared(name)).prepare("cpu")
    assert data.data.shape == (60_000, 1, 28, 28) and data.data.dtype == torch.uint8
    assert data.data.max() == 255 and data.data.min() == 0
    counts = torch.bincount(data.labels, minlength=10).tolist()
    assert sum(counts) == 60_000 and min(counts) > 5000
    if name == "fashion-mnist":
        assert counts == [6000] * 10
    batch = data.sample(32)
    assert batch.real.shape == (32, 1, 28, 28) and -1 <= batch.real.min() and batch.real.max() <= 1
    test = ganzoo.create_dataset(name, data_dir=shared(name), split="test").prepare("cpu")
    assert len(test) == 10_000


def test_read_only_source_folder_is_left_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "user-cache"))
    folder = tmp_path / "mnist"
    folder.mkdir()
    for path in shared("mnist").iterdir():
        (folder / path.name).symlink_to(path)
    folder.chmod(0o555)  # read-only by its mode, which ganzoo respects even as root
    try:
        before = sorted(p.name for p in folder.iterdir())
        ganzoo.create_dataset("mnist", data_dir=folder).prepare("cpu")
        assert sorted(p.name for p in folder.iterdir()) == before
        assert list((tmp_path / "user-cache" / "decoded").glob("mnist-train-*.npz"))
    finally:
        folder.chmod(0o755)


def test_image_size_and_channels_are_applied():
    data = ganzoo.create_dataset("mnist", data_dir=shared("mnist"), image_size=32, channels=3)
    assert data.spec.shape == (3, 32, 32)
    data.prepare("cpu")
    assert data.data.shape == (60_000, 3, 32, 32)
    assert torch.equal(data.data[:, 0], data.data[:, 2])  # gray repeated into RGB


def test_decoded_cache_is_written_beside_a_writable_source(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "user-cache"))  # no earlier decode to reuse
    folder = tmp_path / "mnist"
    folder.mkdir()
    for path in shared("mnist").iterdir():
        (folder / path.name).symlink_to(path)
    ganzoo.create_dataset("mnist", data_dir=folder).prepare("cpu")
    cached = list((folder / ".ganzoo-cache").glob("mnist-train-1x28-*.npz"))
    assert len(cached) == 1
    # A different preprocessing gets its own cache file.
    ganzoo.create_dataset("mnist", data_dir=folder, image_size=32).prepare("cpu")
    assert len(list((folder / ".ganzoo-cache").glob("*.npz"))) == 2
    assert not (tmp_path / "user-cache").exists()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_offline_download_lists_the_files_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    base = _closed_port_url()
    offline = tuple(RemoteFile(f.name, f.md5, (base + f.name,)) for f in mnist.MNIST_FILES)
    monkeypatch.setattr(mnist.MNIST, "remote_files", offline)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["train", "dcgan", "--dataset", "mnist", "--data-dir", str(empty), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "train-images-idx3-ubyte.gz" in err and "train-labels-idx1-ubyte.gz" in err and str(empty) in err
    assert list(empty.iterdir()) == [] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist", "--data-dir", "/no/such/folder"], "--data-dir /no/such/folder does not exist"),
    (["--dataset", "8gaussians", "--data-dir", "."], "dataset '8gaussians' does not take --data-dir"),
    (["--dataset", "folder"], "needs a folder"),
])
def test_bad_dataset_arguments(argv, message, tmp_path, capsys):
    assert main(["train", "dcgan", *argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_corrupt_idx_file_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(shared("mnist") / name)
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 12)  # zero images
    assert main(["train", "dcgan", "--dataset", "mnist", "--data-dir", str(folder), "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and err.count("\n") == 1


def test_cgan_on_fashion_mnist_samples_the_requested_class(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "cgan", "--dataset", "fashion-mnist", "--data-dir", str(shared("fashion-mnist")),
                 "--steps", "2", "--batch-size", "16", "--set", "g_width=8", "d_width=8",
                 "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "fashion-mnist"
    assert config["data"] == {"shape": [1, 28, 28], "num_classes": 10, "size": 60000, "kind": "image",
                              "channels": 1}
    loaded = ganzoo.load_generator(run)
    seen = []
    generator = loaded.nets["G"]
    forward = generator.forward
    generator.forward = lambda z, labels=None: seen.append(labels) or forward(z, labels)
    ganzoo.sample(loaded, n=5, label=4)
    assert seen[0].tolist() == [4] * 5


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A CIFAR-10-format archive built here; its checksum stands in for the real one."""
    folder = tmp_path / "cifar"
    folder.mkdir()
    members = {PREFIX + f"data_batch_{i}": _batch(i)[0] for i in range(1, 6)}
    members[PREFIX + "test_batch"] = _batch(9)[0]
    archive = _make_archive(folder / "cifar-10-python.tar.gz", members)
    real = cifar.CIFAR10_FILES[0]
    monkeypatch.setattr(cifar, "CIFAR10_FILES", (RemoteFile(real.name, md5sum(archive), real.urls),))
    return folder


def test_cifar10_dataset_from_an_archive(cifar_dir):
    data = ganzoo.create_dataset("cifar10", data_dir=cifar_dir).prepare("cpu")
    assert data.data.shape == (20, 3, 32, 32) and data.spec.size == 20
    assert data.labels.shape == (20,)
    gray = ganzoo.create_dataset("cifar10", data_dir=cifar_dir, channels=1, image_size=16).prepare("cpu")
    assert gray.data.shape == (20, 1, 16, 16)


def test_cifar10_with_a_wrong_checksum_is_refused(cifar_dir, monkeypatch, capsys):
    real = cifar.CIFAR10_FILES[0]
    monkeypatch.setattr(cifar, "CIFAR10_FILES", (RemoteFile(real.name, "0" * 32, real.urls),))
    assert main(["train", "dcgan", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--quiet",
                 "--out", str(cifar_dir / "run")]) == 2
    assert "md5" in capsys.readouterr().err
    assert not (cifar_dir / "run").exists()


def _image_folder(root: Path) -> Path:
    colours = {"cats": (200, 30, 30), "dogs": (30, 30, 200)}
    for label, colour in colours.items():
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40 + i, 30), colour).save(root / label / f"{i}.png")
    (root / "cats" / "broken.png").write_bytes(b"not a png")
    (root / "dogs" / "notes.txt").write_text("hello")
    return root


def test_folder_dataset_trains_with_class_labels(tmp_path, capsys):
    root = _image_folder(tmp_path / "pets")
    run = tmp_path / "run"
    assert main(["train", "cgan", "--dataset", f"folder:{root}", "--image-size", "32", "--steps", "2",
                 "--batch-size", "4", "--set", "g_width=8", "d_width=8", "--out", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("ganzoo: warning:") == 1 and "skipped 2 of 14 files" in err
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "folder"
    assert config["data"]["shape"] == [3, 32, 32] and config["data"]["num_classes"] == 2
    assert config["data"]["size"] == 12


def test_folder_dataset_streams_when_too_large_for_memory(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "pets")
    monkeypatch.setenv("GANZOO_IN_MEMORY_LIMIT_MB", "0")
    data = ganzoo.create_dataset("folder", data_dir=root, image_size=16, channels=1)
    assert data.streaming
    data.prepare("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen = torch.cat([data.sample(4).labels for _ in range(6)])  # more than one epoch
    batch = data.sample(4)
    assert batch.real.shape == (4, 1, 16, 16) and batch.real.min() >= -1 and batch.real.max() <= 1
    assert set(seen.tolist()) == {0, 1}
    # Red cats are brighter in gray than blue dogs: labels travel with their images.
    gray = batch.real.mean(dim=(1, 2, 3))
    for value, label in zip(gray.tolist(), batch.labels.tolist()):
        assert (value > -0.4) == (label == 0)


def test_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "dcgan", "--dataset", f"folder:{tmp_path / 'empty'}", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    assert "no image files" in capsys.readouterr().err


def test_list_json_reports_every_dataset():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ganzoo", "list", "--json"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    datasets = {d["name"]: d for d in json.loads(out)["datasets"]}
    assert {"mnist", "fashion-mnist", "cifar10", "folder"} <= set(datasets)
    assert datasets["cifar10"]["shape"] == [3, 32, 32] and datasets["cifar10"]["channels"] == 3
    assert datasets["mnist"]["num_classes"] == 10 and datasets["mnist"]["size"] == 60000
    assert "data_dir" in datasets["folder"]["options"] and datasets["8gaussians"]["options"] == ["standardize"]
