"""``ganzoo check VARIANT``: run the conformance kit (:mod:`ganzoo.testing`) on a variant.

Prints one line per check (PASS, FAIL with the reason, or SKIP) and exits with
code 2 when any check failed, so it can gate a plugin's CI.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .errors import GanzooError, UnknownNameError


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. arch=mlp), got {text!r}")
    return key.strip(), value.strip()


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer >= 0 of at most {2**63 - 1:,}, got {text!r}")
    return int(text)


def cmd_check(args) -> int:
    from .registry import plugin_failures
    from .testing import check_variant
    from .variant import parse_hparam_text

    hparams: dict[str, Any] = {key: parse_hparam_text(value) for key, value in args.overrides}
    try:
        report = check_variant(args.variant, hparams=hparams, steps=args.steps, seed=args.seed,
                               toolkit=not args.no_toolkit)
    except UnknownNameError as exc:
        # A plugin that failed before registering anything may be the one that
        # provides this name: say so rather than only "unknown".
        broken = [f for f in plugin_failures() if str(f) not in str(exc)]
        if broken:
            listed = "; ".join(str(f) for f in broken)
            raise GanzooError(f"{exc} Plugins that failed to load and may provide it: {listed}") from None
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    if not report.ok:
        failed = len(report.failures)
        raise GanzooError(f"variant {report.variant!r} failed {failed} of {len(report.results)} checks "
                          "(the FAIL lines above give the reasons)")
    return 0


def add_command(subparsers, parser_class=None) -> None:
    p = subparsers.add_parser(
        "check", help="check that a variant keeps the plugin contract",
        description="Run VARIANT through ganzoo's trainer on tiny vector and image data (grayscale "
                    "and RGB, 28x28 and 32x32; labeled when conditional) on the CPU: build, a few "
                    "training steps, sampling, determinism, a checkpoint round trip and an exact resume; "
                    "then each toolkit feature the variant takes, and bf16, with an exact resume. "
                    "Exit code 2 when a check fails.")
    p.add_argument("variant", metavar="VARIANT", help="a name from `ganzoo list`")
    p.add_argument("--steps", type=_positive_int, default=2, help="generator steps per run (default 2)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of every run (default 0)")
    p.add_argument("--set", dest="overrides", type=_key_value, nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="override a hyperparameter (after the kit's small widths)")
    p.add_argument("--no-toolkit", action="store_true",
                   help="skip the toolkit checks (each training feature the variant takes, and bf16)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(handler=cmd_check)
