"""What the training toolkit costs: step time with every option off (against an
older ganzoo), with EMA on, and bf16 against fp32, measured side by side.

Each measurement is a fresh process (so two ganzoo versions can be compared)
that builds the variant's default nets on ``digits``, warms up, then times
``--steps`` generator steps of ``Trainer.train_step`` on one thread. The
configurations run interleaved, round after round, so a change in machine
load hits all of them alike; the table gives the median over rounds of each
round's median, the spread (min-max of the round medians) and the ratio to the
first configuration of the same variant. Run it on a quiet machine, or note
the load it prints::

    git worktree add /tmp/ganzoo-before <older commit>
    OMP_NUM_THREADS=1 python benchmarks/toolkit_overhead.py --baseline /tmp/ganzoo-before

Without ``--baseline`` the "before" rows are left out.

``--suite stylegan2-ops`` times a stylegan2 training step with the fused ops
against ``GANZOO_OPS=ref`` (plain PyTorch), with R1 at its lazy default (a
phase every 16 steps) and with R1 every step, so the op's double backward is
in every timed step (issue 17)::

    OMP_NUM_THREADS=1 python benchmarks/toolkit_overhead.py --suite stylegan2-ops
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: suite -> [(variant, label, hparams, precision, uses the baseline checkout, extra environment)]
SUITES = {
    "toolkit": [
        ("dcgan", "before: options off", {}, None, True, {}),
        ("dcgan", "now: options off", {}, None, False, {}),
        ("dcgan", "now: ema=0.999", {"ema": 0.999}, None, False, {}),
        ("wgan-gp", "before: options off", {}, None, True, {}),
        ("wgan-gp", "now: options off", {}, None, False, {}),
        ("wgan-gp", "now: --precision bf16", {}, "bf16", False, {}),
    ],
    # The ratio to the first row of a variant is fused / ref: below 1 means the fused op is faster.
    "stylegan2-ops": [
        ("stylegan2", "GANZOO_OPS=ref, R1 every 16 steps (default)", {}, None, False, {"GANZOO_OPS": "ref"}),
        ("stylegan2", "fused, R1 every 16 steps (default)", {}, None, False, {"GANZOO_OPS": "auto"}),
        ("stylegan2 r1_every=1", "GANZOO_OPS=ref, R1 every step", {"r1_every": 1}, None, False,
         {"GANZOO_OPS": "ref"}),
        ("stylegan2 r1_every=1", "fused, R1 every step", {"r1_every": 1}, None, False, {"GANZOO_OPS": "auto"}),
    ],
}


def worker(spec: dict) -> None:
    """Runs in the child process: time ``steps`` generator steps, print one JSON line."""
    import tempfile

    import torch

    import ganzoo
    from ganzoo.trainer import Trainer, TrainOptions

    torch.set_num_threads(1)
    from ganzoo.ops import backend

    data = ganzoo.create_dataset("digits", seed=0)
    variant = ganzoo.create_variant(spec["variant"].split()[0], data.spec, **spec["hparams"])
    extra = {"precision": spec["precision"]} if spec["precision"] else {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(variant, data, Path(tmp), TrainOptions(device="cpu", progress=False, **extra))
        state = trainer.setup()
        for _ in range(3):
            trainer.train_step(state)
        times = []
        for _ in range(spec["steps"]):
            start = time.perf_counter()
            trainer.train_step(state)
            times.append(time.perf_counter() - start)
    print(json.dumps({"median": statistics.median(times), "ganzoo": str(Path(ganzoo.__file__).parent),
                      "ops": backend.report(build=False)[0].backend}))


def measure(config, steps: int, baseline: str | None) -> dict:
    variant, _, hparams, precision, old, extra_env = config
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra_env)
    if old:
        env["PYTHONPATH"] = baseline
    spec = json.dumps({"variant": variant, "hparams": hparams, "precision": precision, "steps": steps})
    out = subprocess.run([sys.executable, __file__, "--worker", spec], env=env, capture_output=True,
                         text=True, check=True, cwd=baseline if old else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout of an older ganzoo (its root folder)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="toolkit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed generator steps per process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    configs = [c for c in SUITES[args.suite] if args.baseline or not c[4]]
    rounds: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    sources: dict[int, str] = {}
    backends: dict[int, str] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.rounds):
        for i, config in enumerate(configs):
            result = measure(config, args.steps, args.baseline)
            rounds[i].append(result["median"])
            sources[i] = result["ganzoo"]
            backends[i] = result["ops"]
        print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n| variant | configuration | ops | s/step (median of {args.rounds} rounds) | spread | ratio |")
    print("|---|---|---|---|---|---|")
    first: dict[str, float] = {}
    for i, (variant, label, *_rest) in enumerate(configs):
        med = statistics.median(rounds[i])
        first.setdefault(variant, med)
        print(f"| {variant} | {label} | {backends[i]} | {med:.4f} | {min(rounds[i]):.4f}-{max(rounds[i]):.4f} | "
              f"{med / first[variant]:.3f} |")
    print("\nganzoo imported from: " + "; ".join(sorted(set(sources.values()))))


if __name__ == "__main__":
    main()
