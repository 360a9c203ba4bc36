"""Training events, observers and loggers (ganzoo/events.py, ganzoo/outputs.py, the
register_loggers hook, the TensorBoard logger) and the loss plot (`ganzoo plot`)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

import ganzoo
from ganzoo import plugins
from ganzoo.cli import main
from ganzoo.errors import GanzooError
from ganzoo.outputs import plot_series, read_metrics
from ganzoo.runs import resume


class Recorder(ganzoo.Observer):
    """Writes down every event it sees."""

    name = "recorder"
    description = "records events (tests)"
    seen: list = []

    def on_start(self, run, state):
        self.seen.append(("start", state.step, run.resumed))

    def on_step(self, run, state):
        self.seen.append(("step", state.step))

    def on_log(self, run, state, record):
        self.seen.append(("log", record.get("step"), record.get("event") or sorted(record)))

    def on_samples(self, run, state, images, path):
        self.seen.append(("samples", state.step, path.name, tuple(images.shape)))

    def on_checkpoint(self, run, state, path):
        self.seen.append(("checkpoint", state.step, path.name))

    def on_end(self, run, state, status):
        self.seen.append(("end", state.step, status))


class Unavailable(ganzoo.Observer):
    name = "needs-a-package"
    description = "a logger whose package is missing (tests)"

    @classmethod
    def check_available(cls):
        raise GanzooError("the needs-a-package logger needs the frobnicate package: pip install frobnicate")


class _Plugin:
    @ganzoo.hookimpl
    def register_loggers(self, register):
        register(Recorder)
        register(Unavailable)


@pytest.fixture
def recorder():
    name = plugins.register_plugin(_Plugin(), "test-loggers")
    Recorder.seen = []
    try:
        yield Recorder.seen
    finally:
        plugins.unregister_plugin(name)


def _options(**overrides):
    values = dict(device="cpu", progress=False, sample_every=2, ckpt_every=3, log_every=2, loggers=["recorder"])
    return ganzoo.TrainOptions(**{**values, **overrides})


def test_hook_register_loggers(recorder, tmp_path):
    assert "recorder" in ganzoo.list_loggers() and "tensorboard" in ganzoo.list_loggers()
    ganzoo.train("vanilla", "ring", out=tmp_path / "run", hparams={"steps": 4}, options=_options())
    kinds = [event[0] for event in recorder]
    assert kinds[0] == "start" and kinds[-1] == "end" and recorder[-1] == ("end", 4, "finished")
    assert recorder[0] == ("start", 0, False)
    assert [e[1] for e in recorder if e[0] == "step"] == [1, 2, 3, 4]
    logs = [e for e in recorder if e[0] == "log"]
    assert [e[1] for e in logs] == [2, 4] and "D/loss" in logs[0][2] and "step_time" in logs[0][2]
    # A log record comes before the step event of its step (a logger sees values before grids).
    assert recorder.index(logs[0]) < recorder.index(("step", 2))
    samples = [e for e in recorder if e[0] == "samples"]
    assert samples == [("samples", 2, "step-0000002.png", (1000, 2)), ("samples", 4, "final.png", (1000, 2))]
    checkpoints = [e for e in recorder if e[0] == "checkpoint"]
    assert checkpoints == [("checkpoint", 3, "step-0000003.pt"), ("checkpoint", 4, "step-0000004.pt")]
    # The final grid comes before the final checkpoint, both inside on_end's turn.
    assert recorder.index(samples[-1]) < recorder.index(checkpoints[-1]) < len(recorder) - 1

    # A resume keeps the run's loggers (a run option) and says so with a resume record.
    recorder.clear()
    resume(tmp_path / "run", hparams={"steps": 5}, options=ganzoo.TrainOptions(device="cpu", progress=False))
    assert recorder[0] == ("start", 4, True)
    assert ("log", 4, "resume") in recorder and recorder[-1] == ("end", 5, "finished")
    # `--logger none` drops the run's loggers on a resume.
    recorder.clear()
    resume(tmp_path / "run", hparams={"steps": 6}, options=ganzoo.TrainOptions(device="cpu", progress=False,
                                                                               loggers=["none"]))
    assert recorder == []
    with pytest.raises(GanzooError, match="--logger none cannot be combined"):
        ganzoo.TrainOptions(loggers=["none", "recorder"]).resolved()


def test_a_failed_run_ends_with_failed(recorder, tmp_path, monkeypatch):
    from ganzoo import trainer

    original = trainer.Trainer.train_step

    def diverge_at_3(self, state):
        stats = original(self, state)
        if state.step == 3:
            raise trainer.Diverged("training diverged at step 3 (test)")
        return stats

    monkeypatch.setattr(trainer.Trainer, "train_step", diverge_at_3)
    with pytest.raises(GanzooError, match="diverged at step 3"):
        ganzoo.train("vanilla", "ring", out=tmp_path / "run", hparams={"steps": 6},
                     options=_options(ckpt_every=0))
    assert recorder[-1] == ("end", 3, "failed")
    assert not [e for e in recorder if e[0] == "checkpoint"]


def test_unknown_or_unavailable_logger_stops_before_anything_is_written(recorder, tmp_path, capsys):
    with pytest.raises(GanzooError, match="unknown logger 'nope'. Known loggers: .*tensorboard"):
        ganzoo.train("vanilla", "ring", out=tmp_path / "a", hparams={"steps": 2}, options=_options(loggers=["nope"]))
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "2", "--logger", "needs-a-package",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ganzoo: error: the needs-a-package logger needs the frobnicate package: pip install frobnicate"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_events_are_checked():
    from ganzoo.events import Observers

    with pytest.raises(ValueError, match="unknown training event 'on_stpe'"):
        Observers([]).emit("on_stpe")


def test_tensorboard_logger_writes_scalars_grids_and_hparams(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", "vanilla", "--dataset", "ring", "--steps", "4", "--log-every", "1", "--sample-every", "2",
                 "--tensorboard", "--quiet", "--out", str(run)]) == 0
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert files, "no event file"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"D/loss", "G/loss", "step_time"} <= set(tags["scalars"])
    assert [s.step for s in events.Scalars("D/loss")] == [1, 2, 3, 4]
    logged = [json.loads(line)["D/loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s.value for s in events.Scalars("D/loss")] == pytest.approx(logged, rel=1e-6)
    assert [i.step for i in events.Images("samples")] == [2, 4]
    assert (run / "tensorboard" / "hparams").is_dir()  # add_hparams' own run
    assert json.loads((run / "config.json").read_text())["options"]["loggers"] == ["tensorboard"]


def test_loss_plot_is_kept_with_the_grids_and_by_ganzoo_plot(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "wgan-gp", "--dataset", "ring", "--steps", "4", "--log-every", "1", "--quiet",
                 "--out", str(run)]) == 0
    plot = run / "samples" / "losses.png"
    assert plot.is_file() and Image.open(plot).size[0] == 700
    panels = dict(plot_series(read_metrics(run / "metrics.jsonl")))
    assert {"losses", "D's outputs (real, fake)", "gradient norms and penalties", "learning rates"} <= set(panels)
    assert set(panels["losses"]) == {"D/loss", "G/loss"}
    assert panels["losses"]["D/loss"][0] == [1, 2, 3, 4]
    out = tmp_path / "curves.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert Image.open(out).format == "PNG"
    assert "wrote the curves of 4 records" in capsys.readouterr().out


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "has no metrics.jsonl"),
    (lambda d: (d / "metrics.jsonl").write_text('{"event": "resume", "step": 3}\n'), "no logged values to plot"),
])
def test_plot_bad_input_is_one_line(tmp_path, capsys, make, message):
    run = tmp_path / "run"
    run.mkdir()
    make(run)
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert main(["plot", str(run), "--out", str(tmp_path / "x.jpg")]) == 2
    assert not (run / "samples").exists()


def test_every_observer_ends_even_when_one_fails():
    from ganzoo.events import Observers

    ended = []

    class Breaks(ganzoo.Observer):
        order = 0

        def on_end(self, run, state, status):
            ended.append(("breaks", status))
            raise OSError(28, "No space left on device")

    class Closes(ganzoo.Observer):
        order = 10

        def on_end(self, run, state, status):
            ended.append(("closes", status))

    observers = Observers([Closes(), Breaks()])
    with pytest.raises(OSError, match="No space left"):
        observers.end(run=None, state=None, status="finished")
    assert ended == [("breaks", "finished"), ("closes", "finished")]
    ended.clear()
    observers.end(run=None, state=None, status="failed")  # the error on its way up matters, not this one
    assert ended == [("breaks", "failed"), ("closes", "failed")]
