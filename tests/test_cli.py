"""The command line end to end, and its handling of bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from ganzoo.checkpoint import load_checkpoint
from ganzoo.cli import main


def test_train_then_sample_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "wgan-gp", "--steps", "4", "--batch-size", "16", "--out", str(run),
                 "--sample-every", "2", "--ckpt-every", "2", "--log-every", "1", "--quiet",
                 "--set", "g_width=8", "d_width=8", "nz=16"])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["variant"] == "wgan-gp" and config["dataset"] == "digits"
    assert config["hparams"]["steps"] == 4 and config["hparams"]["d_width"] == 8
    assert config["data"] == {"shape": [1, 28, 28], "num_classes": 10, "size": 20000, "kind": "image",
                              "channels": 1}

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("D/loss", "D/real", "D/fake", "D/grad_norm", "D/gp", "G/loss", "step_time"):
        assert key in records[-1], key

    assert sorted(p.name for p in (run / "samples").iterdir()) == ["final.png", "losses.png", "step-0000002.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["sane", "step-0000002.pt", "step-0000004.pt"]
    payload = load_checkpoint(run)
    assert payload["step"] == 4 and set(payload["nets"]) and set(payload["optimizers"]) == {"G", "D"}

    grid = Image.open(run / "samples" / "final.png")
    assert grid.size == (2 * (8 * 30 + 2),) * 2  # 8x8 tiles of 28+2 px, upscaled x2

    out = tmp_path / "more.png"
    assert main(["sample", str(run), "--n", "10", "--seed", "3", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 0
    assert "from step 4" in capsys.readouterr().out


def test_conditional_sampling_honours_the_label(tmp_path, monkeypatch):
    import ganzoo

    run = tmp_path / "cgan"
    assert main(["train", "cgan", "--steps", "2", "--batch-size", "8", "--out", str(run), "--quiet",
                 "--set", "g_width=8", "d_width=8"]) == 0
    loaded = ganzoo.load_generator(run)
    seen = []
    generator = loaded.nets["G"]
    original = generator.forward
    monkeypatch.setattr(generator, "forward", lambda z, labels=None: seen.append(labels) or original(z, labels))
    images = ganzoo.sample(loaded, n=12, label=7)
    assert images.shape == (12, 1, 28, 28)
    assert seen and seen[0].tolist() == [7] * 12
    assert main(["sample", str(run), "--label", "3", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0


def test_sample_from_a_toy_run_draws_a_scatter_plot(tmp_path):
    run = tmp_path / "toy"
    assert main(["train", "vanilla", "--dataset", "8gaussians", "--steps", "3", "--out", str(run),
                 "--quiet"]) == 0
    assert Image.open(run / "samples" / "final.png").size == (512, 512)
    out = tmp_path / "toy.png"
    assert main(["sample", str(run / "checkpoints" / "step-0000003.pt"), "--n", "100", "--out", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "nosuchgan"], "unknown variant 'nosuchgan'"),
    (["train", "dcgan", "--dataset", "mnsit"], "unknown dataset 'mnsit'"),
    (["train", "cgan", "--dataset", "swissroll"], "needs labeled data"),
    (["train", "dcgan", "--steps", "0"], "--steps: expected a positive integer, got '0'"),
    (["train", "dcgan", "--batch-size", "-3"], "--batch-size: expected a positive integer"),
    (["train", "dcgan", "--lr", "0"], "--lr: expected a positive number, got '0'"),
    (["train", "dcgan", "--lr", "nan"], "--lr: expected a positive number"),
    (["train", "dcgan", "--set", "n_critic"], "expected KEY=VALUE"),
    (["train", "dcgan", "--set", "nope=1"], "has no hyperparameter 'nope'"),
    (["train", "dcgan", "--set", "n_critic=-1"], "n_critic must be positive"),
    (["train", "dcgan", "--device", "tpu"], "unknown device 'tpu'"),
    (["sample", "/no/such/run"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_unwritable_output_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert main(["train", "dcgan", "--out", str(locked / "run"), "--quiet"]) == 2
        assert "cannot write to --out" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_output_that_is_a_file_or_an_existing_run(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    assert main(["train", "dcgan", "--out", str(a_file), "--quiet"]) == 2
    assert a_file.read_text() == "keep me"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["train", "dcgan", "--out", str(run), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "config.json").read_text() == "{}"


def test_sample_label_errors(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "vanilla", "--steps", "1", "--out", str(run), "--quiet"]) == 0
    assert main(["sample", str(run), "--label", "2"]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_malicious_checkpoint_is_refused(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "x": Evil()}, bad)
    assert main(["sample", str(bad)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_help_texts():
    for argv in (["--help"], ["train", "--help"], ["list", "--help"], ["sample", "--help"]):
        result = subprocess.run([sys.executable, "-m", "ganzoo", *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage: ganzoo" in result.stdout
    result = subprocess.run([sys.executable, "-m", "ganzoo", "train", "dcgan", "--steps", "x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_output_under_a_file_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("data")
    assert main(["train", "dcgan", "--out", str(blocker / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and "not a directory" in err
    assert blocker.read_text() == "data"


def test_unwritable_output_directory_as_seen_by_access(tmp_path, capsys, monkeypatch):
    """The same check as for a read-only folder, for test runs as root (who may write anywhere)."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["train", "dcgan", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
