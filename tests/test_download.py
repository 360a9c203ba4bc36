"""ensure_files against a local HTTP server: verified downloads, nothing half-written."""
from __future__ import annotations

import hashlib
import io
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ganzoo import progress
from ganzoo.data.download import (
    CIFAR10_FILES,
    FASHION_MNIST_FILES,
    MNIST_FILES,
    RemoteFile,
    ensure_files,
    md5sum,
)
from ganzoo.errors import GanzooError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FILES = {
    "/a.gz": b"alpha " * 5000,
    "/b.gz": b"bravo!" * 300,
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path.startswith("/short/"):  # promises more bytes than it sends, then hangs up
            body = FILES["/" + self.path.split("/")[-1]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/stall/"):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.0)
            return
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _base(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def closed_url() -> str:
    """A URL on a local port that nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _good(server, name: str) -> RemoteFile:
    return RemoteFile(name, _md5(FILES["/" + name]), (f"{_base(server)}/{name}",))


def _listing(folder: Path) -> list[str]:
    """The folder's files, without ganzoo's own cache folder (where verified checksums are remembered)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".ganzoo-cache") if folder.exists() else []


def test_good_files_verify_and_land_and_are_not_fetched_again(server, tmp_path):
    folder = tmp_path / "deep" / "data"  # created on demand, parents included
    files = [_good(server, "a.gz"), _good(server, "b.gz")]
    paths = ensure_files(files, folder, dataset="toy", progress=False)
    assert paths == {"a.gz": folder / "a.gz", "b.gz": folder / "b.gz"}
    assert (folder / "a.gz").read_bytes() == FILES["/a.gz"]
    assert (folder / "b.gz").read_bytes() == FILES["/b.gz"]
    assert _listing(folder) == ["a.gz", "b.gz"]  # no leftover .part files
    hits = len(server.hits)
    again = ensure_files(files, folder, dataset="toy", progress=False)
    assert again == paths and len(server.hits) == hits  # verified in place, not downloaded again


def test_wrong_checksum_is_refused_and_leaves_nothing(server, tmp_path):
    remote = RemoteFile("a.gz", "0" * 32, (f"{_base(server)}/a.gz",))
    with pytest.raises(GanzooError) as info:
        ensure_files([remote], tmp_path, dataset="toy", progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and _md5(FILES["/a.gz"]) in message and "0" * 32 in message
    assert "\n" not in message
    assert _listing(tmp_path) == []


def test_interrupted_transfer_leaves_nothing(server, tmp_path):
    remote = RemoteFile("a.gz", _md5(FILES["/a.gz"]), (f"{_base(server)}/short/a.gz",))
    with pytest.raises(GanzooError) as info:
        ensure_files([remote], tmp_path, dataset="toy", progress=False)
    reason = str(info.value).split("; offline?")[0]  # the part before the folder path
    assert reason.startswith("toy: could not download a.gz (http://127.0.0.1:")
    assert reason.endswith("/short/a.gz: transfer interrupted after 10000 of 30000 bytes)")
    assert _listing(tmp_path) == []


def test_stalled_transfer_times_out_and_leaves_nothing(server, tmp_path):
    remote = RemoteFile("a.gz", _md5(FILES["/a.gz"]), (f"{_base(server)}/stall/a.gz",))
    with pytest.raises(GanzooError) as info:
        ensure_files([remote], tmp_path, dataset="toy", progress=False, timeout=0.2)
    assert "/stall/a.gz: timed out); offline?" in str(info.value)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("first", ["closed", "missing", "short", "badsum"])
def test_second_mirror_after_first_fails(server, tmp_path, closed_url, first):
    good = f"{_base(server)}/b.gz"
    bad = {
        "closed": f"{closed_url}/b.gz",
        "missing": f"{_base(server)}/nowhere/b.gz",  # 404
        "short": f"{_base(server)}/short/b.gz",
        "badsum": f"{_base(server)}/a.gz",  # right server, wrong bytes
    }[first]
    remote = RemoteFile("b.gz", _md5(FILES["/b.gz"]), (bad, good))
    paths = ensure_files([remote], tmp_path, dataset="toy", progress=False)
    assert paths["b.gz"].read_bytes() == FILES["/b.gz"]
    assert _listing(tmp_path) == ["b.gz"]


def test_offline_names_every_expected_file(tmp_path, closed_url):
    files = [
        RemoteFile(name, "0" * 32, (f"{closed_url}/{name}", f"{closed_url}/mirror/{name}"))
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    ]
    folder = tmp_path / "mnist"
    with pytest.raises(GanzooError) as info:
        ensure_files(files, folder, dataset="mnist", progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("mnist: could not download train-images-idx3-ubyte.gz (")
    assert "connection refused" in message.lower()
    assert message.endswith(
        "offline? put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        f"into {folder}"
    )
    assert not folder.exists()  # the folder made for the download is removed again when nothing landed


def test_download_off_reports_missing_without_creating_the_folder(server, tmp_path):
    folder = tmp_path / "absent"
    files = [_good(server, "a.gz"), _good(server, "b.gz")]
    hits = len(server.hits)
    with pytest.raises(GanzooError) as info:
        ensure_files(files, folder, dataset="toy", download=False)
    message = str(info.value)
    assert message == f"toy: files not found and downloading is off; put a.gz, b.gz into {folder}"
    assert not folder.exists() and len(server.hits) == hits
    folder.mkdir()
    (folder / "a.gz").write_bytes(FILES["/a.gz"])
    with pytest.raises(GanzooError, match=r"toy: missing b\.gz and downloading is off; put a\.gz, b\.gz into"):
        ensure_files(files, folder, dataset="toy", download=False)
    assert _listing(folder) == ["a.gz"] and len(server.hits) == hits
    # With the files present, download=False just verifies them.
    (folder / "b.gz").write_bytes(FILES["/b.gz"])
    assert set(ensure_files(files, folder, dataset="toy", download=False)) == {"a.gz", "b.gz"}


def test_existing_file_with_wrong_md5_is_reported_not_replaced(server, tmp_path):
    (tmp_path / "a.gz").write_bytes(b"something else")
    hits = len(server.hits)
    with pytest.raises(GanzooError) as info:
        ensure_files([_good(server, "a.gz")], tmp_path, dataset="toy", progress=False)
    message = str(info.value)
    assert str(tmp_path / "a.gz") in message
    assert _md5(b"something else") in message and _md5(FILES["/a.gz"]) in message
    assert "delete it to download it again" in message
    assert (tmp_path / "a.gz").read_bytes() == b"something else" and len(server.hits) == hits


def test_keyboard_interrupt_removes_the_partial_file(server, tmp_path, monkeypatch):
    def interrupt(self, n=1):
        assert any(p.name.startswith(".a.gz.part-") for p in tmp_path.iterdir())  # mid-transfer
        raise KeyboardInterrupt

    monkeypatch.setattr(progress.Bar, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ensure_files([_good(server, "a.gz")], tmp_path, dataset="toy", progress=False)
    assert _listing(tmp_path) == []


def test_progress_lines(server, tmp_path, capsys, monkeypatch):
    ensure_files([_good(server, "a.gz")], tmp_path / "quiet", dataset="toy", progress=False)
    assert capsys.readouterr().err == ""
    ensure_files([_good(server, "a.gz")], tmp_path / "log", dataset="toy", progress=True)
    err = capsys.readouterr().err
    # Not a terminal: a line naming the file, the final counts, no control characters.
    assert "downloading a.gz" in err and "100%" in err and "\r" not in err and "\x1b" not in err
    assert 2 <= err.count("\n") <= 6

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    ensure_files([_good(server, "a.gz")], tmp_path / "tty", dataset="toy", progress=True)
    out = tty.getvalue()  # a tqdm bar, redrawn in place, left at 100%
    assert out.startswith("ganzoo: downloading a.gz") and "\r" in out and out.endswith("\n") and "100%" in out


def test_md5sum(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    assert md5sum(tmp_path / "x") == "900150983cd24fb0d6963f7d28e17f72"


def test_constants_shape():
    for files, count in ((MNIST_FILES, 4), (FASHION_MNIST_FILES, 4), (CIFAR10_FILES, 1)):
        assert len(files) == count
        for remote in files:
            assert len(remote.md5) == 32 and remote.urls
            assert all(url.endswith("/" + remote.name) for url in remote.urls)
    assert MNIST_FILES[0].urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    )
    assert CIFAR10_FILES[0].md5 == "c58f30108f718f92721af3b95e74349a"


@pytest.mark.parametrize("folder, files", [("mnist", MNIST_FILES), ("fashion-mnist", FASHION_MNIST_FILES)])
def test_md5_constants_match_the_real_files(folder, files):
    path = SHARED_DATA / folder
    if not all((path / remote.name).is_file() for remote in files):
        pytest.skip(f"real {folder} files not found in {path} (shared data not mounted)")
    for remote in files:
        assert md5sum(path / remote.name) == remote.md5, remote.name
    # ensure_files accepts them in place without touching the network.
    found = ensure_files(files, path, dataset=folder, download=False)
    assert sorted(found) == sorted(r.name for r in files)


def test_a_download_killed_by_a_signal_leaves_a_part_file_that_the_next_download_removes(server, tmp_path):
    """SIGTERM (like SIGHUP and SIGKILL) ends a download without running its
    cleanup; the partial file names its PID, so the next download of that file
    removes it, while a live download's file (this process) stays."""
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path / "data"
    folder.mkdir()
    stalled = f"{_base(server)}/stall/a.gz"
    code = ("import sys; from ganzoo.data.download import RemoteFile, ensure_files; "
            f"ensure_files([RemoteFile('a.gz', '{_md5(FILES['/a.gz'])}', ('{stalled}',))], "
            f"sys.argv[1], dataset='toy', progress=False, timeout=30)")
    child = subprocess.Popen([sys.executable, "-c", code, str(folder)])
    deadline = time.monotonic() + 60
    while not list(folder.glob(".a.gz.part-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    left = list(folder.glob(".a.gz.part-*"))
    assert len(left) == 1 and left[0].name.startswith(f".a.gz.part-{child.pid}-")
    live = folder / f".a.gz.part-{os.getpid()}-busy"
    live.write_bytes(b"a download in progress elsewhere")
    legacy = folder / ".a.gz.part-k3j4h5"  # the naming before PIDs, from a day ago
    legacy.write_bytes(b"old")
    os.utime(legacy, (0, 0))
    ensure_files([_good(server, "a.gz")], folder, dataset="toy", progress=False)
    assert _listing(folder) == sorted(["a.gz", live.name])
