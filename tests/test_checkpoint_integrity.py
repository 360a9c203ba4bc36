"""Checkpoints that are damaged, malformed, foreign or blown up, and runs that fail early.

Issue 13: a flipped byte loaded silently; malformed checkpoints crashed
``--resume`` with KeyError tracebacks instead of being skipped; a stale
``latest`` pointer won over newer checkpoints; ``--resume`` forgot run options;
a foreign checkpoint was trained and rewrote config.json; after a divergence
the kept checkpoint already held exploded weights; an error caught after the
run directory was made left a directory nobody could retry or resume.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo import checkpoint
from ganzoo.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ganzoo.cli import main

SMALL = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", "--set", "toy_hidden=16"]


def _train(out: Path, steps: int, *extra: str, variant: str = "vanilla", dataset: str = "8gaussians") -> int:
    return main(["train", variant, "--dataset", dataset, "--steps", str(steps), "--out", str(out), *SMALL, *extra])


def _resume(run: Path | str, steps: int, *extra: str) -> int:
    return main(["train", "--resume", str(run), "--steps", str(steps), "--quiet", *extra])


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ckpt") / "run"
    assert _train(run, 3, "--ckpt-every", "1", "--keep", "0") == 0
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _flip_a_weight_byte(path: Path) -> None:
    """Change one byte inside a tensor's data record, leaving the zip structure intact."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    with open(path, "rb") as handle:  # the data follows the local header (30 bytes + name + extra)
        handle.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_is_detected_and_the_previous_checkpoint_used(three_checkpoints, tmp_path, capsys):
    run = _copy(three_checkpoints, tmp_path)
    newest = run / "checkpoints" / "step-0000003.pt"
    _flip_a_weight_byte(newest)
    torch.load(newest, weights_only=True)  # torch alone would load it, with one weight changed
    with pytest.warns(UserWarning, match="step-0000003.pt is damaged: the checksum of its record"):
        assert load_checkpoint(run)["step"] == 2
    assert main(["sample", str(newest), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err
    assert _resume(run, 4) == 0
    assert "using step-0000002.pt" in capsys.readouterr().err


MALFORMED = {
    "no rng": lambda p: p.pop("rng"),
    "no data": lambda p: p.pop("data"),
    "step is text": lambda p: p.update(step="abc"),
    "no seed": lambda p: p["config"].pop("seed"),
    "optimizer state is a list": lambda p: p["optimizers"].update(G=[1, 2]),
    "numpy state cut": lambda p: p["rng"]["numpy"].update(keys=torch.zeros(3, dtype=torch.int64)),
    "python state cut": lambda p: p["rng"].update(python=[3, [1, 2], None]),
    "data order is float": lambda p: p["data"].update(order=torch.zeros(4)),
    "nets empty": lambda p: p.update(nets={}),
}


@pytest.mark.parametrize("damage", sorted(MALFORMED))
def test_a_malformed_newest_checkpoint_is_skipped_with_a_warning(damage, three_checkpoints, tmp_path, capsys):
    run = _copy(three_checkpoints, tmp_path)
    newest = run / "checkpoints" / "step-0000003.pt"
    payload = torch.load(newest, weights_only=True)
    MALFORMED[damage](payload)
    torch.save(payload, newest)  # loads with weights_only=True, so only the schema catches it
    with pytest.warns(UserWarning, match="step-0000003.pt is malformed"):
        assert load_checkpoint(run)["step"] == 2
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 0
    assert _resume(run, 4) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "using step-0000002.pt" in err
    assert load_checkpoint(run)["step"] == 4
    # Named directly, the malformed file is a one-line error.
    torch.save(payload, tmp_path / "bad.pt")
    assert _resume(tmp_path / "bad.pt", 5) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is malformed" in err


def test_resume_uses_the_newest_valid_checkpoint_whatever_a_pointer_says(three_checkpoints, tmp_path):
    run = _copy(three_checkpoints, tmp_path)
    (run / "checkpoints" / "latest").write_text("step-0000001.pt\n")  # the pointer older versions wrote
    assert load_checkpoint(run)["step"] == 3
    assert _resume(run, 4) == 0
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "resume", "step": 3, "checkpoint": "step-0000003.pt"} in events


def test_resume_keeps_the_runs_options_unless_given_again(tmp_path):
    run = tmp_path / "run"
    assert _train(run, 2, "--ckpt-every", "1", "--keep", "0", "--log-every", "1") == 0
    assert _resume(run, 4) == 0  # no --ckpt-every: the run's own 1, not the default 1000
    assert [p.name for p in list_checkpoints(run)] == [f"step-000000{i}.pt" for i in (1, 2, 3, 4)]
    steps = [json.loads(x).get("step") for x in (run / "metrics.jsonl").read_text().splitlines()
             if "event" not in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # --log-every 1 kept too
    assert _resume(run, 8, "--ckpt-every", "2", "--keep", "2") == 0  # given again: applied and recorded
    assert [p.name for p in list_checkpoints(run)] == ["step-0000006.pt", "step-0000008.pt"]
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["ckpt_every"] == 2 and options["keep"] == 2 and options["log_every"] == 1


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    mine, other = tmp_path / "mine", tmp_path / "other"
    assert _train(mine, 2) == 0
    assert _train(other, 3, "--seed", "5", variant="lsgan") == 0
    config_before = (mine / "config.json").read_text()
    shutil.copy(other / "checkpoints" / "step-0000003.pt", mine / "checkpoints" / "step-0000003.pt")
    assert _resume(mine, 5) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to another run" in err and "variant 'lsgan' (run: 'vanilla')" in err
    assert (mine / "config.json").read_text() == config_before


class _BlowsUpAfterStep2(ganzoo.TwoPlayerVariant):
    """Trains normally for two steps, then a D weight explodes (finite), then D's weights are NaN."""

    name = "test-blowup"
    paper = summary = "test"

    def d_loss(self, real_scores, fake_scores):
        return torch.nn.functional.softplus(-real_scores).mean() + torch.nn.functional.softplus(fake_scores).mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()

    def end_step(self, state):
        if state.step >= 3:
            with torch.no_grad():
                list(state.nets["D"].parameters())[-1].fill_(2e4)  # D's output bias: finite, blown up
        if state.step >= 5:
            with torch.no_grad():
                next(state.nets["D"].parameters()).fill_(float("nan"))


class _BlowUpPlugin:
    @ganzoo.hookimpl
    def register_variants(self, register):
        register(_BlowsUpAfterStep2)


def test_after_a_divergence_the_last_sane_checkpoint_is_kept_and_named(tmp_path, register_plugin, capsys):
    register_plugin(_BlowUpPlugin(), "test-blowup-plugin")
    run = tmp_path / "run"
    assert _train(run, 8, "--ckpt-every", "1", "--keep", "1", variant="test-blowup") == 2
    err = capsys.readouterr().err
    # Said once, when the first blown-up checkpoint is written (finite weights do not stop a run).
    assert err.count("ganzoo: warning: checkpoint step-0000003.pt holds weights as large as 2e+04") == 1
    assert err.count("ganzoo: warning") == 1
    sane = run / "checkpoints" / "step-0000002.pt"
    assert "diverged at step 6" in err and f"the last checkpoint with sane weights is {sane}" in err
    # --keep 1 keeps the newest, and never deletes the last sane one.
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002.pt", "step-0000005.pt"]
    assert load_checkpoint(run)["health"]["sane"] is False
    assert load_checkpoint(sane)["health"] == {"finite": True, "sane": True,
                                               "max_abs_weight": load_checkpoint(sane)["health"]["max_abs_weight"]}


def test_a_huge_learning_rate_says_the_run_must_restart(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 5, "--lr", "1e6", "--ckpt-every", "1") == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("ganzoo: warning: checkpoint step-0000001.pt holds weights as large as")
    assert "no checkpoint with sane weights exists" in error and "must restart" in error


def test_rotation_never_deletes_the_last_sane_checkpoint(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for step, scale in ((1, 1.0), (2, 1.0), (3, 1e9), (4, float("inf")), (5, 1e9)):
        save_checkpoint(folder / checkpoint.checkpoint_name(step), {"nets": {"w": torch.full((3,), scale)}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-0000002.pt", "step-0000004.pt",
                                                                   "step-0000005.pt"]
    assert checkpoint.last_sane_checkpoint(tmp_path / "run").name == "step-0000002.pt"
    assert checkpoint.weights_health({"w": torch.tensor([1.0, float("nan")])})["finite"] is False
    assert checkpoint.weights_health({"n": torch.tensor(10**9)})["sane"] is True  # counters are not weights


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 5, "--lr", "1e6") == 2  # diverges at step 2; the only checkpoint would be the final one
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run} was left as it was found (nothing to resume)" in err
    assert not run.exists()
    assert _train(run, 2) == 0  # a retry is not told "already holds a run"
    # A folder that held the user's files keeps exactly those.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert _train(mine, 5, "--lr", "1e6") == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_run_killed_before_its_first_checkpoint_is_explained(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 2) == 0
    shutil.rmtree(run / "checkpoints")  # as a run SIGKILLed before its first checkpoint leaves it
    assert _train(run, 2) == 2
    assert "stopped before its first checkpoint (nothing to resume)" in capsys.readouterr().err
    assert _resume(run, 3) == 2
    assert "nothing to continue" in capsys.readouterr().err
