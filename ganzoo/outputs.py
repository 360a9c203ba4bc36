"""What a run writes, as observers of the training events (see :mod:`ganzoo.events`).

``metrics.jsonl`` (:class:`MetricsFile`), the progress bar (:class:`ProgressDisplay`),
sample grids (:class:`SampleGrids`), ``samples/losses.png`` (:class:`LossPlot`),
checkpoints (:class:`Checkpoints`) and the evaluation during training
(:class:`Evaluation`). :func:`builtin_observers` gives the ones a run's options ask for;
the trainer adds the loggers the user selected (``--logger NAME``).
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_DIR, SANE_WEIGHT_LIMIT, save_checkpoint
from .events import FINISHED, STOPPED, Observer, Run
from .io import atomic_write, drop_partial_last_line
from .progress import Bar

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "losses.png"


class MetricsFile(Observer):
    """Appends every on_log record to ``RUN_DIR/metrics.jsonl``, one JSON object per line.

    Unbuffered: each record is one write, so a kill or a full disk loses at most the line
    being written (dropped at the next start).
    """

    order = 0

    def __init__(self):
        self.file = None
        self.path: Path | None = None

    def on_start(self, run, state):
        run.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run.run_dir / METRICS_FILE
        drop_partial_last_line(self.path)  # left by a full disk or a kill mid-write
        self.file = open(self.path, "ab", buffering=0)

    def on_log(self, run, state, record):
        if self.file is None:
            return
        try:
            self.file.write((json.dumps(record) + "\n").encode())
        except OSError as exc:
            exc.filename = exc.filename or str(self.path)
            raise

    def on_end(self, run, state, status):
        if self.file is not None:
            self.file.close()
            self.file = None


class ProgressDisplay(Observer):
    """The training bar (ganzoo.progress): it starts after this process's first step, so its
    rate and ETA leave out the one-off work that step may hold (kernel builds, warm-up)."""

    order = 10

    def __init__(self):
        self.bar: Bar | None = None

    def on_step(self, run, state):
        if self.bar is not None:
            self.bar.update(1)
        else:  # after the first step of this process
            self.bar = Bar(f"{run.variant.name}/{run.dataset.name}", run.total_steps, initial=state.step,
                           unit="step")

    def on_log(self, run, state, record):
        if self.bar is not None and "event" not in record:
            losses = {k: v for k, v in record.items() if k.endswith("/loss") and isinstance(v, (int, float))}
            if losses:
                self.bar.set_postfix(losses)

    def on_end(self, run, state, status):
        if self.bar is not None:
            self.bar.close(note="(stopped)" if status == STOPPED else None)
            self.bar = None


class SampleGrids(Observer):
    """Sample grids of fixed noise: ``samples/step-XXXXXXX.png`` every ``sample_every`` steps,
    ``samples/final.png`` at the end, and the grid of where a stopped run stopped."""

    order = 20

    def on_start(self, run, state):
        (run.run_dir / "samples").mkdir(parents=True, exist_ok=True)

    def _write(self, run: Run, state, name: str) -> None:
        path = run.run_dir / "samples" / f"{name}.png"
        images = run.trainer.write_grid(state, path)
        run.emit("on_samples", state=state, images=images, path=path)

    def on_step(self, run, state):
        every = run.options.sample_every
        if every and state.step % every == 0 and state.step < run.total_steps:
            self._write(run, state, f"step-{state.step:07d}")

    def on_end(self, run, state, status):
        if status == FINISHED:
            self._write(run, state, "final")
        elif status == STOPPED:
            self._write(run, state, f"step-{state.step:07d}")


class LossPlot(Observer):
    """``samples/losses.png``: the logged curves (losses, D's outputs, gradient norms and
    penalties, learning rates, evaluations), redrawn whenever a grid is written."""

    order = 30

    def __init__(self):
        self.records: list[dict[str, Any]] = []

    def on_start(self, run, state):
        # A resumed run's history, up to the checkpoint it continues from.
        self.records = [r for r in read_metrics(run.run_dir / METRICS_FILE)
                        if "event" not in r and r.get("step", 0) <= state.step]

    def on_log(self, run, state, record):
        if "event" not in record:
            self.records.append(record)

    def on_samples(self, run, state, images, path):
        if self.records:
            save_loss_plot(self.records, run.run_dir / "samples" / LOSS_PLOT,
                           title=f"{run.variant.name} on {run.dataset.name}")


class Checkpoints(Observer):
    """``checkpoints/step-XXXXXXX.pt`` every ``ckpt_every`` steps and at the end (also when
    stopped by a signal); keeps ``keep`` of them (see ganzoo.checkpoint)."""

    order = 40

    def __init__(self):
        self.warned_insane = False

    def on_start(self, run, state):
        (run.run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)

    def _write(self, run: Run, state) -> None:
        path = run.trainer.checkpoint_path(state)
        health = save_checkpoint(path, run.trainer.checkpoint_payload(state), keep=run.options.keep)
        if not health["sane"] and not self.warned_insane:
            # Finite but huge weights do not stop a run (the losses may stay finite); say it once.
            self.warned_insane = True
            size = f"as large as {health['max_abs_weight']:.3g}" if health["finite"] else "not finite"
            warnings.warn(f"checkpoint {path.name} holds weights {size} (beyond {SANE_WEIGHT_LIMIT:g}): the run has "
                          "probably diverged; a lower --lr may help", stacklevel=2)
        run.emit("on_checkpoint", state=state, path=path)

    def on_step(self, run, state):
        every = run.options.ckpt_every
        if every and state.step % every == 0 and state.step < run.total_steps:
            self._write(run, state)

    def on_end(self, run, state, status):
        if status in (FINISHED, STOPPED):
            self._write(run, state)


class Evaluation(Observer):
    """Quality metrics every ``eval_every`` steps and at the last step, sent as an on_log
    record of ``eval/...`` values (see ganzoo.evaluation)."""

    order = -10

    def on_step(self, run, state):
        every = run.options.eval_every
        if every and (state.step % every == 0 or state.step == run.total_steps):
            run.emit("on_log", state=state, record={"step": state.step, **run.trainer.evaluate(state)})


def builtin_observers(options) -> list[Observer]:
    """What every run writes (the evaluation only when ``eval_every`` asks for it)."""
    from .cpu_threads import FollowLoad

    observers: list[Observer] = [MetricsFile(), FollowLoad(), SampleGrids(), LossPlot(), Checkpoints()]
    if options.progress:
        observers.append(ProgressDisplay())
    if options.eval_every:
        observers.append(Evaluation())
    return observers


# -- the loss plot ------------------------------------------------------------------------------
def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records (a damaged line is skipped); [] when there is no file."""
    records = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


