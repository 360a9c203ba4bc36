"""The conformance kit: does a variant keep the contract the trainer relies on?

Runs a variant through ganzoo's own trainer on tiny in-memory data, on the CPU,
and reports every check with the reason it failed::

    from ganzoo.testing import check_variant

    report = check_variant("wgan")          # a registered name, or a Variant subclass
    print(report.format())
    assert report.ok

The same kit backs ``ganzoo check VARIANT`` (exit code 2 on failure) and the
``ganzoo_check`` pytest fixture that ganzoo registers with pytest (a
``pytest11`` entry point), so a plugin's test suite checks its variant in one
line: ``def test_conforms(ganzoo_check): ganzoo_check("my-gan")``.

What is checked, for a vector case (2-d points) and four image cases
(grayscale and RGB, 28x28 and 32x32); labeled data for conditional variants,
unlabeled data otherwise:

* **contract**: ``name``, ``summary``, ``paper``, positive ``steps`` and
  ``batch_size`` defaults, every abstract method implemented, unknown
  hyperparameters refused, a conditional variant refuses unlabeled data;
* **build**: ``build`` returns an ``nn.ModuleDict``, ``make_optimizers`` a dict
  of optimisers over those nets, ``phases`` Phases that update known optimisers;
* **train**: a few generator steps through :class:`ganzoo.trainer.Trainer`
  (the code ``ganzoo train`` runs): every logged value finite, a ``/loss``
  logged, and the parameters of every optimiser changed;
* **sampling**: ``latent(n)`` gives ``n`` rows, ``generate`` gives
  ``(n, *shape)`` finite floats, images in [-1, 1], the same noise gives the same
  samples in eval mode, and (conditional) different labels give different samples;
* **determinism**: a second run with the same seed gives identical metrics,
  parameters and samples;
* **checkpoint**: the final checkpoint loads with ``weights_only=True``, and a
  fresh variant built from the JSON config accepts its state and samples identically;
* **resume**: ``steps`` steps then ``ganzoo train --resume`` for one more equal
  ``steps + 1`` steps in one run (state a variant keeps outside its nets,
  optimisers and ``TrainState.extra`` shows up here);
* **toolkit**: every toolkit feature the variant lists, switched on, and
  ``--precision bf16``: train and an exact resume on 1x28x28 images.

Widths are shrunk for speed (``QUICK_HPARAMS``, applied only to the
hyperparameters a variant has) and the batch is 8, so a variant checks in
seconds.
"""
from __future__ import annotations

import inspect
import json
import math
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .data.base import DataSpec, InMemoryDataset
from .errors import GanzooError
from .variant import Phase, TrainState, Variant, data_kind

#: Hyperparameter overrides that keep the check fast; keys a variant lacks are skipped.
QUICK_HPARAMS: dict[str, Any] = {
    "batch_size": 8,
    "g_width": 8,
    "d_width": 8,
    "hidden": 16,
    "toy_hidden": 16,
    "nz": 16,
}

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
SAMPLES = 6  # rows drawn in the sampling checks


@dataclass(frozen=True)
class DataCase:
    """One kind of data the variant is run on."""

    label: str
    shape: tuple[int, ...]


#: The vector case, then grayscale and RGB images at two sizes.
DATA_CASES = (
    DataCase("vector 2-d", (2,)),
    DataCase("image 1x28x28", (1, 28, 28)),
    DataCase("image 3x28x28", (3, 28, 28)),
    DataCase("image 1x32x32", (1, 32, 32)),
    DataCase("image 3x32x32", (3, 32, 32)),
)


