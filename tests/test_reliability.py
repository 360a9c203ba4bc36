"""Exact resume, crash-safe checkpoints, signals, divergence and resume guards."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ganzoo
import ganzoo.io
from ganzoo.checkpoint import list_checkpoints, load_checkpoint
from ganzoo.cli import main

TINY = ["--set", "g_width=8", "d_width=8", "nz=16"]


def _train(out: Path, variant: str, dataset: str, steps: int, *extra: str) -> int:
    # --device cpu: resume is bit-identical on the CPU only (CUDA kernels use atomics).
    return main(["train", variant, "--dataset", dataset, "--device", "cpu", "--steps", str(steps), "--batch-size", "16",
                 "--out", str(out), "--quiet", "--sample-every", "0", "--ckpt-every", "0", *extra])


@pytest.mark.parametrize("variant, dataset, extra", [
    ("vanilla", "8gaussians", ["--set", "toy_hidden=64"]),
    ("wgan-gp", "digits", TINY),
])
def test_resume_is_bit_identical(tmp_path, variant, dataset, extra):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert _train(straight, variant, dataset, 6, *extra) == 0
    assert _train(stopped, variant, dataset, 3, *extra) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "6", "--device", "cpu", "--quiet", "--sample-every", "0"]) == 0
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    assert a["step"] == b["step"] == 6
    for name, tensor in a["nets"].items():
        assert torch.equal(tensor, b["nets"][name]), name
    for key in a["optimizers"]:
        for pa, pb in zip(a["optimizers"][key]["state"].values(), b["optimizers"][key]["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    events = [json.loads(x) for x in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "resume", "step": 3, "checkpoint": "step-0000003.pt"} in events


def test_resume_stays_on_the_runs_device_on_a_gpu_machine(tmp_path, monkeypatch):
    """--device auto on resume means the run's own device, so a CPU run resumed
    on a machine with a GPU continues exactly (it used to move to CUDA and fail
    to load the CPU batch generator's state)."""
    import ganzoo.runs

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert _train(straight, "vanilla", "8gaussians", 4, "--set", "toy_hidden=32") == 0
    assert _train(stopped, "vanilla", "8gaussians", 2, "--set", "toy_hidden=32") == 0
    monkeypatch.setattr(ganzoo.runs, "cuda_available", lambda: True)  # a GPU "is present"
    assert main(["train", "--resume", str(stopped), "--steps", "4", "--quiet", "--sample-every", "0"]) == 0
    assert json.loads((stopped / "config.json").read_text())["device"] == "cpu"
    a, b = load_checkpoint(straight), load_checkpoint(stopped)
    for name, tensor in a["nets"].items():
        assert torch.equal(tensor, b["nets"][name]), name


def test_batch_stream_saved_on_another_device_type_is_reseeded_reproducibly():
    data = ganzoo.create_dataset("8gaussians", seed=3).prepare("cpu")
    data.sample(4)
    state = data.state_dict()
    assert state["device"] == "cpu"
    foreign = dict(state, device="cuda")  # as a CUDA run would have saved it
    first = ganzoo.create_dataset("8gaussians", seed=3).prepare("cpu")
    assert first.load_state_dict(foreign) is False
    second = ganzoo.create_dataset("8gaussians", seed=3).prepare("cpu")
    assert second.load_state_dict(foreign) is False
    assert torch.equal(first.sample(8).real, second.sample(8).real)  # reproducible
    exact = ganzoo.create_dataset("8gaussians", seed=3).prepare("cpu")
    assert exact.load_state_dict(state) is True
    assert torch.equal(exact.sample(8).real, data.sample(8).real)  # the same stream, continued


def test_checkpoint_holds_everything_needed(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "wgan-gp", "digits", 2, *TINY) == 0
    payload = load_checkpoint(run)
    assert {"nets", "optimizers", "step", "rng", "data", "config", "ganzoo_version", "extra"} <= set(payload)
    assert {"torch", "numpy", "python"} <= set(payload["rng"])
    assert {"generator", "order", "position"} <= set(payload["data"])
    assert payload["config"]["hparams"]["g_width"] == 8
    assert payload["health"] == {"finite": True, "max_abs_weight": payload["health"]["max_abs_weight"], "sane": True}
    assert (run / "checkpoints" / "sane").read_text().strip() == "step-0000002.pt"


def test_keep_only_the_newest_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "vanilla", "8gaussians", 5, "--ckpt-every", "1", "--keep", "2") == 0
    assert [p.name for p in list_checkpoints(run)] == ["step-0000004.pt", "step-0000005.pt"]


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "vanilla", "8gaussians", 3, "--ckpt-every", "1", "--keep", "0") == 0
    newest = run / "checkpoints" / "step-0000003.pt"
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    with pytest.warns(UserWarning, match="step-0000003.pt"):
        assert load_checkpoint(run)["step"] == 2
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 0
    assert "using step-0000002.pt" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 4


def test_crafted_checkpoint_is_refused_on_resume(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "x": Evil()}, evil)
    assert main(["train", "--resume", str(evil), "--quiet"]) == 2
    assert "refused" in capsys.readouterr().err and not (tmp_path / "pwned").exists()


