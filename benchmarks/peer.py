"""ganzoo against a stock-PyTorch training loop on the same nets and settings, side by side.

    python benchmarks/peer.py --data-dir ../shared/data/mnist [--arch mlp conv] [--rounds 4] [--steps 60]
                              [--device cpu|cuda] [--compile] [--dataloader]

Each measurement is a fresh process training WGAN-GP on MNIST for ``--steps`` generator steps
(``n_critic`` = 5 critic updates and one G update each), timed between step ``--warmup`` and the
last, one thread on the CPU:

* ``stock``: ``benchmarks/stock_wgan_gp.py``, the loop users write (PyTorch-GAN's wgan_gp.py
  structure), data in one tensor;
* ``ganzoo``: ``ganzoo train wgan-gp`` with ``--set`` choosing the same nets (``arch=pytorch-gan-mlp``
  for PyTorch-GAN's MLPs; the default ``arch=conv`` nets for ``conv``, which the stock script
  rebuilds in stock modules) and the same settings (Adam 2e-4, betas (0.5, 0.999), latent 100,
  batch 64, n_critic 5, lambda 10); its seconds per step come from its own metrics.jsonl;
* with ``--dataloader``: the stock loop fed by ``torch.utils.data.DataLoader``;
* with ``--ablations``: ganzoo with torch's default Adam (``GANZOO_FUSED_ADAM=0``) and with the
  plain-PyTorch reference ops (``GANZOO_OPS=ref``), to show where the lead comes from;
* with ``--compile``: the stock loop with ``torch.compile`` on G and D (``compile gd``, where torch
  cannot differentiate the penalty twice through a compiled critic: the error is the result) and
  on G alone (``compile g``).

The kinds run interleaved (the order rotates every round), so a busy machine slows all alike;
the table gives the median and the range of milliseconds per generator step, and each kind's
speed relative to ``stock``: stock's time over its time in the same round (above 1 is faster
than stock), median and range over the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SETTINGS = ["lr_g=2e-4", "lr_d=2e-4", "betas=0.5,0.999", "nz=100", "n_critic=5", "gp_weight=10"]
GANZOO_NETS = {"mlp": ["arch=pytorch-gan-mlp"], "conv": ["arch=conv", "g_width=64", "d_width=32"]}


def one_thread_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def run_stock(args, arch: str, extra: list[str]) -> dict:
    cmd = [sys.executable, str(HERE / "stock_wgan_gp.py"), "--data-dir", args.data_dir, "--arch", arch,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=one_thread_env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"ok": False, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def run_ganzoo(args, arch: str, **env: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="ganzoo-peer-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "ganzoo", "train", "wgan-gp", "--dataset", "mnist", "--data-dir", args.data_dir,
               "--steps", str(args.steps), "--batch-size", "64", "--device", args.device, "--out", str(out),
               "--log-every", str(args.warmup), "--quiet", "--set", *GANZOO_NETS[arch], *SETTINGS]
        if args.device == "cpu":
            cmd += ["--threads", "1"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=one_thread_env(**env))
        if done.returncode:
            return {"ok": False, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
        times = {}
        for line in (out / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "time" in record and record.get("step") in (args.warmup, args.steps):
                times[record["step"]] = record["time"]
        return {"ok": True, "step_s": (times[args.steps] - times[args.warmup]) / (args.steps - args.warmup)}


def kinds(args) -> list[tuple[str, object]]:
    chosen = [("stock", lambda a: run_stock(args, a, [])), ("ganzoo", lambda a: run_ganzoo(args, a))]
    if args.dataloader:
        chosen.append(("stock, DataLoader", lambda a: run_stock(args, a, ["--loader", "dataloader"])))
    if args.ablations:
        chosen.append(("ganzoo, torch's default Adam (GANZOO_FUSED_ADAM=0)",
                       lambda a: run_ganzoo(args, a, GANZOO_FUSED_ADAM="0")))
        chosen.append(("ganzoo, plain-PyTorch ops (GANZOO_OPS=ref)", lambda a: run_ganzoo(args, a, GANZOO_OPS="ref")))
    if args.compile:
        chosen.append(("stock, compile g", lambda a: run_stock(args, a, ["--compile", "g"])))
        chosen.append(("stock, compile gd", lambda a: run_stock(args, a, ["--compile", "gd"])))
    return chosen


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="MNIST's IDX files (e.g. ../shared/data/mnist)")
    parser.add_argument("--arch", nargs="+", choices=sorted(GANZOO_NETS), default=["mlp", "conv"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="generator steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="generator steps left out (also ganzoo's log interval)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true", help="add the torch.compile columns")
    parser.add_argument("--dataloader", action="store_true", help="add the stock loop fed by a DataLoader")
    parser.add_argument("--ablations", action="store_true",
                        help="add ganzoo without fused Adam and without the fused ops (where the lead comes from)")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement here")
    args = parser.parse_args(argv)
    if args.steps % args.warmup or args.steps <= args.warmup:
        parser.error("--steps must be a multiple of --warmup and larger")
    if not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, dict[str, list[dict]]] = {}
    for arch in args.arch:
        chosen = kinds(args)
        results[arch] = {name: [] for name, _ in chosen}
        for r in range(args.rounds):
            shift = r % len(chosen)  # rotate the order: each kind runs first in some round
            for name, runner in chosen[shift:] + chosen[:shift]:
                result = runner(arch)
                results[arch][name].append(result)
                shown = f"{fmt(result['step_s'])} ms" if result.get("ok") else result.get("error")
                print(f"[{arch} round {r + 1}/{args.rounds}] {name}: {shown}", file=sys.stderr, flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Measured {started} on {platform.machine()} ({os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {args.device}, one thread per process), {args.rounds} interleaved rounds of {args.steps} "
          f"generator steps (the first {args.warmup} not timed); 1-minute load average at the end {load:.1f}.\n")
    print("| nets | loop | ms per generator step: median (range) | speed vs stock: median (range) of the rounds |")
    print("|---|---|---|---|")
    for arch, by_kind in results.items():
        stock = by_kind["stock"]
        for name, runs in by_kind.items():
            good = [r["step_s"] for r in runs if r.get("ok")]
            if not good:
                errors = sorted({r.get("error", "") for r in runs})
                print(f"| {arch} | {name} | fails: {'; '.join(errors)} | – |")
                continue
            # Each round's stock time over this kind's time in the same round: a paired ratio.
            ratios = [s["step_s"] / r["step_s"] for s, r in zip(stock, runs) if s.get("ok") and r.get("ok")]
            ratio = (f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f})"
                     if ratios and name != "stock" else "1")
            print(f"| {arch} | {name} | {fmt(statistics.median(good))} ({fmt(min(good))}-{fmt(max(good))}) | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"started": started, "args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
