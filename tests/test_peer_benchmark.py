"""The issue-18 benchmark scripts run end to end (tiny budgets: these check the scripts, not speed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
MNIST = SHARED_DATA / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"{MNIST} is absent (the canonical MNIST files)")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@needs_mnist
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_stock_loop_trains_and_reports(arch):
    done = _run("benchmarks/stock_wgan_gp.py", "--data-dir", str(MNIST), "--arch", arch, "--steps", "3",
                "--warmup", "1")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and result["ok"] and result["step_s"] > 0
    assert all(abs(result[k]) < 1e6 for k in ("d_loss", "g_loss"))


def test_stock_loop_reports_a_failure_as_a_result(tmp_path):
    done = _run("benchmarks/stock_wgan_gp.py", "--data-dir", str(tmp_path), "--steps", "3", "--warmup", "1")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and not result["ok"] and "FileNotFoundError" in result["error"]


@needs_mnist
def test_peer_table_has_both_loops_and_paired_ratios(tmp_path):
    out = tmp_path / "peer.json"
    done = _run("benchmarks/peer.py", "--data-dir", str(MNIST), "--arch", "mlp", "--rounds", "1", "--steps", "4",
                "--warmup", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| mlp |")]
    assert [row.split("|")[2].strip() for row in rows] == ["stock", "ganzoo"]
    assert rows[1].split("|")[4].strip().startswith("**")  # ganzoo's speed relative to stock
    measured = json.loads(out.read_text())["results"]["mlp"]
    assert all(r["ok"] and r["step_s"] > 0 for runs in measured.values() for r in runs)


def test_peer_refuses_bad_arguments(tmp_path):
    done = _run("benchmarks/peer.py", "--data-dir", str(tmp_path / "missing"))
    assert done.returncode == 2 and "is not a folder" in done.stderr
    done = _run("benchmarks/peer.py", "--data-dir", str(tmp_path), "--steps", "15", "--warmup", "10")
    assert done.returncode == 2 and "multiple of --warmup" in done.stderr


@needs_mnist
def test_scaling_table():
    done = _run("benchmarks/scaling.py", "--data-dir", str(MNIST), "--size", "32", "--batch", "64", "--procs", "1",
                "--steps", "2", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    assert "| 32 | 64 |" in done.stdout and "| 1 |" in done.stdout
