"""CPU thread defaults (ganzoo/cpu_threads.py) and --threads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ganzoo import cpu_threads
from ganzoo.cli import main


def _fake_sysfs(tmp_path, cores: list[tuple[str, str]]):
    for cpu, (package, core) in enumerate(cores):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(package + "\n")
        (topology / "core_id").write_text(core + "\n")
    return tmp_path


def test_physical_cores_counts_hyperthreads_once(tmp_path):
    sysfs = _fake_sysfs(tmp_path, [("0", "0"), ("0", "1"), ("0", "0"), ("0", "1"), ("1", "0")])
    assert cpu_threads.physical_cores([0, 1, 2, 3, 4], sysfs=sysfs) == 3
    assert cpu_threads.physical_cores([0, 2], sysfs=sysfs) == 1  # two siblings of one core
    # No topology (a container without /sys): the logical CPUs.
    assert cpu_threads.physical_cores([0, 1, 7], sysfs=tmp_path / "missing") == 3


def test_other_busy_processes_reads_the_run_queue(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert cpu_threads.other_busy_processes(stat, samples=3, gap_s=0) == 2  # this process excluded
    stat.write_text("procs_running 1\n")
    assert cpu_threads.other_busy_processes(stat, samples=1, gap_s=0) == 0
    assert cpu_threads.other_busy_processes(tmp_path / "none", samples=1, gap_s=0) is None


@pytest.mark.parametrize("cores, busy, expected", [(2, 0, 2), (2, 1, 1), (2, 5, 1), (8, 3, 5), (4, None, 4)])
def test_default_threads_leaves_busy_cores_alone(monkeypatch, cores, busy, expected):
    monkeypatch.setattr(cpu_threads, "physical_cores", lambda: cores)
    monkeypatch.setattr(cpu_threads, "other_busy_processes", lambda: busy)
    threads, reason = cpu_threads.default_threads()
    assert threads == expected
    assert ("--threads N" in reason) == (expected < cores)


def test_prepare_openmp_respects_the_user_and_a_loaded_torch():
    # torch is imported in this process: too late to change libgomp's policy.
    assert "torch" in sys.modules
    env: dict[str, str] = {}
    assert cpu_threads.prepare_openmp(env) is False and env == {}


def test_prepare_openmp_before_torch_in_a_fresh_process():
    code = ("import os, sys; from ganzoo.cpu_threads import prepare_openmp; "
            "assert 'torch' not in sys.modules; first = prepare_openmp(busy=1); "
            "os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'; print(first, prepare_openmp(), os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "ACTIVE"]


def test_use_threads_sets_and_restores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "default_threads", lambda: (1, "test"))
    before = torch.get_num_threads()
    with cpu_threads.use_threads(None) as chosen:
        assert chosen == 1 and torch.get_num_threads() == 1
        assert cpu_threads.describe() == "1 thread: test"
    assert torch.get_num_threads() == before
    with cpu_threads.use_threads(2) as chosen:
        assert chosen == 2 and torch.get_num_threads() == 2
        assert cpu_threads.describe() == "2 threads: --threads"
    assert torch.get_num_threads() == before and ":" not in cpu_threads.describe()


def test_omp_num_threads_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cpu_threads, "default_threads", lambda: pytest.fail("the default must not be used"))
    with cpu_threads.use_threads(None) as chosen:
        assert chosen == torch.get_num_threads()


@pytest.mark.parametrize("value", ["0", "-1", "5000"])
def test_bad_threads_is_a_one_line_error(value, tmp_path, capsys):
    assert main(["train", "vanilla", "--steps", "1", "--threads", value, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads must be between 1 and 4096" in err[0]
    assert not (tmp_path / "run").exists()


def test_train_start_line_says_its_threads(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "default_threads",
                        lambda: (1, "1 other busy process on 2 physical cores; --threads N to choose"))
    before = torch.get_num_threads()
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    assert ("(cpu, 1 thread: 1 other busy process on 2 physical cores; --threads N to choose)"
            in capsys.readouterr().err)
    assert torch.get_num_threads() == before


def test_prepare_openmp_asks_for_passive_waiting_only_beside_busy_processes():
    env: dict[str, str] = {}
    code = ("import os, sys; from ganzoo.cpu_threads import prepare_openmp; "
            "print(prepare_openmp(busy=0), os.environ.get('OMP_WAIT_POLICY'), "
            "prepare_openmp(busy=2), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None", "True", "PASSIVE"]


def test_own_running_threads_reads_each_tasks_state(tmp_path):
    for tid, state in [(1, "R"), (2, "S"), (3, "R"), (4, "D")]:
        (tmp_path / str(tid)).mkdir()
        # A command name with spaces and parentheses: the state follows the last ")".
        (tmp_path / str(tid) / "stat").write_text(f"{tid} (py (x) y) {state} 1 2 3\n")
    assert cpu_threads.own_running_threads(tmp_path) == 2
    assert cpu_threads.own_running_threads(tmp_path / "gone") == 1
    stat = tmp_path / "stat"
    stat.write_text("procs_running 5\n")
    assert cpu_threads.others_running_now(stat, tmp_path) == 3  # 5 runnable, 2 of them ours
    assert cpu_threads.others_running_now(tmp_path / "nostat", tmp_path) is None


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_load_follower_changes_threads_once_the_load_settles():
    looks, threads, clock = iter([0, 1, 1, 1, 0, 3, 0, 0]), [2], _Clock()
    follower = cpu_threads.LoadFollower(cores=2, interval_s=2.0, patience=2, look=lambda: next(looks),
                                        get_threads=lambda: threads[0],
                                        set_threads=lambda n: threads.__setitem__(0, n), clock=clock)
    seen = []
    for _ in range(8):
        seen.append(follower.poll())
        assert follower.poll() is None  # within interval_s: no look at all
        clock.now += 2.0
    # 0 others: 2 threads already; one busy process twice in a row: down to 1; a blip of 3 others
    # between idle looks changes nothing; idle twice in a row: back to 2.
    assert seen == [None, None, (2, 1, 1), None, None, None, None, (1, 2, 0)]
    assert threads == [2]


def test_follow_load_runs_only_for_the_default_on_cpu(tmp_path, monkeypatch):
    from ganzoo.events import Observers, Run

    class Follower:
        def __init__(self):
            self.polls = 0

        def poll(self):
            self.polls += 1
            return (2, 1, 1) if self.polls == 2 else None

    records = []

    class Recorder(cpu_threads.Observer):
        def on_log(self, run, state, record):
            records.append(record)

    def run_on(device, following):
        observer = cpu_threads.FollowLoad(follower_factory=Follower)
        run = Run(tmp_path, {}, None, None, None, torch.device(device), 10)
        run.observers = Observers([observer, Recorder()])
        state = type("State", (), {"step": 0})()
        monkeypatch.setattr(cpu_threads, "_following", following)
        run.emit("on_start", state=state)
        for step in range(3):
            state.step = step + 1
            run.emit("on_step", state=state)
        return observer

    run_on("cpu", following=False)
    run_on("meta", following=True)
    assert records == []
    run_on("cpu", following=True)
    assert records == [{"event": "threads", "step": 2, "threads": 1, "was": 2, "others_running": 1}]


def test_user_chosen_threads_are_not_followed(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "default_threads", lambda: (1, "test"))
    with cpu_threads.use_threads(None):
        assert cpu_threads.following_load()
        with cpu_threads.use_threads(2):
            assert not cpu_threads.following_load()
        assert cpu_threads.following_load()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with cpu_threads.use_threads(None):
        assert not cpu_threads.following_load()
