"""How true is the progress bar's first ETA? (issue 15: within 25% of the real time)

    python benchmarks/eta.py                          # ganzoo train wgan-gp, 400 steps, one thread
    python benchmarks/eta.py --variant dcgan --steps 300 --threads 2

Runs ``ganzoo train`` on a pseudo-terminal (so the tqdm bar draws as a user sees it), reads
every redraw of the bar, and compares the first ETA it shows with the time the training bar
then really took to reach the end. The bar starts after the first step, so "real" is the time
from the first redraw to the last; the prediction is that redraw's ETA. The machine's load
average is printed with the result: an ETA cannot foresee load that changes during the run.
"""
from __future__ import annotations

import argparse
import os
import pty
import re
import subprocess
import sys
import tempfile
import time

BAR = re.compile(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<(?:(\d+):)?(\d+):(\d+),")


def _seconds(h, m, s) -> int:
    return int(h or 0) * 3600 + int(m) * 60 + int(s)


def run_on_a_tty(command: list[str]) -> tuple[str, float]:
    """The command's terminal output (stdout and stderr) and its wall time."""
    main_fd, child_fd = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=child_fd, stderr=child_fd, close_fds=True)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(main_fd)
    return b"".join(chunks).decode(errors="replace"), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="wgan-gp")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ganzoo", "train", args.variant, "--steps", str(args.steps),
                   "--threads", str(args.threads), "--sample-every", "0", "--ckpt-every", "0",
                   "--out", os.path.join(tmp, "run")]
        text, wall = run_on_a_tty(command)
    redraws = []
    for frame in re.split(r"[\r\n]", text):
        match = BAR.search(frame)
        if match:
            n, total = int(match[1]), int(match[2])
            elapsed, eta = _seconds(*match.group(3, 4, 5)), _seconds(*match.group(6, 7, 8))
            redraws.append((n, total, elapsed, eta))
    timed = redraws  # the first redraw with an ETA is what a user reads first
    if len(timed) < 2:
        sys.exit(f"too few bar redraws to judge ({len(redraws)}); raise --steps")
    first, last = timed[0], timed[-1]
    predicted, real = first[3], last[2] - first[2]
    print(f"`ganzoo train {args.variant} --steps {args.steps} --threads {args.threads}` on a pseudo-terminal; "
          f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; wall {wall:.0f} s")
    print(f"first ETA (at step {first[0]} of {first[1]}, {first[2]} s into the bar): {predicted} s; "
          f"real remaining time: {real} s; ratio {predicted / max(real, 1):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
