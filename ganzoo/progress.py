"""Progress on stderr, through tqdm: the training bar and every one-off task.

One display for everything ganzoo waits on:

* the training bar (:class:`Bar`, unit ``step``): started by the trainer *after* the
  first step of the process, so its rate and ETA count training steps only, never the
  one-off work before them;
* one-off tasks (:func:`task`): compiling the fused ops, rendering the digits dataset,
  downloading a file, training the evaluation classifier. Each is its own labelled
  line with its own progress (a bar when the amount of work is known, else the
  elapsed time) and a closing line that says how long it took.

On a terminal, tqdm redraws one line per bar by *time* (at most every
``REFRESH_S``), whatever the step rate. Anywhere else (a log file, CI, a pipe)
there are no control characters: a plain line at most every ``LOG_EVERY_S``
seconds, formatted by tqdm, and one at the end. :func:`silenced` turns it all off
(``--quiet``, and library callers that ask for no progress). tqdm is imported
only when a bar is shown.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import time
from typing import Iterator, TextIO

#: A terminal bar redraws at most this often (seconds).
REFRESH_S = 0.5
#: Without a terminal, one plain line at most this often (seconds), and one at the end.
LOG_EVERY_S = 30.0
#: The training rate (and so the ETA) follows the recent speed: tqdm's exponential
#: smoothing factor per redraw (0: the average since the start; 1: the last interval).
SMOOTHING = 0.1

_silenced_depth = 0


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No progress output inside (nests)."""
    global _silenced_depth
    _silenced_depth += 1
    try:
        yield
    finally:
        _silenced_depth -= 1


def enabled() -> bool:
    return _silenced_depth == 0


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Bar:
    """A progress bar on ``stream`` (stderr): tqdm on a terminal, plain timed lines otherwise.

    total: the amount of work (None: unknown, the elapsed time is shown); initial: work
    already done (a resumed run); unit: what is counted (``step``, ``B``, ...).
    """

    def __init__(self, desc: str, total: float | None = None, *, initial: float = 0, unit: str = "it",
                 unit_scale: bool = False, stream: TextIO | None = None, enabled: bool = True):
        self.desc, self.total, self.unit, self.unit_scale = desc, total, unit, unit_scale
        self.stream = stream or sys.stderr
        self.enabled = enabled and _silenced_depth == 0
        self.n = initial
        self.initial = initial
        self.postfix = ""
        self.start = time.perf_counter()
        self._next_line = self.start + LOG_EVERY_S
        self._tqdm = None
        self.tty = self.enabled and _is_tty(self.stream)
        if self.tty:
            from tqdm import tqdm

            # The size once, with a fallback: a terminal that reports 0 x 0 (`script`, some CI
            # runners) would make tqdm draw nothing at all.
            size = shutil.get_terminal_size((100, 24))
            self._tqdm = tqdm(desc=desc, total=total, initial=initial, unit=unit, unit_scale=unit_scale,
                              file=self.stream, mininterval=REFRESH_S, smoothing=SMOOTHING, ncols=size.columns,
                              nrows=size.lines, leave=True)

    def set_postfix(self, values: dict[str, float]) -> None:
        """Shown after the counts (e.g. the latest losses); drawn at the next refresh."""
        self.postfix = " ".join(f"{k} {v:.3g}" for k, v in values.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(self.postfix, refresh=False)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.enabled and time.perf_counter() >= self._next_line:
            self._next_line = time.perf_counter() + LOG_EVERY_S
            self._line()

    def _line(self) -> None:
        from tqdm import tqdm

        elapsed = time.perf_counter() - self.start
        text = tqdm.format_meter(self.n, self.total, elapsed, prefix=self.desc, unit=self.unit,
                                 unit_scale=self.unit_scale, initial=self.initial, ncols=0,
                                 postfix=self.postfix or None)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self, note: str | None = None) -> None:
        """Finish the bar (a final plain line without a terminal); ``note`` ends the line."""
        if self._tqdm is not None:
            if note:
                self._tqdm.set_postfix_str(f"{self.postfix} {note}".strip(), refresh=False)
            self._tqdm.close()
            self._tqdm = None
        elif self.enabled and self.n != self.initial:
            if note:
                self.postfix = f"{self.postfix} {note}".strip()
            self._line()
        self.enabled = False


def _seconds(elapsed: float) -> str:
    return f"{elapsed:.1f} s" if elapsed < 60 else f"{int(elapsed // 60)} min {int(elapsed % 60):02d} s"


@contextlib.contextmanager
def task(desc: str, total: float | None = None, *, unit: str = "it", unit_scale: bool = False,
         stream: TextIO | None = None) -> Iterator[Bar]:
    """A one-off piece of work shown as its own labelled step; yields a :class:`Bar` to advance.

    Prints ``ganzoo: DESC ...`` first, then the bar (on a terminal), then ``ganzoo: DESC:
    done in T`` (or ``failed after T``), so a log shows where the time went.
    """
    stream = stream or sys.stderr
    show = _silenced_depth == 0
    started = time.perf_counter()

    def say(text: str) -> None:
        if show:
            try:
                stream.write(f"ganzoo: {text}\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    say(f"{desc} ...")
    bar = Bar(desc, total, unit=unit, unit_scale=unit_scale, stream=stream, enabled=show and total is not None)
    ok = False
    try:
        yield bar
        ok = True
    finally:
        bar.close()
        elapsed = time.perf_counter() - started
        say(f"{desc}: {'done in' if ok else 'failed after'} {_seconds(elapsed)}")

