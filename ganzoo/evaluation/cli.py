"""``ganzoo eval RUN_DIR [--n N] [--json] [--data-dir DIR]``: quality metrics of a trained run.

Registered through ``ganzoo.cli.COMMAND_MODULES``; importing this module is
cheap (torch loads only when the command runs).
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..cpu_threads import add_threads_option
# The CLI's own argument checks (imported after ganzoo.cli loads); --stage and --truncation as `ganzoo sample`.
from ..cli import SAMPLING_OPTIONS, _finite_float, _positive_int, _sample_count, _seed, path_arg

EPILOG = """examples:
  ganzoo eval runs/wgan-gp-grid                 # 2500 samples: modes, high-quality %, reverse KL
  ganzoo eval runs/dcgan-mnist --n 10000        # classifier features: FD, KID, precision/recall, classes
  ganzoo eval runs/cgan-digits --json           # the same as JSON (also written to RUN_DIR/eval.json)
  ganzoo eval runs/x/checkpoints/step-0001000.pt   # one checkpoint -> RUN_DIR/eval-step-0001000.json
  ganzoo eval runs/stylegan2 --truncation 0.7   # the truncation trick -> RUN_DIR/eval-truncation0.7.json
  ganzoo eval runs/x --features inception --inception-weights W.pth   # FID/KID/IS/PR -> RUN_DIR/eval-inception.json
  ganzoo eval --real real_images/ --fake my_samples/ --inception-weights W.pth   # two image folders

