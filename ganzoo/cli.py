"""The ``ganzoo`` command line: list, train, sample.

Every user error is one line on stderr and exit code 2; no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .cpu_threads import add_threads_option, prepare_openmp, use_threads
from .errors import GanzooError

EPILOG_TRAIN = """examples:
  ganzoo train wgan-gp                              # digits, defaults, ~13 min on 2 idle CPU cores
  ganzoo train dcgan --steps 500 --out runs/dcgan   # a shorter run into a chosen folder
  ganzoo train wgan-gp --dataset 8gaussians --set gp_weight=0.1
  ganzoo train lsgan --set a=-1 b=1 c=0             # the LSGAN paper's alternative coding
  ganzoo train cgan --set arch=mlp betas=0.5,0.99
  ganzoo train dcgan --set ema=0.999 lr_schedule=linear label_smoothing=0.9
  ganzoo train wgan-gp --precision bf16 --set diffaug=color,translation,cutout
"""


#: Modules that define further commands: each has ``add_command(subparsers,
#: parser_class)``, which adds its parser and sets ``handler=fn(args) -> int``.
COMMAND_MODULES: list[str] = ["ganzoo.plugins_cli", "ganzoo.check_cli", "ganzoo.evaluation.cli", "ganzoo.ops_cli",
                               "ganzoo.translate_cli"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) instead of usage + error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: The largest value a count option takes: far beyond any real use, and small
#: enough that torch, numpy and memory sizes never overflow on the way.
MAX_COUNT = 10**9
#: Seeds are what torch.manual_seed takes for every run-derived stream: 0 .. 2^63 - 1.
MAX_SEED = 2**63 - 1


def _bounded_int(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high], else a one-line usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"expected {what} of at most {high:,}, got {text!r}")
        return value
    return parse


_positive_int = _bounded_int(1, MAX_COUNT, "a positive integer")
_seed = _bounded_int(0, MAX_SEED, "a seed, an integer >= 0")
_batch_size = _bounded_int(1, 2**20, "a positive integer")
_image_size = _bounded_int(1, 4096, "a positive integer")
_sample_count = _bounded_int(1, 10**7, "a positive integer")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


#: ``ganzoo sample`` options passed to ``Variant.generate`` as keywords when given (the variant must list
#: each in ``sampling_options``, else a one-line error): the argparse destination is the keyword.
SAMPLING_OPTIONS = ("stage", "truncation", "style_mix")


def path_arg(text: str) -> Path:
    """An argparse type: a non-empty path (``--out ""``, e.g. from an unset shell variable, would
    otherwise mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. n_critic=5), got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ganzoo", description="Train, sample and compare GAN variants.")
    parser.add_argument("--version", action="version", version=f"ganzoo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = commands.add_parser("list", help="list variants, datasets and plugin problems",
                            description="List the registered variants (with the plugin providing each), "
                                        "the datasets, and plugins that failed to load.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser("train", help="train a variant", epilog=EPILOG_TRAIN,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Train VARIANT and write samples, metrics.jsonl and "
                                        "checkpoints into a run directory.")
    p.add_argument("variant", metavar="VARIANT", nargs="?",
                   help="a name from `ganzoo list` (optional with --resume)")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT", type=path_arg,
                   help="continue a run from its newest valid checkpoint (or the given one); options "
                        "such as --ckpt-every keep the run's own values unless given again")
    p.add_argument("--force", action="store_true",
                   help="with --resume: apply changed hyperparameters (e.g. --lr); the change is logged")
    p.add_argument("--dataset", help="dataset name, or folder:PATH (default: the variant's default, digits)")
    p.add_argument("--data-dir", type=path_arg,
                   help="the dataset's folder (default: $GANZOO_DATA/NAME, else ~/.cache/ganzoo/data/NAME)")
    p.add_argument("--image-size", type=_image_size, help="resize and centre-crop images to this side")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1: grayscale, 3: RGB")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                   help="vector data: train on coordinates divided by their root mean square (plots, "
                        "samples and metrics stay in the data's own units); default: what the variant "
                        "asks for (`ganzoo list --json`: dataset_defaults)")
    p.add_argument("--steps", type=_positive_int, help="generator steps (default: the variant's)")
    p.add_argument("--batch-size", type=_batch_size, help="examples per batch")
    p.add_argument("--lr", type=_positive_float, help="learning rate of both G and D")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=path_arg, help="run directory (default: runs/VARIANT-DATASET-TIME)")
    p.add_argument("--keep", type=_non_negative_int,
                   help="checkpoints kept on disk, newest first (and the newest with sane weights); "
                        "0 keeps all (default 3)")
    p.add_argument("--eval-every", type=_non_negative_int,
                   help="evaluate quality every N steps into metrics.jsonl (see `ganzoo eval`); 0: never")
    p.add_argument("--eval-n", type=_sample_count, help="samples per evaluation (default 2500)")
    p.add_argument("--accumulate", type=_batch_size,
                   help="split each rank's share of a batch into N micro-batches (gradients summed)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on CUDA: BatchNorm statistics over the global batch "
                        "(off by default: an all-reduce per BN layer per step)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                   help="fp32 (default), bf16 (autocast; CPU and CUDA) or fp16 (autocast + loss "
                        "scaling; CUDA); a resume keeps the run's own unless given")
    p.add_argument("--on-nan", choices=("stop", "skip"),
                   help="a NaN/Inf loss or gradient stops training (default) or skips that step")
    p.add_argument("--sample-every", type=_non_negative_int,
                   help="write a sample grid every N steps; 0: only at the end (default 500)")
    p.add_argument("--ckpt-every", type=_non_negative_int,
                   help="write a checkpoint every N steps; 0: only at the end (default 1000)")
    p.add_argument("--log-every", type=_positive_int,
                   help="append to metrics.jsonl every N steps (default 10)")
    # Run options (--keep ... --log-every, --precision) left out on --resume keep the run's own values.
    p.add_argument("--set", dest="overrides", type=_key_value, nargs="+", action="extend",
                   default=[], metavar="KEY=VALUE",
                   help="override a variant hyperparameter (see `ganzoo list --json`)")
    p.add_argument("--logger", dest="loggers", action="append", metavar="NAME",
                   help="also send the run's events to this logger (repeatable; `ganzoo list` shows them); "
                        "a resume keeps the run's own unless given; `--logger none` drops them")
    p.add_argument("--tensorboard", dest="loggers", action="append_const", const="tensorboard",
                   help="the same as --logger tensorboard: scalars, grids and hyperparameters in "
                        "RUN_DIR/tensorboard (needs pip install 'ganzoo[tensorboard]')")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_option(p)
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser("sample", help="sample from a trained run",
                            description="Draw samples from a run directory's newest checkpoint "
                                        "(or a given checkpoint) and save them as a PNG.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--n", type=_sample_count, default=64, help="number of samples (default 64)")
    p.add_argument("--label", type=int, help="class to draw (conditional variants)")
    p.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    p.add_argument("--out", type=path_arg,
                   help="PNG file (.gif with --gif); default: RUN_DIR/samples/ with one name per mode, "
                        "e.g. sample-seed0.png, sample-seed0-label3.png, interpolate10-seed0.png")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-ema", action="store_true",
                   help="sample the trained G, not its EMA copy (runs trained with --set ema=DECAY)")
    p.add_argument("--interpolate", type=int, metavar="K",
                   help="a latent walk instead: --rows rows of K points between two noise vectors "
                        "(spherical for Gaussian noise); images only")
    p.add_argument("--rows", type=_positive_int, default=8, help="rows of a walk (default 8)")
    p.add_argument("--gif", action="store_true",
                   help="write the walk as an animated GIF (one frame per point; K defaults to 16)")
    p.add_argument("--stage", type=_positive_int, metavar="N",
                   help="the stage to draw from, for staged variants (stackgan: 1 = Stage-I, 2 = Stage-II, "
                        "the default once trained)")
    p.add_argument("--truncation", type=_finite_float, metavar="PSI",
                   help="the truncation trick, for variants that take it, PSI in (0, 1] (stylegan2: "
                        "w = w_avg + PSI (w - w_avg); biggan: z from the normal truncated to |z_i| <= 2 PSI)")
    p.add_argument("--style-mix", dest="style_mix", type=_positive_int, nargs="?", const=True, metavar="RES",
                   help="a style-mixing grid, for style-based variants (stylegan2: --n K*K samples, row i's "
                        "styles up to RES px, default 8, with column j's finer ones; not with --interpolate)")
    add_threads_option(p)
    p.set_defaults(handler=cmd_sample)

    p = commands.add_parser("export", help="write a run's generator for use without ganzoo",
                            description="Write the generator of a run (its EMA copy when it has one) as a "
                                        "TorchScript or ONNX file that maps noise (and labels) to samples "
                                        "and loads with torch (or an ONNX runtime) alone.")
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--format", dest="fmt", default="torchscript", metavar="FORMAT",
                   help="torchscript (default) or onnx (needs the onnx package)")
    p.add_argument("--out", type=path_arg, help="file to write (default: RUN_DIR/export/generator.pt|.onnx)")
    p.add_argument("--no-ema", action="store_true", help="export the trained G, not its EMA copy")
    p.set_defaults(handler=cmd_export)

    p = commands.add_parser("plot", help="plot a run's logged curves",
                            description="Draw the curves of RUN_DIR/metrics.jsonl (losses, D's outputs, gradient "
                                        "norms and penalties, learning rates, evaluations) into a PNG. "
                                        "Training keeps RUN_DIR/samples/losses.png up to date by itself.")
    p.add_argument("path", metavar="RUN_DIR", type=path_arg)
    p.add_argument("--out", type=path_arg, help="PNG file (default: RUN_DIR/samples/losses.png)")
    p.set_defaults(handler=cmd_plot)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(commands, _Parser)
    return parser


def cmd_list(args) -> int:
    from . import plugins
    from .registry import DATASETS, LOGGERS, VARIANTS, plugin_failures

    variants = []
    for name in VARIANTS.names():
        entry = VARIANTS.entry(name)
        cls = entry.obj
        variants.append({
            "name": name, "plugin": entry.plugin, "builtin": plugins.plugin_info(entry.plugin).builtin,
            "conditional": cls.conditional, "summary": cls.summary, "paper": cls.paper,
            "default_dataset": cls.default_dataset,
            "hparams": _jsonable(cls.default_hparams(image=True)),
            "vector_hparams": _jsonable(cls.vector_defaults), "features": list(cls.features),
            "presets": _jsonable(cls.presets), "dataset_defaults": _jsonable(cls.dataset_defaults),
        })
    datasets = []
    for name in DATASETS.names():
        entry = DATASETS.entry(name)
        accepted = inspect.signature(entry.obj.__init__).parameters
        datasets.append({"name": name, "plugin": entry.plugin, "description": entry.obj.description,
                         **entry.obj.spec.to_dict(),
                         "options": [k for k in accepted if k not in ("self", "seed", "split", "download")]})
    loggers = [{"name": name, "plugin": LOGGERS.entry(name).plugin,
                "description": LOGGERS.get(name).description} for name in LOGGERS.names()]
    failures = [{"plugin": f.plugin, "problem": f.problem} for f in plugin_failures()]
    if args.json:
        print(json.dumps({"variants": variants, "datasets": datasets, "loggers": loggers,
                          "plugin_failures": failures}, indent=2))
        return 0
    print("Variants:")
    for v in variants:
        flag = " [conditional]" if v["conditional"] else ""
        presets = f"; --set preset={'|'.join(v['presets'])}" if v["presets"] else ""
        print(f"  {v['name']:<14} {v['summary']}{flag}  (plugin: {v['plugin']}{presets})")
    print("Datasets:")
    for d in datasets:
        shape = "x".join(str(s) for s in d["shape"])
        classes = f"{d['num_classes']} classes" if d["num_classes"] else "unlabeled"
        size = f"{d['size']:,} examples" if d["size"] else "sampled"
        print(f"  {d['name']:<14} {shape:<8} {classes:<11} {size:<16} {d['description']}")
    print("Loggers (ganzoo train --logger NAME):")
    for lg in loggers:
        print(f"  {lg['name']:<14} {lg['description']}  (plugin: {lg['plugin']})")
    if failures:
        print("Plugin problems:")
        for f in failures:
            print(f"  {f['plugin']}: {f['problem']}")
    return 0


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def cmd_train(args) -> int:
    from .runs import resume, train
    from .trainer import TrainOptions
    from .variant import parse_hparam_text

    hparams: dict[str, Any] = {key: parse_hparam_text(value) for key, value in args.overrides}
    if args.steps is not None:
        hparams["steps"] = args.steps
    if args.batch_size is not None:
        hparams["batch_size"] = args.batch_size
    if args.lr is not None:
        hparams["lr_g"] = hparams["lr_d"] = args.lr
    options = TrainOptions(device=args.device, seed=args.seed, sample_every=args.sample_every,
                           ckpt_every=args.ckpt_every, log_every=args.log_every, keep=args.keep,
                           on_nan=args.on_nan, eval_every=args.eval_every, eval_n=args.eval_n,
                           accumulate=args.accumulate, sync_bn=args.sync_bn,
                           precision=args.precision, loggers=args.loggers, progress=not args.quiet)
    dataset_options = {"data_dir": args.data_dir, "image_size": args.image_size, "channels": args.channels,
                       "standardize": args.standardize}
    if args.resume is not None:
        if args.out is not None:
            raise GanzooError("--resume continues in the run's own directory; drop --out")
        result = resume(args.resume, variant=args.variant, dataset=args.dataset, hparams=hparams,
                        options=options, dataset_options=dataset_options, force=args.force)
    elif args.variant is None:
        raise GanzooError("name a VARIANT to train (see `ganzoo list`), or pass --resume RUN_DIR")
    else:
        if args.force:
            raise GanzooError("--force only applies with --resume")
        result = train(args.variant, args.dataset, out=args.out, hparams=hparams, options=options,
                       dataset_options=dataset_options)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for everyone
        return 0
    final = ", ".join(f"{k} {v:.4g}" for k, v in result.last_metrics.items() if k.endswith("/loss"))
    print(f"done: {result.state.step} steps ({final})")
    print(f"  samples:    {result.run_dir / 'samples' / 'final.png'}")
    print(f"  metrics:    {result.run_dir / 'metrics.jsonl'}")
    print(f"  checkpoint: {result.run_dir / 'checkpoints'}")
    print(f"  sample more: ganzoo sample {result.run_dir}")
    return 0


