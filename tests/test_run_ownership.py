"""One owner per run directory (ganzoo.runlock), and plugins that call sys.exit.

Issue 13's first and third broken promises: two runs started on one --out both
passed the "already holds a run" check and overwrote each other; a plugin's
``sys.exit`` ended every command without naming the plugin.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ganzoo.cli import main
from ganzoo.errors import GanzooError
from ganzoo.runlock import LOCK_NAME, RunLock

from .test_registry import _fake_distribution, _ganzoo

SMALL = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", "--dataset", "8gaussians",
         "--set", "toy_hidden=16"]


def _train(out: Path, steps: int = 2, *extra: str) -> int:
    return main(["train", "vanilla", "--steps", str(steps), "--out", str(out), *extra, *SMALL])


def _write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "earlier"}))
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_directory_held_by_a_live_process_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    lock = _write_lock(run, os.getpid())  # this very process: certainly alive
    assert _train(run) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"in use by process {os.getpid()} on {socket.gethostname()}" in err
    assert f"remove {lock}" in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written, the lock kept
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    run = tmp_path / "run"
    _write_lock(run, _dead_pid())
    assert _train(run) == 0
    assert (run / "config.json").is_file() and not (run / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_not_guessed_at(tmp_path, capsys):
    run = tmp_path / "run"
    _write_lock(run, 12345, host="some-other-node")
    assert _train(run) == 2
    assert "process 12345 on some-other-node" in capsys.readouterr().err


def test_resume_while_another_process_trains_the_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 2) == 0
    config = (run / "config.json").read_text()
    _write_lock(run, os.getpid())
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 2
    assert "is in use by process" in capsys.readouterr().err
    assert (run / "config.json").read_text() == config
    (run / LOCK_NAME).unlink()
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 0
    assert not (run / LOCK_NAME).exists()


def test_a_refused_fresh_run_leaves_no_directory_behind(tmp_path):
    """The lock is taken after every check; a run that cannot own the directory
    removes the (empty) directory it created."""
    run = tmp_path / "new"
    lock = RunLock(run)
    run.mkdir()
    lock.acquire()
    try:
        assert _train(run) == 2
    finally:
        lock.release()
    assert list(run.iterdir()) == []


def test_two_runs_started_on_one_out_at_once_never_overwrite_each_other(tmp_path):
    run = tmp_path / "dup"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmds = [[sys.executable, "-m", "ganzoo", "train", "vanilla", "--steps", "30", "--seed", str(seed),
             "--out", str(run), *SMALL] for seed in (0, 1)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in cmds]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert len(loser.strip().splitlines()) == 1
    assert "in use by process" in loser or "already holds a run" in loser
    winner_seed = next(seed for seed, (code, _) in zip((0, 1), results) if code == 0)
    assert json.loads((run / "config.json").read_text())["seed"] == winner_seed
    assert not (run / LOCK_NAME).exists()



def test_the_lock_is_linked_into_place_already_holding_its_owner(tmp_path, monkeypatch):
    """A process that loses the race reads the winner's PID, never an empty file
    (CI once saw "its lock file is empty" when the loser read between create and write)."""
    seen = []
    real_link = os.link

    def watching_link(src, dst):
        seen.append(json.loads(Path(src).read_text()))
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", watching_link)
    lock = RunLock(tmp_path).acquire()
    assert seen == [json.loads((tmp_path / LOCK_NAME).read_text())] and seen[0]["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # the staged copy is gone
    lock.release()
    assert list(tmp_path.iterdir()) == []


def test_without_hard_links_the_lock_falls_back_to_an_exclusive_create(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    with pytest.raises(GanzooError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()  # still exclusive
    lock.release()


# -- plugins that call sys.exit ---------------------------------------------------
@pytest.fixture
def exiting_plugins(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "zoo_exit_at_import", "import sys\nsys.exit(3)\n", "exit-at-import")
    _fake_distribution(site, "zoo_exit_in_hook", """
        import ganzoo

        @ganzoo.hookimpl
        def register_variants(register):
            raise SystemExit(7)
    """, "exit-in-hook")
    return site


def test_a_plugin_calling_sys_exit_is_isolated_and_named(exiting_plugins):
    result = _ganzoo(exiting_plugins, "list", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    failures = {f["plugin"]: f["problem"] for f in listing["plugin_failures"]}
    assert failures["exit-at-import"] == "failed to load: SystemExit: 3"
    assert failures["exit-in-hook"] == "register_variants: SystemExit: 7"
    assert "dcgan" in [v["name"] for v in listing["variants"]]
    trained = _ganzoo(exiting_plugins, "check", "vanilla", "--no-toolkit")
    assert trained.returncode == 0, trained.stderr
