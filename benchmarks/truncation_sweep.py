"""A truncation sweep: quality against diversity as psi goes from 1 down (BigGAN, StyleGAN2).

Scores one run at each psi with ``ganzoo.evaluate(..., options={"truncation": psi})``
(ganzoo's classifier features: FD, KID, precision, recall, the largest class's share
and, for conditional variants, label accuracy) and prints a markdown table, with a
last row for real data (the floor)::

    OMP_NUM_THREADS=1 python benchmarks/truncation_sweep.py runs/stylegan2 --n 5000 \\
        --out-md docs/results/truncation-stylegan2.md --grid truncation.png --style-mix-grid style-mix.png

Every psi is passed to the variant, psi 1 too: for stylegan2 it is the same as no
truncation (w_avg + 1 (w - w_avg) = w), for biggan it is the paper's threshold
|z_i| <= 2, not the plain normal; ``--psi none`` adds a row without the option.
``--grid FILE``: one PNG, a row per psi of the same 10 latents (seed ``--seed`` at
every psi: a column is one latent being truncated; conditional variants draw
classes 0..9, one per column). ``--style-mix-grid FILE``: the 6 x 6 style-mixing
grid (variants listing ``style_mix``). Nothing is written into the run directory.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

DEFAULT_PSI = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
GRID_LATENTS = 10  # latents per row of --grid
STYLE_MIX_K = 6  # --style-mix-grid: K x K cells from K latents


def psi_arg(text: str) -> float | None:
    """A psi for ``--psi``: a number, or ``none`` (no truncation option at all)."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or none, got {text!r}") from None


def options_of(psi: float | None) -> dict:
    return {} if psi is None else {"truncation": psi}


def psi_text(psi: float | None) -> str:
    return "none" if psi is None else f"{psi:g}"


def check_setup(loaded, psis: list[float | None], style_mix_grid: bool) -> None:
    """One-line errors before anything slow: the variant takes each option, each psi is valid."""
    from ganzoo.errors import GanzooError
    from ganzoo.sampling import check_sampling_options, sample

    if not loaded.spec.is_image or not loaded.spec.labeled:
        raise GanzooError("the sweep scores labeled images with ganzoo's classifier features; "
                          "this run's data is not labeled images")
    if style_mix_grid:
        check_sampling_options(loaded.variant, {"style_mix": True})
    for psi in psis:
        # The variant checks the value (psi in (0, 1]) and says what it means for it.
        sample(loaded, n=1, options=options_of(psi))


def sweep(run_dir: Path, psis: list[float | None], n: int, *, seed: int = 0, device: str = "cpu",
          data_dir: Path | None = None, log=None) -> tuple[list[tuple[float | None, dict]], dict]:
    """[(psi, evaluate's result)] for each psi, and the real floor (from the first evaluation)."""
    from ganzoo.evaluation.api import evaluate

    rows, floor = [], {}
    for i, psi in enumerate(psis):
        result = evaluate(run_dir, n=n, device=device, seed=seed, data_dir=data_dir, write=False,
                          floor=i == 0, log=log, options=options_of(psi))
        if i == 0:
            floor = result.get("floor") or {}
        rows.append((psi, result))
        print(f"psi {psi_text(psi)}: FD {result['metrics']['frechet_distance']:.3f} "
              f"({result['seconds']:.1f} s)", file=sys.stderr, flush=True)
    return rows, floor


def table(rows: list[tuple[float | None, dict]], floor: dict, conditional: bool) -> list[str]:
    """The markdown table: one row per psi, then real data."""
    head = ["psi", "FD", "KID", "precision", "recall", "largest class %"]
    if conditional:
        head.append("label accuracy %")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(label: str, m: dict) -> str:
        values = [label, f"{m['frechet_distance']:.3f}", f"{m['kid']:.4f} ± {m.get('kid_std', 0.0):.4f}",
                  f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{100 * m['largest_class_share']:.1f}"]
        if conditional:
            accuracy = m.get("label_accuracy")
            values.append("-" if accuracy is None else f"{100 * accuracy:.1f}")
        return "| " + " | ".join(values) + " |"

    lines += [cells(psi_text(psi), result["metrics"]) for psi, result in rows]
    if floor:
        lines.append(cells("real (floor)", floor))
    return lines


def write_grid(loaded, psis: list[float | None], path: Path, seed: int) -> None:
    """A row per psi of the same GRID_LATENTS latents (the same seed at every psi)."""
    import torch

    from ganzoo.plotting import save_image_grid
    from ganzoo.sampling import sample

    rows = [sample(loaded, n=GRID_LATENTS, seed=seed, options=options_of(psi)) for psi in psis]
    save_image_grid(torch.cat(rows), path, nrow=GRID_LATENTS)


def write_style_mix_grid(loaded, path: Path, seed: int) -> None:
    from ganzoo.plotting import save_image_grid
    from ganzoo.sampling import sample

    images = sample(loaded, n=STYLE_MIX_K * STYLE_MIX_K, seed=seed, options={"style_mix": True})
    save_image_grid(images, path, nrow=STYLE_MIX_K)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (or checkpoint)")
    parser.add_argument("--psi", type=psi_arg, nargs="+", default=list(DEFAULT_PSI),
                        help="truncation values, in (0, 1], or none (default: 1 0.9 0.8 0.7 0.6 0.5)")
    parser.add_argument("--n", type=int, default=5000, help="samples per psi (default 5000)")
    parser.add_argument("--out-md", type=Path, metavar="FILE", help="also write the table here")
    parser.add_argument("--grid", type=Path, metavar="FILE", help="a PNG: one row per psi of the same 10 latents")
    parser.add_argument("--style-mix-grid", type=Path, metavar="FILE",
                        help=f"a PNG: the {STYLE_MIX_K} x {STYLE_MIX_K} style-mixing grid (stylegan2)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where the run's dataset lives now")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the samples and grids (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    args = parser.parse_args(argv)

    import torch

    from ganzoo.errors import GanzooError
    from ganzoo.sampling import load_generator
    from ganzoo.trainer import resolve_device

    try:
        loaded = load_generator(args.run_dir, resolve_device(args.device))  # once, for the checks and grids
        check_setup(loaded, args.psi, args.style_mix_grid is not None)
        rows, floor = sweep(args.run_dir, args.psi, args.n, seed=args.seed, device=args.device,
                            data_dir=args.data_dir, log=lambda message: print(message, file=sys.stderr))
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        config = loaded.config
        lines = [f"Truncation sweep of {config['variant']} on {config['dataset']} ({args.run_dir}), "
                 f"step {loaded.step}{', EMA generator' if loaded.ema else ''}: n = {args.n} samples per psi "
                 f"(seed {args.seed}), {date.today()}, torch {torch.__version__}, load average {load}",
                 "", *table(rows, floor, loaded.variant.conditional)]
        text = "\n".join(lines) + "\n"
        print(text, end="")
        written = []
        if args.out_md is not None:
            args.out_md.parent.mkdir(parents=True, exist_ok=True)
            args.out_md.write_text(text)
            written.append(args.out_md)
        if args.grid is not None:
            write_grid(loaded, args.psi, args.grid, args.seed)
            written.append(args.grid)
        if args.style_mix_grid is not None:
            write_style_mix_grid(loaded, args.style_mix_grid, args.seed)
            written.append(args.style_mix_grid)
    except (GanzooError, OSError) as exc:
        print(f"truncation_sweep: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