def _run_dir_of(path: str) -> Path:
    source = Path(path)
    return source if source.is_dir() else source.parent.parent


def sample_file_name(seed: int, *, label: int | None = None, no_ema: bool = False,
                     interpolate: int | None = None, gif: bool = False, options: dict | None = None) -> str:
    """The default file of a ``ganzoo sample`` mode: each mode its own name, so none overwrites another."""
    from .sampling import option_file_parts

    stem = f"interpolate{interpolate}" if interpolate else "sample"
    parts = [stem, f"seed{seed}"]
    if label is not None:
        parts.append(f"label{label}")
    parts += option_file_parts(options)
    if no_ema:
        parts.append("no-ema")
    return "-".join(parts) + (".gif" if gif else ".png")


def cmd_sample(args) -> int:
    from .plotting import save_image_grid, save_scatter_plot
    from .registry import create_dataset
    from .sampling import check_interpolation_steps, interpolate, load_generator, sample, save_gif
    from .trainer import resolve_device

    steps = args.interpolate
    if args.gif and steps is None:
        steps = 16
    if steps is not None:
        check_interpolation_steps(steps)  # before the checkpoint is loaded
    if args.out is not None and args.out.suffix.lower() != (".gif" if args.gif else ".png"):
        raise GanzooError(f"--out must end in {'.gif' if args.gif else '.png'}"
                          f"{' with --gif' if args.gif else ' (or add --gif for an animation)'}, got {args.out}")
    options = {key: getattr(args, key) for key in SAMPLING_OPTIONS if getattr(args, key) is not None}
    if "style_mix" in options and steps is not None:
        raise GanzooError("--style-mix draws a grid of its own; it does not combine with --interpolate or --gif")
    loaded = load_generator(args.path, resolve_device(args.device), ema=not args.no_ema)
    # An EMA run sampled from G itself gets its own file, so the two never overwrite each other.
    name = sample_file_name(args.seed, label=args.label, no_ema=args.no_ema and loaded.has_ema,
                            interpolate=steps, gif=args.gif, options=options)
    out = args.out or _run_dir_of(args.path) / "samples" / name
    try:
        if steps is not None:
            walk = interpolate(loaded, steps, rows=args.rows, label=args.label, seed=args.seed, options=options)
            if args.gif:
                frames = walk.view(args.rows, steps, *walk.shape[1:]).transpose(0, 1)  # (steps, rows, ...)
                save_gif(list(frames), out, nrow=int(math.ceil(math.sqrt(args.rows))))
            else:
                save_image_grid(walk, out, nrow=steps)
            what = f"a {args.rows} x {steps} latent walk" + (" (GIF)" if args.gif else "")
        else:
            images = sample(loaded, n=args.n, label=args.label, seed=args.seed, options=options)
            if loaded.spec.is_image:
                nrow = loaded.spec.num_classes if (loaded.variant.conditional and args.label is None
                                                    and args.n % loaded.spec.num_classes == 0) else None
                save_image_grid(images, out, nrow=nrow)
            else:
                data = create_dataset(loaded.config["dataset"], seed=args.seed).prepare(images.device)
                save_scatter_plot(data.reference_sample(args.n).real, images, out,
                                  title=f"{loaded.variant.name} step {loaded.step}")
            what = f"{args.n} samples"
    except OSError as exc:
        raise GanzooError(f"cannot write {out}: {exc.strerror or exc}") from None
    source_net = " (EMA generator)" if loaded.ema else ""
    print(f"wrote {what} from step {loaded.step}{source_net} to {out}")
    return 0


