"""Cases found past issue 13's list: bad environment numbers, half-written log lines,
and filesystem errors anywhere in a command."""
from __future__ import annotations

import json
from pathlib import Path

from ganzoo.cli import main

SMALL = ["--device", "cpu", "--batch-size", "16", "--quiet", "--sample-every", "0", "--dataset", "8gaussians",
         "--set", "toy_hidden=16"]


def _train(out: Path, steps: int, *extra: str) -> int:
    return main(["train", "vanilla", "--steps", str(steps), "--out", str(out), *SMALL, *extra])


def test_a_bad_number_in_an_environment_variable_is_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    monkeypatch.setenv("GANZOO_IN_MEMORY_LIMIT_MB", "abc")
    assert main(["train", "dcgan", "--dataset", f"folder:{tmp_path}", "--batch-size", "2", "--steps", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("ganzoo: error: GANZOO_IN_MEMORY_LIMIT_MB='abc' is not an integer; set it to an integer "
                   "of at least 0 or unset it\n")


def test_a_half_written_log_line_is_cut_before_a_resume_appends(tmp_path):
    run = tmp_path / "run"
    assert _train(run, 2, "--log-every", "1") == 0
    with open(run / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"step": 3, "ti')  # a full disk or a kill in the middle of a record
    assert main(["train", "--resume", str(run), "--steps", "4", "--quiet"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in records] == [1, 2, 2, 3, 4]  # the resume event is at step 2


def test_a_filesystem_error_anywhere_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 2) == 0
    (run / "config.json").unlink()
    (run / "config.json").mkdir()  # config.json cannot be replaced now
    assert main(["train", "--resume", str(run), "--steps", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "config.json" in err


def test_a_loose_checkpoint_file_is_not_resumed_into_its_grandparent_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, 2) == 0
    loose = tmp_path / "elsewhere" / "inner"
    loose.mkdir(parents=True)
    (loose / "step-0000002.pt").write_bytes((run / "checkpoints" / "step-0000002.pt").read_bytes())
    assert main(["train", "--resume", str(loose / "step-0000002.pt"), "--steps", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not inside a run directory's checkpoints/ folder" in err
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["inner"]  # nothing written beside it
    # Put where the message says, it resumes.
    (tmp_path / "adopted" / "checkpoints").mkdir(parents=True)
    (tmp_path / "adopted" / "checkpoints" / "step-0000002.pt").write_bytes((loose / "step-0000002.pt").read_bytes())
    assert main(["train", "--resume", str(tmp_path / "adopted"), "--steps", "3", "--quiet"]) == 0


def test_an_empty_path_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "vanilla", "--out", "", *SMALL]) == 2
    assert "--out: expected a path, got an empty string" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
