"""How a ganzoo training step's cost grows: batch size, image size, and processes under torchrun.

    python benchmarks/scaling.py --data-dir ../shared/data/mnist [--device cpu|cuda] [--steps 7]
                                 [--batch 64 128 256] [--size 32 64] [--procs 1 2]

Every measurement is ``ganzoo train wgan-gp`` on MNIST (resized with ``--image-size``) with its
default DCGAN-style nets, in a fresh process; the time per generator step (five critic updates
and one generator update) is the median of the ``step_time`` ganzoo logs for each step after
the first ``--warmup``. On the CPU every process has one thread.

* Batch and image size: one process, each batch size at each image size; the cost relative to
  batch 64 at the smallest size.
* Processes: the smallest size at batch 64 under ``torchrun --nproc-per-node P`` (the global batch
  stays 64, split across the ranks, so one step does the same work); speed-up = one process's
  time over P processes'. On the CPU, P processes need P free cores: the load average is printed,
  and figures taken beside other jobs say little about scaling.
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

import torch


def step_times(args, batch: int, size: int, procs: int) -> list[float]:
    """Seconds per generator step of one run, each step after the warm-up."""
    with tempfile.TemporaryDirectory(prefix="ganzoo-scaling-") as tmp:
        out = Path(tmp) / "run"
        launcher = [sys.executable, "-m", "ganzoo"] if procs == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m", "ganzoo"]
        cmd = [*launcher, "train", "wgan-gp", "--dataset", "mnist", "--data-dir", args.data_dir,
               "--image-size", str(size), "--batch-size", str(batch), "--steps", str(args.steps),
               "--device", args.device, "--log-every", "1", "--sample-every", "0", "--out", str(out), "--quiet"]
        if args.device == "cpu":
            cmd += ["--threads", "1"]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"scaling: {' '.join(cmd)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["step_time"] for r in records if "step_time" in r and r["step"] > args.warmup]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="MNIST's IDX files (e.g. ../shared/data/mnist)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=7, help="generator steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--size", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    if not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    base = None
    for size in args.size:
        for batch in args.batch:
            median = statistics.median(step_times(args, batch, size, 1))
            base = base or median
            rows.append((size, batch, median))
            print(f"[size {size} batch {batch}] {median * 1e3:.0f} ms", file=sys.stderr, flush=True)
    size0 = min(args.size)
    proc_rows = []
    for procs in args.procs:
        median = statistics.median(step_times(args, 64, size0, procs))
        proc_rows.append((procs, median))
        print(f"[{procs} process(es)] {median * 1e3:.0f} ms", file=sys.stderr, flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Measured {started} ({os.cpu_count()} cores, torch {torch.__version__}, device {args.device}"
          f"{', one thread per process' if args.device == 'cpu' else ''}; 1-minute load average at the end "
          f"{load:.1f}): `ganzoo train wgan-gp` on MNIST, default nets, {args.steps} generator steps per run, "
          f"the median of steps {args.warmup + 1}-{args.steps}.\n")
    print("| image side | batch | ms per generator step | vs batch 64 at the smallest side | ms per image |")
    print("|---|---|---|---|---|")
    for size, batch, median in rows:
        print(f"| {size} | {batch} | {median * 1e3:.0f} | {median / base:.2f}x | {median / batch * 1e3:.2f} |")
    print(f"\n| processes (torchrun, global batch 64, {size0} px) | ms per generator step | speed-up |")
    print("|---|---|---|")
    single = proc_rows[0][1]
    for procs, median in proc_rows:
        print(f"| {procs} | {median * 1e3:.0f} | {single / median:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
