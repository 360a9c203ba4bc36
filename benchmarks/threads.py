"""CPU threads, before and after issue 15: the default ``ganzoo train wgan-gp`` step, idle and
beside a busy process, side by side.

    python benchmarks/threads.py                 # 3 interleaved rounds, 60 steps per run (~8 min)
    python benchmarks/threads.py --rounds 1 --steps 20    # a smoke test
    python benchmarks/threads.py --conditions as-is       # on the machine as it is (e.g. beside other jobs)

Three ways of starting the same training command, each in a fresh process:

* ``before``: what ganzoo did before issue 15 -- torch imported first (so libgomp keeps its
  default active waiting) and torch's default thread count (the physical cores);
* ``default``: ``ganzoo train`` as it is now (passive waiting, threads = the physical cores
  other processes leave free; see ganzoo/cpu_threads.py);
* ``1 thread``: ``ganzoo train --threads 1``.

Each is timed idle, beside one busy process (a pure-Python busy loop, standing in for
another job) started before it, and beside one that starts while it trains (``busy-later``:
the figure then covers only the log intervals that start once the busy process runs), the
three interleaved within each round. The figure is the median seconds per
generator step over the run's log intervals after the first (which holds start-up work),
then the median over rounds, with the range. The machine's load average is printed with
every run: figures from a machine that was not otherwise idle say so.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ganzoo.cpu_threads import physical_cores

BUSY_LOOP = "while True: pass"
BEFORE = ("import sys, torch\n"  # torch first: libgomp reads OMP_WAIT_POLICY (unset) at load
          "from ganzoo.cli import run\n"
          "sys.argv[0] = 'ganzoo'\n"
          "run()\n")


def command(config: str, out: Path, steps: int, variant: str) -> list[str]:
    train = ["train", variant, "--device", "cpu", "--steps", str(steps), "--out", str(out), "--quiet",
             "--sample-every", "0", "--ckpt-every", "0", "--log-every", "10"]
    if config == "before":
        return [sys.executable, "-c", BEFORE, *train, "--threads", str(physical_cores())]
    if config == "default":
        return [sys.executable, "-m", "ganzoo", *train]
    if config == "1 thread":
        return [sys.executable, "-m", "ganzoo", *train, "--threads", "1"]
    raise ValueError(config)


def seconds_per_step(run_dir: Path, skip: int = 1) -> float:
    """Median seconds per step over the log intervals after the first ``skip`` (the first holds start-up)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in records if "step_time" in r][skip:]
    return statistics.median(times)


def logged_intervals(run_dir: Path) -> int:
    try:
        text = (run_dir / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return 0
    return sum('"step_time"' in line for line in text.splitlines())


def run_with_busy_arriving(cmd: list[str], out: Path, env: dict[str, str]) -> float:
    """Start the run, start a busy process once two intervals are logged, and time the intervals
    that start after that (the first of them holds the switch, the rest the steady state)."""
    training = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    busy = None
    try:
        while logged_intervals(out) < 2 and training.poll() is None:
            time.sleep(0.05)
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        seen = logged_intervals(out)
        _, err = training.communicate()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if training.returncode != 0:
        sys.exit(f"{cmd} failed: {err.strip().splitlines()[-1:]}")
    return seconds_per_step(out, skip=seen + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--variant", default="wgan-gp")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--conditions", nargs="+", choices=("idle", "busy", "busy-later", "as-is"),
                        default=["idle", "busy", "busy-later"],
                        help="idle: nothing added (run it on a quiet machine); busy: beside one added busy "
                             "process started first; busy-later: one that starts while the run trains; "
                             "as-is: nothing added, labelled with the machine's current load")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    configs = ("before", "default", "1 thread")
    names = {"idle": "idle", "busy": "beside 1 busy process", "busy-later": "1 busy process arrives",
             "as-is": f"as is (load average {os.getloadavg()[0]:.1f})"}
    conditions = tuple(names[c] for c in args.conditions)
    results: dict[tuple[str, str], list[float]] = {}
    measurements = []
    with tempfile.TemporaryDirectory() as tmp:
        for condition in conditions:
            busy = None
            if condition == names["busy"]:
                busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                time.sleep(1.0)
            try:
                for round_index in range(args.rounds):
                    for config in configs:
                        out = Path(tmp) / f"{condition}-{config}-{round_index}".replace(" ", "_")
                        load = os.getloadavg()[0]
                        started = time.perf_counter()
                        cmd = command(config, out, args.steps, args.variant)
                        if condition == names["busy-later"]:
                            per_step = run_with_busy_arriving(cmd, out, env)
                        else:
                            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                            if done.returncode != 0:
                                sys.exit(f"{config} failed: {done.stderr.strip().splitlines()[-1:]}")
                            per_step = seconds_per_step(out)
                        results.setdefault((condition, config), []).append(per_step)
                        measurements.append({"condition": condition, "config": config, "round": round_index,
                                             "s_per_step": per_step, "load_1min": load,
                                             "wall_s": round(time.perf_counter() - started, 1)})
                        print(f"{condition:<22} {config:<8} round {round_index}: {per_step:.3f} s/step "
                              f"(load average {load:.2f} at start)", file=sys.stderr, flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(f"`ganzoo train {args.variant}`, {args.steps} steps per run, {args.rounds} interleaved round(s); "
          f"seconds per generator step, median over rounds (range); {physical_cores()} physical cores, "
          f"{os.cpu_count()} logical; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| | " + " | ".join(configs) + " |")
    print("|---|" + "---|" * len(configs))
    for condition in conditions:
        cells = []
        for config in configs:
            values = results[(condition, config)]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"| {condition} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(measurements, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