def tiny_dataset(shape: tuple[int, ...], classes: int | None = 3, count: int = 48,
                 seed: int = 0) -> InMemoryDataset:
    """A small in-memory dataset of ``shape``: random uint8 images, or 2-d points
    around ``classes`` centres; labels ``i % classes``, or unlabeled when ``classes`` is None."""
    is_image = len(shape) == 3

    class TinyData(InMemoryDataset):
        name = f"conformance-{'x'.join(map(str, shape))}"
        description = "tiny random data for the conformance kit"
        spec = DataSpec(shape=tuple(shape), num_classes=classes, size=count)

        def load(self):
            g = torch.Generator().manual_seed(1234)
            groups = classes or 1
            labels = torch.arange(count) % groups
            if is_image:
                data = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=g)
            else:
                angles = labels.float() * (2 * math.pi / groups)
                centres = torch.stack([angles.cos(), angles.sin()], dim=1)
                data = centres + 0.05 * torch.randn(count, *shape, generator=g)
            return data, (labels if classes else None)

    return TinyData(seed=seed)


def tiny_data_for(cls: type[Variant], shape: tuple[int, ...], classes: int | None, seed: int = 0):
    """:func:`tiny_dataset` for a variant: two of them as domains A and B for a translation model
    (``cls.domains == 2``; ganzoo.data.pair), else one."""
    if getattr(cls, "domains", 1) == 2 and len(shape) == 3:  # two-domain datasets hold images
        from .data.pair import TwoDomains

        return TwoDomains(tiny_dataset(shape, classes, seed=seed), tiny_dataset(shape, classes, seed=seed + 1),
                          seed=seed)
    return tiny_dataset(shape, classes, seed=seed)


# -- the report ---------------------------------------------------------------
@dataclass
class CheckResult:
    """One check: ``status`` is "pass", "fail" or "skip"; ``detail`` says what or why."""

    name: str
    status: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Report:
    """Everything :func:`check_variant` found; ``ok`` when nothing failed."""

    variant: str
    source: str = ""
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip")}

    def format(self) -> str:
        """The human-readable report: one line per check, then a summary line."""
        head = f"ganzoo check {self.variant}" + (f" ({self.source})" if self.source else "")
        width = max((len(r.name) for r in self.results), default=0)
        lines = [head]
        for r in self.results:
            lines.append(f"  {r.status.upper():<4}  {r.name:<{width}}  {r.detail}".rstrip())
        c = self.counts()
        summary = f"{c['pass']} passed, {c['fail']} failed"
        if c["skip"]:
            summary += f", {c['skip']} skipped"
        lines.append(f"{summary} in {self.seconds:.1f}s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "source": self.source, "ok": self.ok,
                "seconds": round(self.seconds, 3), **self.counts(),
                "results": [{"name": r.name, "status": r.status, "detail": r.detail}
                            for r in self.results]}


class CheckFailed(Exception):
    """Raised inside a check: its message is the reason shown in the report."""


def describe(exc: BaseException) -> str:
    """An exception as one line, with the innermost frame outside ganzoo's own
    code and torch (where a plugin author should look)."""
    if isinstance(exc, (CheckFailed, GanzooError)):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    package_root = Path(__file__).resolve().parent
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if package_root in path.parents or "torch" in path.parts:
            continue
        return f"{text} (at {path.name}:{frame.lineno} in {frame.name})"
    return text


class _Runner:
    """Runs named checks, recording pass/fail/skip; later checks can depend on earlier ones."""

    def __init__(self, report: Report):
        self.report = report

    def run(self, name: str, check: Callable[[], str | None], needs: bool = True,
            why_skipped: str = "") -> bool:
        if not needs:
            self.report.results.append(CheckResult(name, "skip", why_skipped))
            return False
        try:
            detail = check() or ""
        except Exception as exc:  # every problem becomes a line of the report
            self.report.results.append(CheckResult(name, "fail", describe(exc)))
            return False
        self.report.results.append(CheckResult(name, "pass", detail))
        return True


