"""Training events and the observers that react to them.

The trainer runs the loop; everything a run *writes* is an observer of its events:
``metrics.jsonl``, the progress bar, sample grids, the loss plot, checkpoints, the
evaluation during training (``ganzoo/outputs.py``) and any logger a plugin registers
(TensorBoard is one, ``ganzoo/loggers/tensorboard.py``), and so is the CPU thread count
following the machine's load (``ganzoo/cpu_threads.py``; it may change the order of float
sums, as any thread count does). Observers never change what training computes: that (EMA, schedules, regularisers, precision) goes through the variant
contract and the toolkit instead.

Where the events fire (rank 0 of a torchrun job only; other ranks have no observers)::

    on_start(run, state)                       # nets built, a resumed checkpoint restored
    while state.step < total:
        train_step(state)                      # the variant's phases (ganzoo.trainer)
        every log_every steps, at the end and when stopped:
            on_log(run, state, record)         # the interval's means: {"step", "time", "step_time", "D/loss", ...}
        if a signal asked to stop: on_end(run, state, "stopped") and leave (no on_step for that step)
        on_step(run, state)                    # every step: progress, periodic grids and checkpoints
        (observers may send more: on_log with an evaluation record, on_samples with a grid)
    on_end(run, state, status)                 # "finished" (final grid, final checkpoint), or "failed"
                                               # (an exception is on its way up)

    on_samples(run, state, images, path)       # a sample grid was written (sent by the grid observer)
    on_checkpoint(run, state, path)            # a checkpoint was written (sent by the checkpoint observer)

Each event is a method of :class:`Observer` taking keyword arguments; a subclass
overrides the ones it needs. Observers run in ascending ``order`` (ties: the order
they were added), so the built-in metrics file sees a record before a logger does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .data.base import Dataset
    from .options import TrainOptions
    from .variant import TrainState, Variant

#: The events, in the order a run meets them (the method names of Observer).
EVENTS = ("on_start", "on_step", "on_log", "on_samples", "on_checkpoint", "on_end")
#: on_end's status values.
FINISHED, STOPPED, FAILED = "finished", "stopped", "failed"


@dataclass
class Run:
    """What observers see of a run (read-only by convention).

    run_dir: the run directory; config: config.json's content; options: the resolved
    :class:`~ganzoo.options.TrainOptions`; variant, dataset: the run's objects; device;
    total_steps: the step the run trains to; resumed: whether it continued a checkpoint;
    trainer: the :class:`~ganzoo.trainer.Trainer` (``checkpoint_payload``, ``generate_grid``).
    """

    run_dir: Path
    config: dict[str, Any]
    options: "TrainOptions"
    variant: "Variant"
    dataset: "Dataset"
    device: "torch.device"
    total_steps: int
    resumed: bool = False
    trainer: Any = None
    observers: "Observers | None" = field(default=None, repr=False)

    def emit(self, event: str, **kwargs: Any) -> None:
        """Send ``event`` to every observer of this run (observers use it for on_log,
        on_samples and on_checkpoint)."""
        if self.observers is not None:
            self.observers.emit(event, run=self, **kwargs)


class Observer:
    """Base class of everything that reacts to training events; every event is a no-op here.

    Loggers that plugins register (``register_loggers`` hook) subclass it and set ``name``
    (what ``--logger NAME`` selects) and ``description``; each run builds its own with
    ``Cls()`` (no arguments) and hands it the run in every event.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Lower runs first. Built-ins: metrics file 0, evaluation -10 (its record goes through
    #: on_log like any other), CPU threads 5, progress 10, grids 20, loss plot 30,
    #: checkpoints 40; loggers 50.
    order: ClassVar[int] = 50

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`ganzoo.GanzooError` when this observer cannot run here (e.g. its optional
        package is missing); checked when the options are, before anything is written."""

    def on_start(self, run: Run, state: "TrainState") -> None:
        """Before the first step of this process (after a resume's restore)."""

    def on_step(self, run: Run, state: "TrainState") -> None:
        """After every generator step; ``state.step`` is the number of steps done."""

    def on_log(self, run: Run, state: "TrainState", record: dict[str, Any]) -> None:
        """A record for metrics.jsonl: ``{"step": int, ...}`` with plain floats (interval means
        of every logged value such as ``D/loss``; ``eval/...`` for evaluations; ``event`` for
        events such as a resume)."""

    def on_samples(self, run: Run, state: "TrainState", images: "torch.Tensor", path: Path) -> None:
        """A sample grid was written to ``path``. images: the samples, in data units on the CPU
        (images ``(N, C, H, W)`` in [-1, 1]; 2-D data ``(N, 2)``)."""

    def on_checkpoint(self, run: Run, state: "TrainState", path: Path) -> None:
        """A checkpoint was written to ``path``."""

    def on_end(self, run: Run, state: "TrainState", status: str) -> None:
        """The loop is over: status ``"finished"``, ``"stopped"`` (SIGINT/SIGTERM) or ``"failed"``
        (an exception is on its way up: release resources, write nothing that claims success)."""


class Observers:
    """The observers of one run, called in ``order``."""

    def __init__(self, observers: list[Observer]):
        self.observers = sorted(observers, key=lambda o: o.order)  # stable: ties keep their order

    def __iter__(self):
        return iter(self.observers)

    def emit(self, event: str, **kwargs: Any) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown training event {event!r}; events: {', '.join(EVENTS)}")
        for observer in self.observers:
            getattr(observer, event)(**kwargs)

    def end(self, run: Run, state: "TrainState", status: str) -> None:
        """on_end for every observer, even when one of them raises (a full disk while writing the
        final grid must not keep the checkpoint from being tried, nor a logger from closing).
        With ``finished`` or ``stopped`` the first error is raised once all have run; with
        ``failed`` errors are dropped (the exception already on its way up is the one that matters)."""
        first: BaseException | None = None
        for observer in self.observers:
            try:
                observer.on_end(run=run, state=state, status=status)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                if first is None:
                    first = exc
        if first is not None and status != FAILED:
            raise first