image datasets: a small classifier is trained on the real training split the
first time (about a minute on 2 CPU cores for MNIST), its test accuracy printed,
and cached under $GANZOO_CACHE/classifiers (default ~/.cache/ganzoo/classifiers).
"""

#: (key, label, format) of the rows shown for each kind of data, in order.
VECTOR_ROWS = [
    ("modes", "modes captured", "modes"),
    ("hq_percent", "high-quality samples (%)", "{:.1f}"),
    ("reverse_kl", "reverse KL (nats)", "{:.3f}"),
    ("largest_mode_share", "largest mode share (HQ)", "{:.3f}"),
    ("label_accuracy", "label accuracy (nearest mode)", "{:.3f}"),
    ("energy_distance", "energy distance", "{:.4f}"),
    ("sliced_wasserstein", "sliced Wasserstein", "{:.4f}"),
]
IMAGE_ROWS = [
    ("frechet_distance", "Fréchet distance (FD)", "{:.3f}"),
    ("kid", "KID", "kid"),
    ("precision", "precision (k=3)", "{:.3f}"),
    ("recall", "recall (k=3)", "{:.3f}"),
    ("confident_fraction", "confidence >= 0.9", "{:.3f}"),
    ("classes_present", "classes present", "classes"),
    ("largest_class_share", "largest class share", "{:.3f}"),
    ("label_accuracy", "label accuracy", "{:.3f}"),
    ("class_histogram", "class histogram", "list"),
]


def add_command(subparsers, parser_class) -> None:
    p = subparsers.add_parser(
        "eval", help="quality metrics of a trained run", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample from a run's newest checkpoint (or a given checkpoint) and measure its quality\n"
                    "against real data: modes, high-quality % and reverse KL for 2-D mixtures; distances\n"
                    "for other 2-D data; classifier-feature metrics for images. Real data gives the floor.\n"
                    "The result is written to RUN_DIR/eval.json (eval-step-N.json for a checkpoint file;\n"
                    "eval-inception[-step-N].json with --features inception; with --truncation or --stage\n"
                    "their names are added, e.g. eval-truncation0.7.json) unless --no-write.\n"
                    "With --real DIR --fake DIR: Inception metrics between two image folders.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT", nargs="?",
                   help="the run to score (or give --real and --fake instead)")
    p.add_argument("--features", choices=("classifier", "inception"), default="classifier",
                   help="classifier: ganzoo's own classifier of the dataset (default; MNIST-like labeled "
                        "data); inception: FID, KID, IS and precision/recall in Inception-v3 space, "
                        "comparable with papers (needs --inception-weights)")
    p.add_argument("--real", metavar="DIR", type=path_arg, help="with --fake: score two image folders (Inception)")
    p.add_argument("--fake", metavar="DIR", type=path_arg, help="with --real: the generated images")
    p.add_argument("--inception-weights", metavar="PATH", type=path_arg,
                   help="the FID Inception-v3 weights (a local PyTorch state dict; default "
                        "$GANZOO_INCEPTION_WEIGHTS)")
    p.add_argument("--n", type=_sample_count, help="samples to draw (default 2500 for 2-D data, 5000 for images)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--data-dir", type=path_arg, help="where the run's dataset lives now (default: as trained)")
    p.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-write", action="store_true", help="do not write eval.json into the run directory")
    p.add_argument("--no-ema", action="store_true",
                   help="score the trained G, not its EMA copy (runs trained with --set ema=DECAY)")
    p.add_argument("--stage", type=_positive_int, metavar="N",
                   help="score this stage, for staged variants (stackgan: 1 = Stage-I, 2 = Stage-II, the "
                        "default once trained); as `ganzoo sample --stage`")
    p.add_argument("--truncation", type=_finite_float, metavar="PSI",
                   help="score samples drawn with the truncation trick, for variants that take it, PSI in "
                        "(0, 1] (stylegan2, biggan); as `ganzoo sample --truncation`")
    add_threads_option(p)
    p.set_defaults(handler=cmd_eval)


#: The ``ganzoo sample`` options ``ganzoo eval`` passes to ``Variant.generate`` (the per-sample ones:
#: ``--style-mix`` draws a grid, not samples).
EVAL_SAMPLING_OPTIONS = tuple(key for key in SAMPLING_OPTIONS if key != "style_mix")


def cmd_eval(args) -> int:
    from ..errors import GanzooError

    folders = args.real is not None or args.fake is not None
    if folders and (args.real is None or args.fake is None):
        raise GanzooError("--real and --fake go together: two folders of images to compare")
    if folders and args.path is not None:
        raise GanzooError("give a run to score, or --real and --fake, not both")
    if not folders and args.path is None:
        raise GanzooError("name a run directory (or checkpoint) to score, or give --real DIR --fake DIR")
    options = {key: getattr(args, key) for key in EVAL_SAMPLING_OPTIONS if getattr(args, key) is not None}
    if options and (folders or args.features == "inception"):
        flags = " and ".join(f"--{key}" for key in options)
        verb = "applies" if len(options) == 1 else "apply"
        raise GanzooError(f"{flags} {verb} to a run scored with ganzoo's classifier features, "
                          f"not to {'--real/--fake folders' if folders else '--features inception'}")
    if folders or args.features == "inception":
        return _inception_eval(args, folders)
    from .api import evaluate

    result = evaluate(args.path, n=args.n, device=args.device, seed=args.seed, data_dir=args.data_dir,
                      write=not args.no_write, ema=not args.no_ema, options=options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0


def _inception_eval(args, folders: bool) -> int:
    from pathlib import Path

    from ..errors import GanzooError
    from ..io import atomic_write
    from .inception import evaluate_folders, evaluate_run

    if folders:
        result = evaluate_folders(args.real, args.fake, args.inception_weights, args.device, args.seed)
    else:
        result = evaluate_run(args.path, n=args.n, weights=args.inception_weights, device=args.device,
                              seed=args.seed, ema=not args.no_ema, data_dir=args.data_dir)
        if not args.no_write:  # beside eval.json, with the same naming
            name = ("eval-inception.json" if Path(args.path).is_dir()
                    else f"eval-inception-step-{result['step']:07d}.json")
            out = Path(result["run_dir"]) / name
            try:
                atomic_write(out, lambda handle: handle.write((json.dumps(result, indent=2) + "\n").encode()))
            except OSError as exc:
                raise GanzooError(f"cannot write {out}: {exc.strerror or exc}") from None
            result["written_to"] = str(out)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["metrics"]
    what = (f"{result['fake']} ({result['n_fake']} images) against {result['real']} ({result['n_real']})"
            if folders else f"{result['variant']} step {result['step']} ({result['n_fake']} samples) against "
                            f"{result['n_real']} real {result['dataset']} images")
    print(f"Inception-v3 metrics: {what}")
    print(f"  FID {m['fid']:.3f}   KID {m['kid']:.5f} ± {m['kid_std']:.5f}   "
          f"IS {m['inception_score']:.3f} ± {m['inception_score_std']:.3f}   "
          f"precision {m['precision']:.3f}   recall {m['recall']:.3f}")
    return 0


def _cell(value: Any, fmt: str, row: dict[str, Any]) -> str:
    if value is None:
        return "-"
    if fmt == "modes":
        return f"{value} / {row.get('modes_total', '?')}"
    if fmt == "classes":
        return f"{value} / {row.get('num_classes', '?')}"
    if fmt == "kid":
        return f"{value:.4f} ± {row.get('kid_std', 0.0):.4f}"
    if fmt == "list":
        return " ".join(str(v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt.format(value)


def _classifier_line(c: dict[str, Any], what: str = "feature classifier") -> str:
    state = "trained now" if c.get("trained_now") else "cached"
    return f"{what}: test accuracy {100 * c['test_accuracy']:.2f}% ({state}, {c['path']})"


def format_translation(result: dict[str, Any]) -> str:
    """A translation model's result: one table per direction (see evaluation.api.translation_metrics)."""
    lines = [f"{result['variant']} on {result['dataset']}, step {result['step']}: "
             f"{result.get('n_translated', result['n'])} held-out images translated each way"
             + (", with the EMA generators" if result.get("ema") else "")]
    for domain, c in sorted((result.get("classifier") or {}).items()):
        lines.append(_classifier_line(c, f"domain {domain.upper()} classifier"))
    for direction in ("a2b", "b2a"):
        prefix = f"{direction}/"
        sub = {k[len(prefix):]: v for k, v in result.get("metrics", {}).items() if k.startswith(prefix)}
        floor = {k[len(prefix):]: v for k, v in (result.get("floor") or {}).items() if k.startswith(prefix)}
        lines.append(f"{direction} (label accuracy: the target classifier reads the source image's label)")
        lines += _table(IMAGE_ROWS, sub, floor, generated="translated")
    if result.get("written_to"):
        lines.append(f"written to {result['written_to']}")
    return "\n".join(lines)