# -- helpers ------------------------------------------------------------------
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _resolve(variant: str | type[Variant]) -> tuple[type[Variant], str, str]:
    """(class, display name, where it comes from); unknown names raise GanzooError."""
    if isinstance(variant, str):
        from . import plugins
        from .registry import VARIANTS

        entry = VARIANTS.entry(variant)
        info = plugins.plugin_info(entry.plugin)
        if info.builtin:
            source = f"built-in plugin {entry.plugin}"
        elif info.distribution:
            source = f"plugin {entry.plugin!r} from {info.distribution} {info.version or ''}".rstrip()
        else:
            source = f"plugin {entry.plugin!r}"
        return entry.obj, variant, source
    if inspect.isclass(variant) and issubclass(variant, Variant):
        return variant, variant.name or variant.__qualname__, f"class {variant.__module__}.{variant.__qualname__}"
    raise GanzooError(f"expected a variant name or a ganzoo.Variant subclass, got {variant!r}")


def quick_hparams(cls: type[Variant], overrides: dict[str, Any] | None, steps: int) -> dict[str, Any]:
    """QUICK_HPARAMS that the variant has, ``steps``, then the caller's overrides."""
    known = cls.known_hparams()
    hparams = {k: v for k, v in QUICK_HPARAMS.items() if k in known}
    hparams["steps"] = steps
    hparams.update(overrides or {})
    return hparams


def _snapshot(nets: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in nets.state_dict().items()}


def _optimizer_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _param_names(nets: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in nets.named_parameters()}


def _states_differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    if a.keys() != b.keys():
        return sorted(a.keys() ^ b.keys())
    return [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]


def _labels_for(variant: Variant, spec: DataSpec, n: int) -> torch.Tensor | None:
    return torch.arange(n) % spec.num_classes if variant.conditional else None


def _draw(variant: Variant, nets: nn.ModuleDict, spec: DataSpec, seed: int,
          labels: torch.Tensor | None = None, n: int = SAMPLES) -> torch.Tensor:
    """Samples in eval mode from a fixed seed (the way ``ganzoo sample`` draws)."""
    was_training = nets.training
    nets.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        z = variant.latent(n, torch.device("cpu"))
        out = variant.generate(nets, z, _labels_for(variant, spec, n) if labels is None else labels)
    nets.train(was_training)
    return out


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- one data case --------------------------------------------------------------
@dataclass
class _Run:
    variant: Variant
    state: TrainState
    before: dict[str, torch.Tensor]
    metrics: list[dict[str, Any]]
    run_dir: Path


class _CaseChecks:
    """The build, train, sampling, determinism, checkpoint and resume checks for one data case."""

    def __init__(self, cls: type[Variant], case: DataCase, hparams: dict[str, Any],
                 seed: int, workdir: Path, precision: str = "fp32"):
        self.cls, self.case, self.hparams, self.seed = cls, case, hparams, seed
        self.precision = precision
        self.workdir = workdir
        self.classes = 3 if cls.conditional else None
        self.spec = tiny_data_for(cls, case.shape, self.classes).spec
        self.run: _Run | None = None

    def dataset(self):
        return tiny_data_for(self.cls, self.case.shape, self.classes, seed=self.seed)

    def trainer(self, variant: Variant, dataset, run_dir: Path, ckpt_every: int = 0):
        from .trainer import Trainer, TrainOptions

        options = TrainOptions(device="cpu", seed=self.seed, sample_every=0, ckpt_every=ckpt_every, keep=0,
                               log_every=1, grid_size=16, progress=False, precision=self.precision)
        config = {"variant": self.cls.name, "dataset": dataset.name, "hparams": variant.hparams,
                  "data": self.spec.to_dict(), "seed": self.seed}
        # Through JSON, as config.json is: tuples come back as lists.
        config = json.loads(json.dumps(config))
        return Trainer(variant, dataset, run_dir, options, config)

    def build(self) -> str:
        variant = self.cls(self.spec, **self.hparams)
        nets = variant.networks(self.spec)
        _require(isinstance(nets, nn.ModuleDict),
                 f"build() returned {type(nets).__name__}, expected torch.nn.ModuleDict")
        _require(len(list(nets.parameters())) > 0, "build() returned networks without parameters")
        optimizers = variant.optimizers_for(nets)
        _require(isinstance(optimizers, dict) and optimizers,
                 "make_optimizers() must return a non-empty dict of torch.optim.Optimizer")
        owned = {id(p) for p in nets.parameters()}
        for key, opt in optimizers.items():
            _require(isinstance(opt, torch.optim.Optimizer),
                     f"make_optimizers()[{key!r}] is {type(opt).__name__}, not a torch.optim.Optimizer")
            _require(all(id(p) in owned for p in _optimizer_params(opt)),
                     f"optimiser {key!r} holds parameters that are not in build()'s nets")
        phases = variant.phases(0)
        _require(isinstance(phases, list) and phases, "phases(0) must return a non-empty list of Phase")
        for phase in phases:
            _require(isinstance(phase, Phase), f"phases(0) holds {phase!r}, not a ganzoo.Phase")
            unknown = [k for k in phase.updates if k not in optimizers]
            _require(not unknown, f"phase {phase.name!r} updates {unknown}, which make_optimizers() "
                                  f"does not return (it returns {sorted(optimizers)})")
            _require(phase.repeats >= 1 and phase.every >= 1,
                     f"phase {phase.name!r} needs repeats >= 1 and every >= 1")
        # Before any training, so a wrong output shape is reported as such and
        # not as a shape error deep inside the discriminator.
        out = _draw(variant, nets, self.spec, self.seed)
        expected = (SAMPLES, *self.spec.shape)
        _require(tuple(out.shape) == expected,
                 f"generate() returned shape {tuple(out.shape)}, expected {expected}")
        described = ", ".join(p.name + (f" x{p.repeats}" if p.repeats > 1 else "") for p in phases)
        return f"nets {', '.join(nets)}; optimisers {', '.join(optimizers)}; phases {described}"

    def applicable(self) -> str | None:
        """None when the variant takes these options on this data, else why not (a skip)."""
        try:
            variant = self.cls(self.spec, **self.hparams)
            with torch.random.fork_rng(devices=[]):
                variant.networks(self.spec)
        except GanzooError as exc:
            return str(exc)
        return None

    def _train_once(self, run_dir: Path) -> _Run:
        variant = self.cls(self.spec, **self.hparams)
        trainer = self.trainer(variant, self.dataset(), run_dir)
        state = trainer.setup()
        before = _snapshot(state.nets)
        trainer.run(state)
        return _Run(variant, state, before, _read_metrics(run_dir), run_dir)

    def train(self) -> str:
        run = self.run = self._train_once(self.workdir / "run")
        steps = int(run.variant.hparams["steps"])
        _require(run.state.step == steps, f"trained {run.state.step} steps, expected {steps}")
        _require(run.metrics, "no metrics were logged")
        for record in run.metrics:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise CheckFailed(f"{key} is {value} at step {record['step']}")
        last = run.metrics[-1]
        losses = {k: v for k, v in last.items() if k.endswith("/loss")}
        _require(losses, f"no '<phase>/loss' value was logged (logged: {sorted(last)})")
        names = _param_names(run.state.nets)
        after = run.state.nets.state_dict()
        for key, opt in run.state.optimizers.items():
            params = [names[id(p)] for p in _optimizer_params(opt) if id(p) in names]
            changed = [n for n in params if not torch.equal(run.before[n], after[n])]
            _require(changed, f"no parameter of optimiser {key!r} changed in {steps} steps")
        shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
        return f"{steps} steps, {shown}; parameters of every optimiser changed"

    def sampling(self) -> str:
        variant, nets = self.run.variant, self.run.state.nets
        z = variant.latent(SAMPLES, torch.device("cpu"))
        _require(torch.is_tensor(z) and z.shape[0] == SAMPLES,
                 f"latent({SAMPLES}) returned shape {tuple(getattr(z, 'shape', ()))}, expected ({SAMPLES}, ...)")
        out = _draw(variant, nets, self.spec, self.seed)
        expected = (SAMPLES, *self.spec.shape)
        _require(tuple(out.shape) == expected,
                 f"generate() returned shape {tuple(out.shape)}, expected {expected}")
        _require(out.is_floating_point(), f"generate() returned {out.dtype}, expected a float tensor")
        _require(bool(torch.isfinite(out).all()), "generate() returned non-finite values")
        if self.spec.is_image:
            lo, hi = out.min().item(), out.max().item()
            _require(lo >= -1.0 and hi <= 1.0, f"images must be in [-1, 1], got [{lo:.3g}, {hi:.3g}]")
        again = _draw(variant, nets, self.spec, self.seed)
        _require(torch.equal(out, again), "the same noise gave different samples in eval mode")
        detail = f"shape {expected}" + (", in [-1, 1]" if self.spec.is_image else "")
        if variant.conditional:
            torch.manual_seed(self.seed)
            z1 = variant.latent(1, torch.device("cpu")).repeat(self.classes, *([1] * (z.dim() - 1)))
            nets.eval()
            with torch.no_grad():
                per_label = variant.generate(nets, z1, torch.arange(self.classes)).flatten(1)
            nets.train()
            _require(not torch.equal(per_label[0], per_label[1]),
                     "the same noise with different labels gave identical samples: labels are ignored")
            detail += "; labels change the samples"
        return detail

    def determinism(self) -> str:
        first = self.run
        second = self._train_once(self.workdir / "again")
        keys = [k for k in first.metrics[-1] if k not in ("time", "step_time")]
        strip = [{k: r.get(k) for k in keys} for r in first.metrics]
        strip2 = [{k: r.get(k) for k in keys} for r in second.metrics]
        _require(strip == strip2, "two runs with the same seed logged different metrics")
        differ = _states_differ(first.state.nets.state_dict(), second.state.nets.state_dict())
        _require(not differ, f"two runs with the same seed ended with different {', '.join(differ[:3])}")
        a = _draw(first.variant, first.state.nets, self.spec, self.seed)
        b = _draw(second.variant, second.state.nets, self.spec, self.seed)
        _require(torch.equal(a, b), "two runs with the same seed give different samples")
        return f"seed {self.seed}: identical metrics, parameters and samples"

    def checkpoint(self) -> str:
        from .checkpoint import load_checkpoint

        run = self.run
        payload = load_checkpoint(run.run_dir)  # weights_only=True: plain tensors and containers
        config = payload["config"]
        spec = DataSpec.from_dict(config["data"])
        restored = self.cls(spec, **self.cls.saved_hparams(config["hparams"]))
        _require(restored.hparams == run.variant.hparams,
                 "hyperparameters change when read back from config.json: "
                 f"{restored.hparams} != {run.variant.hparams}")
        nets = restored.networks(spec)
        try:
            nets.load_state_dict(payload["nets"])
        except RuntimeError as exc:
            raise CheckFailed(f"the saved nets do not load into a fresh build(): {str(exc).splitlines()[0]}")
        optimizers = restored.optimizers_for(nets)
        _require(set(optimizers) == set(payload["optimizers"]),
                 f"saved optimisers {sorted(payload['optimizers'])} != {sorted(optimizers)}")
        for key, opt in optimizers.items():
            opt.load_state_dict(payload["optimizers"][key])
        differ = _states_differ(run.state.nets.state_dict(), nets.state_dict())
        _require(not differ, f"reloaded state differs in {', '.join(differ[:3])}")
        a = _draw(run.variant, run.state.nets, self.spec, self.seed)
        b = _draw(restored, nets, spec, self.seed)
        _require(torch.equal(a, b), "the reloaded generator samples differently")
        return "loads with weights_only into a fresh build from config.json; samples identically"

    def resume(self) -> str:
        """A run of ``steps + 1`` steps resumed from its checkpoint after ``steps`` must end as the
        same run trained straight through (a run stopped mid-way, so schedules that depend on the
        run's length, such as a linear decay, continue as they were)."""
        from .checkpoint import checkpoint_name, load_checkpoint

        steps = int(self.run.variant.hparams["steps"])
        longer = {**self.hparams, "steps": steps + 1}
        straight = self.cls(self.spec, **longer)
        trainer = self.trainer(straight, self.dataset(), self.workdir / "straight", ckpt_every=1)
        expected = trainer.run().state
        payload = load_checkpoint(self.workdir / "straight" / "checkpoints" / checkpoint_name(steps))
        resumed_variant = self.cls(self.spec, **self.cls.saved_hparams(payload["config"]["hparams"]))
        trainer = self.trainer(resumed_variant, self.dataset(), self.workdir / "resumed")
        resumed = trainer.run(resume=payload).state
        differ = _states_differ(expected.nets.state_dict(), resumed.nets.state_dict())
        _require(not differ, f"{steps} steps + 1 resumed step differ from {steps + 1} steps in one run "
                             f"(in {', '.join(differ[:3])}): does the variant keep state outside "
                             "nets, optimisers and TrainState.extra?")
        return f"{steps} steps + 1 resumed == {steps + 1} steps in one run"


