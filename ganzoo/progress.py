"""A dependency-free progress line with live losses, on stderr."""
from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


class Progress:
    """Redraws one line on a terminal; prints about 20 lines in total otherwise."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._next_print = 0

    def update(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if not self.tty and step < self._next_print and step < self.total:
            return
        self._next_print = step + max(1, self.total // 20)
        elapsed = time.perf_counter() - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        width = 20
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        shown = " ".join(f"{k} {v:.3g}" for k, v in values.items())
        line = (f"{self.label} [{bar}] {step}/{self.total} {shown} | "
                f"{rate:.2f} step/s {_duration(elapsed)}<{_duration(eta)}")
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
