"""``ganzoo ops`` and ``ganzoo bench``: which fused-op backend runs where, and how fast.

``ganzoo ops`` lists, for every fused op and device, the backend it uses
(``cuda``, ``cpu`` or ``ref``) and why (e.g. the build failed, with the log's
path). It builds the extension if needed, unless ``--no-build``.

``ganzoo bench`` runs the benchmark protocol of ``ganzoo.ops.bench`` (fused vs
plain PyTorch) and prints Markdown tables, or JSON with ``--json``.

Nothing heavy is imported until a command runs, so ``ganzoo --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import GanzooError

EPILOG_OPS = """environment:
  GANZOO_OPS=auto|native|ref   auto (default): kernels where they exist, else the reference;
                               native: kernels or an error; ref: never build, plain PyTorch
  GANZOO_OPS_CACHE=DIR         where builds go (default: <ganzoo cache>/ops)
  GANZOO_OPS_VERBOSE=1         show the compiler's commands and output
"""

EPILOG_BENCH = """examples:
  ganzoo bench --quick                 # a smoke run, under a minute on 2 CPU cores
  ganzoo bench --device cpu            # the protocol's CPU cases (a few minutes)
  ganzoo bench --device cuda --json > results.json
"""


def add_command(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "ops", help="show which backend each fused op uses on each device, and why",
        description="For every fused op (fused_leaky_relu, interpolate, gradient_penalty) and device "
                    "(cpu, cuda): the backend that runs (cuda, cpu or ref) and why. Builds the "
                    "C++/CUDA extension on first use (a minute or two) unless --no-build.",
        epilog=EPILOG_OPS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-build", action="store_true", help="report without building the extension")
    p.set_defaults(handler=cmd_ops)

    p = subparsers.add_parser(
        "bench", help="benchmark the fused ops against plain PyTorch",
        description="Time the fused ops against eager PyTorch: each kernel against the copy "
                    "bandwidth, the bias + leaky ReLU + gain chain (forward, + backward, + double "
                    "backward) and full WGAN-GP critic steps, with the device, versions and date. "
                    "Figures that cannot be trusted are flagged: a Caution line for a busy machine, "
                    "'noisy' timings (p10-p90 beyond half the median), '(!)' on impossible shares of "
                    "the copy bandwidth.",
        epilog=EPILOG_BENCH, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where to run (default: cuda when available, else cpu)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quick", action="store_true", help="small sizes and few runs: a smoke test")
    p.add_argument("--compile", action="store_true",
                   help="add a torch.compile column (compiling takes minutes on a CPU)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch and the kernels (default: torch's, usually the cores)")
    p.set_defaults(handler=cmd_bench)


def cmd_ops(args) -> int:
    import torch

    from .ops import backend

    mode = backend.mode()  # a bad GANZOO_OPS is a GanzooError
    rows = backend.report(build=not args.no_build)
    if args.json:
        print(json.dumps({"mode": mode, "torch": torch.__version__, "cuda": torch.version.cuda,
                          "ops": [r.to_dict() for r in rows]}, indent=2))
        return 0
    print(f"GANZOO_OPS={mode}{' (default)' if mode == 'auto' else ''}; torch {torch.__version__}"
          f"{', CUDA ' + torch.version.cuda if torch.version.cuda else ', no CUDA'}")
    width = max(len(r.op) for r in rows)
    for device in ("cpu", "cuda"):
        print(f"{device}:")
        for r in rows:
            if r.device == device:
                print(f"  {r.op:<{width}}  {r.backend:<4}  {r.reason}")
    return 0


def cmd_bench(args) -> int:
    import torch

    from .ops import bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise GanzooError("--device cuda, but there is no CUDA device here "
                          f"(torch {torch.__version__}{', built without CUDA' if torch.version.cuda is None else ''})")
    if args.threads is not None:
        if args.threads < 1:
            raise GanzooError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    settings = bench.default_settings(device, quick=args.quick)
    settings.compile = args.compile
    progress = None if args.json else (lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    results = bench.run(settings, progress=progress)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(results), indent=2))
    else:
        print(bench.to_markdown(results))
    return 0