# -- the entry point ------------------------------------------------------------
def _contract(cls: type[Variant], hparams: dict[str, Any]) -> str:
    from .registry import list_datasets, split_dataset_name

    _require(isinstance(cls.name, str) and NAME_PATTERN.match(cls.name or ""),
             f"name {cls.name!r} must be lowercase letters, digits, '-', '_' or '.'")
    _require(bool(cls.summary), "set 'summary' (one line shown by `ganzoo list`)")
    _require(bool(cls.paper), "set 'paper' (the reference the defaults follow)")
    if inspect.isabstract(cls):
        raise CheckFailed(f"does not implement: {', '.join(sorted(cls.__abstractmethods__))}")
    for key in ("steps", "batch_size"):
        value = cls.defaults.get(key)
        _require(isinstance(value, int) and value > 0, f"defaults[{key!r}] must be a positive int, got {value!r}")
    try:
        json.dumps(cls.known_hparams())
    except TypeError as exc:
        raise CheckFailed(f"hyperparameters must be JSON values (they go into config.json): {exc}")
    _require(split_dataset_name(cls.default_dataset)[0] in list_datasets(),
             f"default_dataset {cls.default_dataset!r} is not a registered dataset")
    try:
        cls(None, _no_such_hparam_=1)
    except GanzooError:
        pass
    else:
        raise CheckFailed("an unknown hyperparameter was accepted; call Variant.__init__ from __init__")
    cls(None, **hparams)  # what `ganzoo list` and the CLI do before any data exists
    detail = "name, summary, paper, defaults, unknown hyperparameters refused"
    if cls.conditional:
        try:
            cls(DataSpec((2,), None, None), **hparams)
        except GanzooError:
            detail += ", unlabeled data refused"
        else:
            raise CheckFailed("a conditional variant accepted unlabeled data")
    return detail