#: The panels of the loss plot: (title, test on a key); a key goes to the first panel that takes it.
PANELS = (
    ("losses", lambda k: k.endswith("/loss")),
    ("D's outputs (real, fake)", lambda k: k.split("/")[-1] in ("real", "fake")),
    ("gradient norms and penalties", lambda k: any(s in k for s in ("grad_norm", "/gp", "/r1", "path_length"))),
    ("learning rates", lambda k: k.startswith("lr/")),
    ("evaluation", lambda k: k.startswith("eval/")),
)
SKIPPED_KEYS = {"step", "time", "step_time", "skipped_steps", "fp16_overflows"}


def plot_series(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, tuple[list[int], list[float]]]]]:
    """The panels that have data: [(title, {key: (steps, values)})], in PANELS order."""
    panels: list[tuple[str, dict[str, tuple[list[int], list[float]]]]] = [(title, {}) for title, _ in PANELS]
    for record in records:
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for key, value in record.items():
            if key in SKIPPED_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            for index, (_, takes) in enumerate(PANELS):
                if takes(key):
                    steps, values = panels[index][1].setdefault(key, ([], []))
                    steps.append(step)
                    values.append(float(value))
                    break
    return [(title, series) for title, series in panels if series]


def save_loss_plot(records: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Draw the curves of ``records`` (metrics.jsonl's) into a PNG at ``path`` (matplotlib, Agg;
    written atomically). Raises ValueError when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = plot_series(records)
    if not panels:
        raise ValueError("no logged values to plot")
    figure = Figure(figsize=(7.0, 2.3 * len(panels)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (panel_title, series) in zip(axes, panels):
        for key, (steps, values) in sorted(series.items()):
            ax.plot(steps, values, label=key, linewidth=1.2)
        ax.set_title(panel_title, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("generator step", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))
    return path