def format_result(result: dict[str, Any]) -> str:
    """A table for a person: each metric for the generator and for real data."""
    if result.get("kind") == "translation":
        return format_translation(result)
    metrics, floor = result.get("metrics", {}), result.get("floor") or {}
    rows = IMAGE_ROWS if result.get("kind") == "image" else VECTOR_ROWS
    options = "".join(f", {key.replace('_', '-')} {value}"
                      for key, value in sorted((result.get("sampling_options") or {}).items()))
    head = (f"{result['variant']} on {result['dataset']}, step {result['step']}: "
            f"n = {result['n']} samples (seed {result['seed']}){options}"
            + (", from the EMA generator" if result.get("ema") else ""))
    lines = [head]
    if result.get("classifier"):
        lines.append(_classifier_line(result["classifier"]))
    lines += _table(rows, metrics, floor)
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    if result.get("written_to"):
        lines.append(f"written to {result['written_to']}")
    return "\n".join(lines)


def _table(rows, metrics: dict[str, Any], floor: dict[str, Any], generated: str = "generated") -> list[str]:
    table = [("metric", generated, "real (floor)")]
    for key, label, fmt in rows:
        if key not in metrics and key not in floor:
            continue
        table.append((label, _cell(metrics.get(key), fmt, metrics), _cell(floor.get(key), fmt, floor)))
    if "label_accuracy_per_class" in metrics:
        per = " ".join(f"{v:.2f}" if math.isfinite(v) else "-" for v in metrics["label_accuracy_per_class"])
        table.append(("label accuracy per class", per, ""))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = []
    for i, row in enumerate(table):
        lines.append("  " + "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines
