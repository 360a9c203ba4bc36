"""Train every registered variant with its defaults and collect the final grids.

    python benchmarks/gallery.py [--out docs] [--datasets digits 8gaussians] [--variants ...]

Writes ``{out}/gallery/{variant}-{dataset}.png`` and ``{out}/gallery.md`` (a
table of wall time and final losses per run), so the README's pictures can be
rebuilt with one command. Each run uses the variant's default budget and seed 0.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

import ganzoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--datasets", nargs="+", default=["digits", "8gaussians"])
    parser.add_argument("--variants", nargs="+", default=ganzoo.list_variants())
    args = parser.parse_args()

    gallery = args.out / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets:
            for name in args.variants:
                run_dir = Path(scratch) / f"{name}-{dataset}"
                start = time.perf_counter()
                result = ganzoo.train(name, dataset, out=run_dir,
                                      options=ganzoo.TrainOptions(sample_every=0, ckpt_every=0, progress=False))
                seconds = time.perf_counter() - start
                image = gallery / f"{name}-{dataset}.png"
                shutil.copy(run_dir / "samples" / "final.png", image)
                losses = {k: round(v, 4) for k, v in result.last_metrics.items() if k.endswith("/loss")}
                rows.append((name, dataset, result.state.step, seconds, losses, image.name))
                print(json.dumps({"variant": name, "dataset": dataset, "steps": result.state.step,
                                  "seconds": round(seconds, 1), **losses}), flush=True)

    lines = [
        "# Gallery: every variant with its defaults",
        "",
        f"Rebuilt with `python benchmarks/gallery.py` on {date.today()} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, device {'cuda' if torch.cuda.is_available() else 'cpu'}), seed 0.",
        "",
        "| variant | dataset | steps | wall time | final losses | samples |",
        "|---|---|---|---|---|---|",
    ]
    for name, dataset, steps, seconds, losses, image in rows:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in losses.items())
        lines.append(f"| `{name}` | {dataset} | {steps} | {seconds / 60:.1f} min | {shown} | "
                     f"![{name} on {dataset}](gallery/{image}) |")
    (args.out / "gallery.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