def test_write_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    calls = {"n": 0}

    real_write = ganzoo.io.atomic_write

    def flaky_write(path, write):
        if path.name.endswith(".pt"):
            calls["n"] += 1
        if calls["n"] == 3 and path.name.endswith(".pt"):  # the third checkpoint: half written, then the disk is full
            def half(handle):
                handle.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(path, half)
        return real_write(path, write)

    monkeypatch.setattr(ganzoo.io, "atomic_write", flaky_write)
    assert _train(run, "vanilla", "8gaussians", 5, "--ckpt-every", "1", "--keep", "0") == 2
    err = capsys.readouterr().err
    assert "no space left on device" in err and "step-0000002.pt is intact" in err and err.count("\n") == 1
    assert [p.name for p in list_checkpoints(run)] == ["step-0000001.pt", "step-0000002.pt"]
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert load_checkpoint(run)["step"] == 2


class _NaNAtStep3(ganzoo.TwoPlayerVariant):
    name = "test-nan"
    paper = summary = "test"
    defaults = {**ganzoo.TwoPlayerVariant.defaults, "steps": 5}

    def d_loss(self, real_scores, fake_scores):
        return torch.nn.functional.softplus(-real_scores).mean() + torch.nn.functional.softplus(fake_scores).mean()

    def g_loss(self, fake_scores):
        self.calls = getattr(self, "calls", 0) + 1
        loss = -fake_scores.mean()
        return loss * float("nan") if self.calls == 3 else loss


class _NaNPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(_NaNAtStep3)


def test_nan_stops_with_step_phase_and_loss(tmp_path, register_plugin, capsys):
    register_plugin(_NaNPlugin(), "test-nan-plugin")
    run = tmp_path / "run"
    assert _train(run, "test-nan", "8gaussians", 5, "--ckpt-every", "1") == 2
    err = capsys.readouterr().err
    assert "diverged at step 3, phase G: G/loss is nan" in err
    assert "step-0000002.pt" in err
    assert load_checkpoint(run)["step"] == 2


def test_nan_can_be_skipped_and_counted(tmp_path, register_plugin):
    register_plugin(_NaNPlugin(), "test-nan-plugin")
    run = tmp_path / "run"
    assert _train(run, "test-nan", "8gaussians", 5, "--on-nan", "skip") == 0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 5 and last["skipped_steps"] == 1


def test_resume_guards(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "dcgan", "digits", 2, *TINY) == 0
    assert main(["train", "lsgan", "--resume", str(run), "--steps", "3", "--quiet"]) == 2
    assert "variant 'dcgan' -> 'lsgan'" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--dataset", "8gaussians", "--steps", "3"]) == 2
    assert "dataset 'digits' -> '8gaussians'" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "3", "--set", "d_width=16"]) == 2
    assert "d_width 8 -> 16" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "3", "--lr", "1e-4", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--steps", "2", "--quiet"]) == 2
    assert "already finished 2 of 2 steps" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 2  # nothing was touched

    assert main(["train", "--resume", str(run), "--steps", "3", "--lr", "1e-4", "--force", "--quiet"]) == 0
    payload = load_checkpoint(run)
    assert payload["step"] == 3
    assert payload["config"]["hparams"]["lr_g"] == 1e-4
    config = json.loads((run / "config.json").read_text())
    assert config["forced_on_resume"] == [{"step": 2, "lr_g": [2e-4, 1e-4], "lr_d": [2e-4, 1e-4]}]
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "event" in x]
    assert events[-1]["forced"] == {"lr_g": [2e-4, 1e-4], "lr_d": [2e-4, 1e-4]}


def test_forced_structural_change_is_still_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "dcgan", "digits", 2, *TINY) == 0
    assert main(["train", "--resume", str(run), "--steps", "3", "--set", "d_width=16", "--force", "--quiet"]) == 2
    assert "changes the networks" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 2


# -- processes and signals ---------------------------------------------------------
def _spawn(run: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ganzoo", "train", "vanilla", "--dataset", "8gaussians", "--steps", "1000000",
           "--out", str(run), "--sample-every", "0", "--log-every", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _has_steps(run: Path, n: int) -> bool:
    metrics = run / "metrics.jsonl"
    return metrics.exists() and len(metrics.read_text().splitlines()) >= n


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, signum, code):
    run = tmp_path / "run"
    proc = _spawn(run, "--ckpt-every", "0")
    try:
        _wait_for(lambda: _has_steps(run, 3))
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert f"resume with: ganzoo train --resume {run}" in err
    assert "Traceback" not in err
    payload = load_checkpoint(run)
    assert payload["step"] >= 3
    # The grid of where it stopped, beside the checkpoint (--sample-every 0 wrote none before).
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["losses.png", f"step-{payload['step']:07d}.png"]
    assert main(["train", "--resume", str(run), "--steps", str(payload["step"] + 2), "--quiet"]) == 0


def test_second_sigint_stops_at_once_without_damage(tmp_path):
    run = tmp_path / "run"
    proc = _spawn(run, "--ckpt-every", "1", "--set", "toy_hidden=1024")
    try:
        _wait_for(lambda: _has_steps(run, 3))
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert load_checkpoint(run)["step"] >= 1  # what is there is loadable


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "run"
    # Large nets make each save take a while, so the kills land inside writes.
    proc = _spawn(run, "--ckpt-every", "1", "--keep", "2", "--set", "toy_hidden=1024")
    try:
        _wait_for(lambda: len(list_checkpoints(run)) >= 2)
        time.sleep(0.37)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    payload = load_checkpoint(run)
    assert payload["step"] >= 2
    assert main(["train", "--resume", str(run), "--steps", str(payload["step"] + 1), "--quiet"]) == 0
    assert not list((run / "checkpoints").glob(".*.tmp"))
