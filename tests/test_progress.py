"""The progress display (ganzoo/progress.py) and where the trainer and one-off tasks use it."""
from __future__ import annotations

import io

import pytest

import ganzoo
from ganzoo import outputs, progress
from ganzoo.cli import main
from ganzoo.runs import resume


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_without_a_terminal_lines_are_plain_and_timed(monkeypatch):
    log = io.StringIO()
    bar = progress.Bar("job", 10, unit="step", stream=log)
    for _ in range(10):
        bar.update()
    assert log.getvalue() == ""  # nothing before LOG_EVERY_S has passed
    bar.set_postfix({"D/loss": 0.5})
    bar.close()
    text = log.getvalue()
    assert text.count("\n") == 1 and "job" in text and "10/10" in text and "D/loss 0.5" in text
    assert "\r" not in text and "\x1b" not in text
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    log = io.StringIO()
    bar = progress.Bar("job", 3, stream=log)
    for _ in range(3):
        bar.update()
    bar.close()
    assert log.getvalue().count("\n") == 4  # one line per update (interval 0), one at the end


def test_on_a_terminal_tqdm_redraws_one_line():
    tty = Tty()
    bar = progress.Bar("job", 5, unit="step", stream=tty)
    for _ in range(5):
        bar.update()
    bar.close()
    out = tty.getvalue()
    assert "\r" in out and out.endswith("\n") and "5/5" in out and "step/s" in out


def test_silenced_prints_nothing():
    log, tty = io.StringIO(), Tty()
    with progress.silenced():
        assert not progress.enabled()
        with progress.task("work", 2, stream=log) as bar:
            bar.update(2)
        other = progress.Bar("x", 2, stream=tty)
        other.update(2)
        other.close()
    assert log.getvalue() == "" and tty.getvalue() == "" and progress.enabled()


def test_a_task_says_what_it_does_and_how_long_it_took():
    log = io.StringIO()
    with progress.task("rendering things", 4, stream=log) as bar:
        bar.update(4)
    lines = log.getvalue().splitlines()
    assert lines[0] == "ganzoo: rendering things ..."
    assert lines[-1].startswith("ganzoo: rendering things: done in ")
    log = io.StringIO()
    with pytest.raises(RuntimeError), progress.task("compiling", stream=log):
        raise RuntimeError
    assert log.getvalue().splitlines()[-1].startswith("ganzoo: compiling: failed after ")


def test_the_training_bar_starts_after_the_first_step(monkeypatch, tmp_path):
    """Its rate and ETA leave out the first step (kernel builds, warm-up): it starts there."""
    made = []

    class Recorder(progress.Bar):
        def __init__(self, desc, total=None, **kwargs):
            made.append((desc, total, kwargs.get("initial")))
            super().__init__(desc, total, **kwargs)
            self.updates = 0

        def update(self, n=1):
            self.updates += n
            super().update(n)

    monkeypatch.setattr(outputs, "Bar", Recorder)
    options = ganzoo.TrainOptions(device="cpu", sample_every=0, ckpt_every=2, log_every=1, progress=True)
    ganzoo.train("vanilla", "ring", out=tmp_path / "run", hparams={"steps": 4}, options=options)
    assert made == [("vanilla/ring", 4, 1)]
    resume(tmp_path / "run", hparams={"steps": 6}, options=options)
    assert made[-1] == ("vanilla/ring", 6, 5)  # resumed at 4: the bar starts after step 5
    quiet = ganzoo.TrainOptions(device="cpu", sample_every=0, ckpt_every=0, progress=False)
    ganzoo.train("vanilla", "ring", out=tmp_path / "quiet", hparams={"steps": 2}, options=quiet)
    assert len(made) == 2


def test_quiet_and_piped_training_output_is_clean(tmp_path, capsys):
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "3", "--quiet",
                 "--out", str(tmp_path / "quiet")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "3", "--out", str(tmp_path / "log")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert "training vanilla on ring" in err and "3/3" in err  # the closing line of the bar


def test_digits_rendering_is_a_labelled_one_off_task(monkeypatch, tmp_path, capsys):
    from ganzoo.data import digits

    monkeypatch.setattr(digits.Digits, "count", 200)
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path))
    ganzoo.get_dataset("digits")().prepare("cpu")
    err = capsys.readouterr().err
    assert "ganzoo: rendering the 200 digits (once; cached in" in err and ": done in " in err
    ganzoo.get_dataset("digits")().prepare("cpu")  # cached now: no task
    assert capsys.readouterr().err == ""
