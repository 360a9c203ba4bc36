"""A real full disk: a small tmpfs mounted in a private mount namespace.

Issue 13, broken promise 2: the earlier test mocked an ``OSError``, while a
real full disk made torch's zip writer raise ``RuntimeError ... unexpected
pos`` with a traceback. Here the run writes onto a filesystem that really
fills up. Skipped where no mount namespace can be made (``unshare -rm``).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _can_mount() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null "
                            "|| mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="cannot mount a tmpfs in a private mount namespace here")


def _on_small_disk(tmp_path: Path, size_kb: int, train_args: str) -> dict[str, str]:
    """Run ``ganzoo train`` with its --out on a fresh tmpfs of ``size_kb``; report what it left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = textwrap.dedent(f"""
        set -u
        mount -t tmpfs -o size={size_kb}k tmpfs {disk}
        {sys.executable} -m ganzoo train vanilla --dataset 8gaussians --device cpu --batch-size 16 --quiet \\
            --set toy_hidden=16 --out {disk}/run {train_args} 2> {tmp_path}/stderr
        echo "rc=$?"
        echo "tmp=$(find {disk} -name '.*.tmp' -o -name '*.part*' | wc -l)"
        {sys.executable} - <<'EOF'
        import warnings
        from ganzoo.checkpoint import load_checkpoint
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                print("loaded=", load_checkpoint("{disk}/run")["step"], sep="")
            except Exception as exc:
                print("loaded=none", type(exc).__name__)
        EOF
    """)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=600)
    report = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    report["stderr"] = (tmp_path / "stderr").read_text()
    return report


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_previous_survives(tmp_path):
    # Checkpoints of this run are about 55 KB; with --keep 0 the 400 KB disk fills after a few.
    report = _on_small_disk(tmp_path, 400, "--steps 40 --ckpt-every 1 --keep 0 --sample-every 0 --log-every 1000")
    err = report["stderr"]
    assert report["rc"] == "2", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not write checkpoint" in err and "no space left on device" in err
    assert "is intact" in err
    assert report["tmp"] == "0"  # no half-written temporary file left
    kept = int(report["loaded"])  # the newest checkpoint on the full disk loads
    assert 1 <= kept < 40
    assert f"step-{kept:07d}.pt is intact" in err


def test_a_sample_grid_on_a_full_disk_is_one_line(tmp_path):
    report = _on_small_disk(tmp_path, 200, "--steps 60 --ckpt-every 0 --sample-every 1 --log-every 1000")
    err = report["stderr"]
    assert report["rc"] == "2", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not write" in err and "samples/step-" in err and "no space left on device" in err
    assert "no checkpoint was written yet" in err
    assert report["tmp"] == "0"


def test_the_metrics_log_on_a_full_disk_is_one_line_and_nothing_is_left(tmp_path):
    report = _on_small_disk(tmp_path, 60, "--steps 400 --ckpt-every 0 --sample-every 0 --log-every 1")
    err = report["stderr"]
    assert report["rc"] == "2", err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not write" in err and "metrics.jsonl: no space left on device" in err
    assert "was left as it was found" in err  # no checkpoint yet: the run directory is rolled back


def test_atomic_torch_save_turns_a_full_disk_into_an_oserror(tmp_path):
    """Every torch.save ganzoo does (checkpoints, the evaluation classifier's cache) goes through
    atomic_torch_save: on a full disk an ENOSPC OSError, not torch's RuntimeError, and no file left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=256k tmpfs {disk}
        {sys.executable} - <<'EOF'
        import errno, os, torch
        from ganzoo.io import atomic_torch_save
        try:
            atomic_torch_save("{disk}/big.pt", {{"w": torch.zeros(1 << 20)}})
        except OSError as exc:
            print("oserror", exc.errno == errno.ENOSPC, exc.filename)
        print("left", sorted(os.listdir("{disk}")))
        EOF
    """)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert f"oserror True {disk}/big.pt" in done.stdout, done.stdout + done.stderr
    assert "left []" in done.stdout