#: The data the toolkit checks run on (every toolkit feature applies to images).
TOOLKIT_CASE = DataCase("image 1x28x28", (1, 28, 28))


def _check_toolkit(cls: type[Variant], runner: _Runner, hparams: dict[str, Any], seed: int,
                   root: Path, contract_ok: bool) -> None:
    """Each toolkit feature the variant lists, switched on, and then bf16: a short run and an exact resume."""
    from .toolkit import features

    settings = [(f"toolkit {f.name}", f.check_settings, "fp32") for f in features().values() if f.name in cls.features]
    settings.append(("precision bf16", {}, "bf16"))
    for label, extra, precision in settings:
        checks = _CaseChecks(cls, TOOLKIT_CASE, {**hparams, **extra}, seed,
                             root / re.sub(r"[^a-z0-9]+", "-", label), precision=precision)
        why = checks.applicable() if contract_ok else "needs the contract check to pass"
        shown = " ".join(f"{k}={v}" for k, v in extra.items()) or precision
        trained = runner.run(f"{label}: train", lambda c=checks, s=shown: f"{s}: {c.train()}", why is None,
                             f"does not apply: {why}")
        runner.run(f"{label}: resume", checks.resume, trained,
                   "does not apply" if why is not None else "needs a training run")


def check_variant(variant: str | type[Variant], *, hparams: dict[str, Any] | None = None,
                  steps: int = 2, seed: int = 0, cases: tuple[DataCase, ...] = DATA_CASES,
                  workdir: str | Path | None = None, toolkit: bool = True) -> Report:
    """Run the conformance checks on ``variant`` (a registered name or a Variant subclass).

    hparams: overrides applied after :data:`QUICK_HPARAMS` (e.g. ``{"arch": "mlp"}``).
    steps: generator steps per training run. seed: the seed of every run.
    cases: the data to run on (default :data:`DATA_CASES`).
    workdir: where run directories go (default: a temporary folder, removed after).
    toolkit: also run each toolkit feature the variant lists (``features``),
    switched on with its ``check_settings``, and ``--precision bf16``, on
    1x28x28 images: a short run and an exact resume each. A feature the
    variant cannot take on that data (e.g. minibatch_std with an MLP critic)
    is a skip that says why.
    An unknown or unavailable name, or an override the variant does not have,
    raises :class:`ganzoo.GanzooError` (naming the plugin when the plugin is
    broken); every other problem is a failed check.
    """
    start = time.perf_counter()
    cls, display, source = _resolve(variant)
    report = Report(display, source)
    try:
        known = cls.known_hparams()  # an unknown name in `features` fails here
    except GanzooError as exc:
        report.results.append(CheckResult("contract", "fail", str(exc)))
        report.seconds = time.perf_counter() - start
        return report
    unknown = sorted(set(hparams or {}) - set(known))
    if unknown:
        raise GanzooError(cls._unknown_hparam(unknown[0], known))
    runner = _Runner(report)
    overrides = quick_hparams(cls, hparams, steps)
    contract_ok = runner.run("contract", lambda: _contract(cls, overrides))
    threads = torch.get_num_threads()
    # The nets are tiny: one thread is faster, and far steadier on a busy machine,
    # than several that wait on each other.
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="ganzoo-check-") as tmp, \
                torch.random.fork_rng(devices=[]):  # leave the caller's RNG as it was
            root = Path(workdir) if workdir is not None else Path(tmp)
            for case in cases:
                checks = _CaseChecks(cls, case, overrides, seed,
                                     root / re.sub(r"[^a-z0-9]+", "-", case.label))
                label = case.label
                if data_kind(checks.spec) not in cls.data_kinds:
                    for name in ("build", "train", "sampling", "determinism", "checkpoint", "resume"):
                        runner.run(f"{label}: {name}", lambda: None, False,
                                   f"does not apply: the variant trains on {', '.join(cls.data_kinds)} data")
                    continue
                built = runner.run(f"{label}: build", checks.build, contract_ok,
                                   "needs the contract check to pass")
                trained = runner.run(f"{label}: train", checks.train, built, "needs a build")
                for name, check in (("sampling", checks.sampling), ("determinism", checks.determinism),
                                    ("checkpoint", checks.checkpoint), ("resume", checks.resume)):
                    runner.run(f"{label}: {name}", check, trained, "needs a training run")
            if toolkit:
                _check_toolkit(cls, runner, overrides, seed, root / "toolkit", contract_ok)
    finally:
        torch.set_num_threads(threads)
    report.seconds = time.perf_counter() - start
    return report


def assert_conforms(variant: str | type[Variant], **kwargs: Any) -> Report:
    """:func:`check_variant`, raising AssertionError with the report when a check fails."""
    report = check_variant(variant, **kwargs)
    if not report.ok:
        raise AssertionError(report.format())
    return report