def cmd_export(args) -> int:
    from .export import FORMATS, SUFFIX, export
    from .sampling import load_generator

    if args.fmt not in FORMATS:
        raise GanzooError(f"unknown export format {args.fmt!r}; use one of {', '.join(FORMATS)}")
    loaded = load_generator(args.path, "cpu", ema=not args.no_ema)
    out = args.out or _run_dir_of(args.path) / "export" / f"generator{SUFFIX[args.fmt]}"
    try:
        info = export(loaded, out, args.fmt)
    except OSError as exc:
        raise GanzooError(f"cannot write {out}: {exc.strerror or exc}") from None
    inputs = "z" + (", labels" if info["conditional"] else "")
    print(f"wrote the generator of step {info['step']}{' (EMA)' if info['ema'] else ''} as {args.fmt} to {out}: "
          f"({inputs}) -> samples {info['output_shape']}; noise {info['latent_shape']} "
          f"({info['latent_distribution']})")
    return 0


def cmd_plot(args) -> int:
    from .outputs import LOSS_PLOT, METRICS_FILE, plot_series, read_metrics, save_loss_plot

    run_dir = Path(args.path)
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        raise GanzooError(f"{run_dir} has no {METRICS_FILE}: pass a run directory written by `ganzoo train`")
    records = read_metrics(metrics)
    if not plot_series(records):
        raise GanzooError(f"{metrics} holds no logged values to plot yet")
    out = args.out or run_dir / "samples" / LOSS_PLOT
    if out.suffix.lower() != ".png":
        raise GanzooError(f"--out must name a .png file, got {out}")
    title = ""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        title = f"{config['variant']} on {config['dataset']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        save_loss_plot(records, out, title=title)
    except OSError as exc:
        raise GanzooError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote the curves of {len(records)} records to {out}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"ganzoo: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error: report its code
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "cpu_threads", False):
        prepare_openmp()  # before anything imports torch (see ganzoo.cpu_threads)
    try:
        if not getattr(args, "cpu_threads", False):
            return args.handler(args)
        with use_threads(args.threads):
            return args.handler(args)
    except GanzooError as exc:
        print(f"ganzoo: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("ganzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ganzoo list | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # the filesystem's problem, not ganzoo's: a full disk, a permission, a lost mount
        from .io import os_reason

        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ganzoo: error: {where}{os_reason(exc)}", file=sys.stderr)
        return 2


def run() -> None:
    """The console script and ``python -m ganzoo`` (torchrun too): :func:`main`, then exit.

    A process of a torchrun job leaves with ``os._exit`` once its output is
    flushed. With torch 2.13 and gloo, a rank aborted at interpreter exit
    ("terminate called without an active exception", signal 6) in about one
    run in ten, after a run that had finished and saved everything, so
    torchrun reported a failure; destroy_process_group() did the same. Every
    file ganzoo writes is closed (and checkpoints renamed into place) before
    :func:`main` returns.
    """
    code = main()
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
