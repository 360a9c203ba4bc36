"""Mixed precision on a real run: wgan-gp on digits in fp32, bf16 (and fp16 on CUDA).

Each precision trains ``--steps`` generator steps (5 critic steps each, with
the gradient penalty) in its own process, then this reads its metrics.jsonl:
whether every logged value stayed finite, the median seconds per generator
step over the log intervals after the first (warm-up excluded), the final
losses, and on CUDA the peak memory allocated. The runs are sequential, so
compare speeds only on an otherwise idle machine (the CPU step-time ratio is
measured interleaved by ``benchmarks/toolkit_overhead.py``)::

    OMP_NUM_THREADS=1 python benchmarks/precision_runs.py --device cpu --steps 2000
    python benchmarks/precision_runs.py --device cuda --steps 2000
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(spec: dict) -> None:
    import torch

    import ganzoo

    options = ganzoo.TrainOptions(device=spec["device"], precision=spec["precision"], sample_every=0,
                                  ckpt_every=0, log_every=50, progress=False)
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ganzoo.train("wgan-gp", "digits", out=spec["out"], hparams={"steps": spec["steps"]}, options=options)
    peak = torch.cuda.max_memory_allocated() / 2**20 if spec["device"] == "cuda" else None
    print(json.dumps({"peak_mib": peak}))


def summarise(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step_time" in r]
    finite = all(math.isfinite(v) for r in steps for v in r.values() if isinstance(v, (int, float)))
    return {"finite": finite, "steps": steps[-1]["step"] if steps else 0,
            "s_per_step": statistics.median(r["step_time"] for r in steps[1:]) if len(steps) > 1 else math.nan,
            "D/loss": steps[-1].get("D/loss"), "G/loss": steps[-1].get("G/loss"),
            "D/grad_norm": steps[-1].get("D/grad_norm")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--precisions", default=None, help="comma-separated (default: fp32,bf16 on CPU, "
                                                           "fp32,bf16,fp16 on CUDA)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    precisions = (args.precisions or ("fp32,bf16" if args.device == "cpu" else "fp32,bf16,fp16")).split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            out = Path(tmp) / precision
            spec = {"device": args.device, "precision": precision, "steps": args.steps, "out": str(out)}
            start = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                  text=True, env=dict(os.environ))
            wall = time.perf_counter() - start
            if done.returncode != 0:
                rows.append((precision, {"error": done.stderr.strip().splitlines()[-1:]}, wall, None))
                continue
            peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]
            rows.append((precision, summarise(out), wall, peak))
            print(f"{precision}: done in {wall:.0f} s", flush=True)
    print(f"\nwgan-gp on digits, {args.steps} generator steps, device {args.device}, "
          f"load {os.getloadavg()[0]:.2f}\n")
    print("| precision | finite | s/step (median) | vs fp32 | peak MiB | D/loss | G/loss | D/grad_norm | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = next((r[1].get("s_per_step") for r in rows if r[0] == "fp32" and "error" not in r[1]), None)
    for precision, result, wall, peak in rows:
        if "error" in result:
            print(f"| {precision} | failed: {' '.join(result['error'])} | | | | | | | {wall:.0f} |")
            continue
        ratio = f"{result['s_per_step'] / base:.2f}x" if base else ""
        peak_text = f"{peak:.0f}" if peak is not None else "-"
        print(f"| {precision} | {'yes' if result['finite'] else 'NO'} ({result['steps']} steps) | "
              f"{result['s_per_step']:.4f} | {ratio} | {peak_text} | {result['D/loss']:.3f} | "
              f"{result['G/loss']:.3f} | {result['D/grad_norm']:.3f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
