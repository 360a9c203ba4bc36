"""The variant contract: everything the shared trainer needs to know about a GAN.

A variant is a class registered through the ``register_variants`` hook. It
declares

* ``name``, ``conditional`` (needs labels), ``paper`` and ``summary``;
* ``defaults``: its hyperparameters as its paper gives them, and
  ``vector_defaults``: the overrides used on 2-D/vector data (toy nets, toy
  batch size). Any key can be overridden by the user (``--set KEY=VALUE``);
* :meth:`Variant.build`: its networks for a :class:`~ganzoo.data.DataSpec`, as an
  ``nn.ModuleDict`` (names are free: ``G``/``D``, or ``G_ab``, ``G_ba``, ...);
* :meth:`Variant.make_optimizers`: a dict of optimisers, keyed by name;
* :meth:`Variant.phases`: the training phases of one *generator step*. Each
  :class:`Phase` names the optimisers it steps, how often it repeats (the
  critic phase of WGAN-GP repeats ``n_critic`` times) and a loss function
  ``loss(nets, batch) -> (loss, stats)``;
* :meth:`Variant.latent` and :meth:`Variant.generate`: how to sample.

The trainer only calls these. For one phase repeat it draws a batch, makes the
phase's parameters the only trainable ones, zeroes their gradients, calls the
loss, backpropagates, steps the phase's optimisers, then calls ``phase.after``.
After all phases it calls :meth:`Variant.end_step`. It never looks at a
variant's name.

How other designs fit without touching the trainer:

* **Several networks** (CycleGAN: two generators, two critics): ``build``
  returns ``G_ab, G_ba, D_a, D_b``; ``make_optimizers`` returns ``{"G": Adam
  over both generators, "D_a": ..., "D_b": ...}``; ``phases`` returns a
  generator phase updating ``("G",)`` whose loss adds the adversarial, cycle and
  identity terms, then one phase per critic (``cyclegan``). ``domains = 2`` asks for
  a two-domain dataset, whose batches carry domain B in ``batch.extra``.
* **A schedule that changes the networks** (progressive growing, ``pggan``):
  ``build`` makes the blocks of every stage up front, the schedule's position
  lives in buffers of the nets (checkpointed, copied into EMA copies), and
  ``end_step`` (which receives the :class:`TrainState`) sets it for the next
  step and may reset ``state.optimizers``' moments at a stage change; see
  docs/plugins.md, "Networks that grow during a run".
* **Training features** (EMA of G, LR schedules, spectral norm, R1,
  packing, DiffAugment, minibatch-stddev, label smoothing): the toolkit
  (:mod:`ganzoo.toolkit`). A variant lists the features it takes in
  ``features``; their options become hyperparameters, and they act through
  :meth:`Variant.networks` (build), the trainer's step events and
  :meth:`Variant.sampling_nets`. Features that act on "the generator" or "the
  critic" use ``generator_nets`` / ``critic_nets``, so a variant with other
  net names opts in by naming them. Do not add an EMA copy by hand: the
  training fakes come from ``generate`` too, so a ``generate`` that reads
  ``G_ema`` would stop G from learning; ``ema=DECAY`` samples from ``G_ema``
  only when sampling.
* **Extra regularisers** (R1, path length): part of a phase's loss
  (``TwoPlayerVariant`` adds R1 with ``r1_gamma``), or a phase of their own
  with ``every=16`` for lazy regularisation, stepping the same optimiser
  (``stylegan2``: R1 and path length). Each
  phase's gradients are averaged over torchrun ranks by the trainer after
  its backward, so any loss, a double backward included, is exact under
  torchrun; losses always receive the plain nets.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from .data.base import Batch, DataSpec
from .errors import GanzooError

#: No hyperparameter is larger than this in size (a width, a batch, a step count):
#: beyond it tensors' sizes overflow before any memory check could help.
MAX_HPARAM = 1e9

LossFn = Callable[[nn.ModuleDict, Batch], "tuple[torch.Tensor, dict[str, Any]]"]


@dataclass(frozen=True)
class Phase:
    """One kind of optimisation step within a generator step.

    name: prefix of the phase's logged values (``"D"`` -> ``D/loss``).
    updates: keys of the optimisers this phase steps; only their parameters
        are trainable while the phase runs.
    loss: ``loss(nets, batch) -> (scalar loss, stats)``; ``stats`` maps names
        to floats or 0-d tensors, logged as ``{name}/{key}``.
    repeats: how many times it runs per generator step (e.g. n_critic).
    every: run only on generator steps divisible by this (lazy regularisers);
        it counts generator steps (``TrainState.step``), not critic steps.
    after: called with the nets after each optimiser step (weight clipping,
        EMA updates), or None.
    uses_real: whether ``loss`` reads ``batch.real`` (or ``batch.extra``). False
        (a generator phase that only draws noise): the trainer draws no data
        batch; the loss gets a batch of the same length on the same device
        whose ``real`` has no columns ``(B, 0)`` and whose ``labels`` (for a
        conditional variant) are drawn as the data's would be.
    """

    name: str
    updates: tuple[str, ...]
    loss: LossFn
    repeats: int = 1
    every: int = 1
    after: Callable[[nn.ModuleDict], None] | None = None
    uses_real: bool = True


@dataclass
class TrainState:
    """What the trainer holds for a run; passed to :meth:`Variant.end_step`."""

    nets: nn.ModuleDict
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0  # completed generator steps
    extra: dict[str, Any] = field(default_factory=dict)  # variant-owned, checkpointed


#: The ``--set`` key that picks one of a variant's :attr:`Variant.presets`.
PRESET_KEY = "preset"


class Variant(abc.ABC):
    """Base class of every GAN variant. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    conditional: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    default_dataset: ClassVar[str] = "digits"
    defaults: ClassVar[dict[str, Any]] = {}
    vector_defaults: ClassVar[dict[str, Any]] = {}
    #: Hyperparameters that must be > 0.
    positive: ClassVar[frozenset[str]] = frozenset(
        {"steps", "batch_size", "lr_g", "lr_d", "n_critic", "nz", "g_width", "d_width", "hidden",
         "toy_nz", "toy_hidden"}
    )
    #: Toolkit features this variant takes (:mod:`ganzoo.toolkit`); their options
    #: become hyperparameters. These need only the roles below.
    features: ClassVar[tuple[str, ...]] = ("ema", "lr_schedule", "d_spectral_norm", "diffaug")
    #: The nets that play the generator (EMA copies) and the critic (spectral
    #: norm, augmentation, packing), by their keys in ``build``'s ModuleDict.
    generator_nets: ClassVar[tuple[str, ...]] = ("G",)
    critic_nets: ClassVar[tuple[str, ...]] = ("D",)
    #: Inherited hyperparameters this variant does not use (e.g. ``g_width``
    #: when it builds nets of its own): refused by ``--set`` and not listed.
    unused_hparams: ClassVar[frozenset[str]] = frozenset()
    #: Named sets of hyperparameters a user picks with ``--set preset=NAME``:
    #: applied over the defaults for the data kind and under the user's other
    #: overrides. Built-in variants keep ``"paper"``, the paper's settings as
    #: written, where their default recipe differs from it.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: For runs made by an older version of the variant: hyperparameters added with a default that
    #: differs from the behaviour before them, or whose default changed, mapped to the value a run
    #: trained with when its saved config lacks the key. Resuming, ``ganzoo sample``/``eval`` and the
    #: results ledger read a config back through :meth:`saved_hparams`, so an old run keeps meaning
    #: what it meant. A key absent from a config and from this map gets today's default (the rule for
    #: an option added with a default that keeps the variant as it was).
    legacy_hparams: ClassVar[dict[str, Any]] = {}
    #: Dataset options this variant asks for, used where the dataset takes them and the
    #: user has not set them (e.g. ``{"standardize": True}``: vector data served at unit
    #: scale). A run's config.json records the options it trained with.
    dataset_defaults: ClassVar[dict[str, Any]] = {}
    #: The kinds of data it trains on: "vector" (``(D,)``) and/or "image" (``(C, H, W)``). Data of
    #: another kind is a one-line error when the variant is created, and the conformance kit
    #: skips those cases (e.g. ``("image",)`` for progressive growing).
    data_kinds: ClassVar[tuple[str, ...]] = ("vector", "image")
    #: How many data domains a batch must bring: 1, or 2 for translation models (cyclegan), which
    #: train on two-domain datasets (``pair:A,B``, ``folder-pair:PATH``; ``DataSpec.domains``) and
    #: find domain B in ``batch.extra["real_b"]``. Data with another count is a one-line error.
    domains: ClassVar[int] = 1
    #: Keyword options :meth:`generate` takes when sampling, by name, with a one-line description:
    #: ``ganzoo sample --stage N`` passes ``stage=N`` (stackgan's stages). Training and the grids
    #: never pass one; asking a variant for an option it does not list is a one-line error.
    sampling_options: ClassVar[dict[str, str]] = {}
    #: For translation models: the directions :meth:`translate` takes (e.g. ``("a2b", "b2a")``);
    #: empty for a model that generates from noise. ``ganzoo translate`` refuses a run whose
    #: variant has none.
    directions: ClassVar[tuple[str, ...]] = ()
    #: What :meth:`latent` draws: "normal" (the default; ``ganzoo sample --interpolate`` walks
    #: between noise vectors on a great circle) or anything else (a straight line), e.g. "uniform".
    latent_distribution: ClassVar[str] = "normal"

    def __init__(self, spec: DataSpec | None = None, **overrides: Any):
        if self.conditional and spec is not None and not spec.labeled:
            raise GanzooError(
                f"variant {self.name!r} is conditional and needs labeled data, but the dataset "
                "has no labels; choose a labeled dataset (e.g. --dataset digits or 8gaussians)"
            )
        if spec is not None and spec.domains != self.domains:
            raise GanzooError(
                f"variant {self.name!r} translates between two domains; give it a two-domain dataset: "
                "--dataset pair:A,B (e.g. pair:digits,mnist) or folder-pair:PATH" if self.domains == 2 else
                f"variant {self.name!r} trains on one domain, but the dataset has {spec.domains} (two-domain "
                "data is for translation models such as cyclegan)")
        if spec is not None and data_kind(spec) not in self.data_kinds:
            raise GanzooError(
                f"variant {self.name!r} trains on {' or '.join(k + ' data' for k in self.data_kinds)}, "
                f"but the dataset holds {data_kind(spec)}s of shape {tuple(spec.shape)}; choose another dataset"
            )
        self.spec = spec
        self.hparams = self.resolve_hparams(spec, overrides)
        self.toolkit.validate()

    @classmethod
    def default_hparams(cls, image: bool = True) -> dict[str, Any]:
        """The resolved defaults for image (or vector) data: toolkit options, then the variant's."""
        from .toolkit import feature_hparams

        merged = {**feature_hparams(cls.features), **cls.defaults, **({} if image else cls.vector_defaults)}
        return {k: v for k, v in merged.items() if k not in cls.unused_hparams}

    @classmethod
    def saved_hparams(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved config's ``hparams``, with the keys it predates filled from :attr:`legacy_hparams`."""
        return {**cls.legacy_hparams, **saved}

    @classmethod
    def known_hparams(cls) -> dict[str, Any]:
        return {**cls.default_hparams(image=True), **cls.default_hparams(image=False)}

    @classmethod
    def resolve_hparams(cls, spec: DataSpec | None, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults for the data kind, then a ``preset`` named in the overrides, then the other overrides, type-checked."""
        resolved = cls.default_hparams(image=spec is None or spec.is_image)
        known = cls.known_hparams()
        overrides = dict(overrides)
        preset = overrides.pop(PRESET_KEY, None)
        if preset is not None:
            if preset not in cls.presets:
                offered = f"its presets: {', '.join(sorted(cls.presets))}" if cls.presets else "it has none"
                raise GanzooError(f"variant {cls.name!r} has no preset {preset!r}; {offered}")
            overrides = {**cls.presets[preset], **overrides}
        for key, value in overrides.items():
            if key not in known:
                raise GanzooError(cls._unknown_hparam(key, known))
            resolved[key] = coerce_hparam(key, value, known[key])
            if key in cls.positive and not resolved[key] > 0:
                raise GanzooError(f"{key} must be positive, got {value!r}")
            number = resolved[key]
            if isinstance(number, (int, float)) and not isinstance(number, bool) and not abs(number) <= MAX_HPARAM:
                raise GanzooError(f"{key}={value!r} is out of range (at most {MAX_HPARAM:.0e} in size)")
        return resolved

    @classmethod
    def _unknown_hparam(cls, key: str, known: dict[str, Any]) -> str:
        from .toolkit import owner_of

        if key in cls.unused_hparams:
            return f"variant {cls.name!r} does not use the hyperparameter {key!r} (its own networks ignore it)"
        feature = owner_of(key)
        if feature is not None:
            return (f"{key} does not apply to variant {cls.name!r}: the {feature.name} option is for "
                    f"{feature.applies_to}; drop --set {key}")
        return f"variant {cls.name!r} has no hyperparameter {key!r}; known: {', '.join(sorted(known))}"

    # -- the toolkit, around build and sampling ---------------------------------
    @property
    def toolkit(self):
        """The enabled toolkit features (:class:`ganzoo.toolkit.Toolkit`), made per call: it is stateless."""
        from .toolkit import Toolkit

        return Toolkit(self)

    def networks(self, spec: DataSpec) -> nn.ModuleDict:
        """:meth:`build`, then the toolkit's changes (``G_ema``, spectral norm, ...).

        Everything that needs a variant's nets (the trainer, ``ganzoo sample``,
        ``ganzoo eval``, the conformance kit) calls this, not ``build``.
        """
        return self.toolkit.on_build(self.build(spec))

    def optimizers_for(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        """:meth:`make_optimizers`, then the toolkit's changes (base learning rates)."""
        return self.toolkit.on_optimizers(self.make_optimizers(nets))

    def sampling_nets(self, nets: nn.ModuleDict, ema: bool = True) -> nn.ModuleDict:
        """The nets :meth:`generate` samples from: with ``ema``, EMA copies stand in for G."""
        return self.toolkit.sampling_nets(nets) if ema else nets

    # -- what the trainer calls ---------------------------------------------
    @abc.abstractmethod
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        """Fresh networks for data of this spec."""

    @abc.abstractmethod
    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        """Optimisers over ``nets``, keyed by the names phases use in ``updates``."""

    @abc.abstractmethod
    def phases(self, step: int) -> list[Phase]:
        """The phases of generator step ``step`` (0-based), in order."""

    @abc.abstractmethod
    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        """Noise for ``n`` samples, drawn from torch's default RNG on ``device``."""

    @abc.abstractmethod
    def generate(
        self, nets: nn.ModuleDict, z: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Samples (n, *spec.shape) from noise ``z``; images in [-1, 1]."""

    def end_step(self, state: TrainState) -> None:
        """Called after every generator step (schedules, EMA); default: nothing."""

    def sample_grid(self, nets: nn.ModuleDict, dataset, z: torch.Tensor, labels: torch.Tensor | None,
                    nrow: int) -> tuple[torch.Tensor, int]:
        """What a run's sample grids show: ``(images (N, *spec.shape), images per row)``.

        Called under ``torch.no_grad()`` with the sampling nets in eval mode, the grid's fixed
        noise ``z`` and ``labels`` and the dataset (``dataset.reference_sample(n)`` gives fixed
        real examples). Default: ``generate(nets, z, labels)``. A translation model shows
        inputs beside their translations instead (cyclegan)."""
        return self.generate(nets, z, labels), nrow

    def translate(self, nets: nn.ModuleDict, images: torch.Tensor, direction: str) -> torch.Tensor:
        """Images (N, *spec.shape) in [-1, 1] of one domain -> the other's, for ``direction`` in
        :attr:`directions` (translation models override this)."""
        raise GanzooError(f"variant {self.name!r} is not a translation model")

    @property
    def batch_size(self) -> int:
        return int(self.hparams["batch_size"])

    @property
    def steps(self) -> int:
        return int(self.hparams["steps"])


def data_kind(spec: DataSpec) -> str:
    """"image" for (C, H, W) data, "vector" for (D,): what :attr:`Variant.data_kinds` lists."""
    return "image" if spec.is_image else "vector"


def parse_hparam_text(text: str) -> Any:
    """Parse a ``--set`` value: JSON (numbers, true/false, lists), else a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def coerce_hparam(key: str, value: Any, default: Any) -> Any:
    """Give ``value`` the type of ``default`` (e.g. "0.5,0.9" -> (0.5, 0.9))."""
    given = value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                value = parse_hparam_text(value)
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value if not isinstance(value, str) else float(value))
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(default, (tuple, list)):
            if isinstance(value, str):
                value = [float(v) for v in value.strip("()[]").split(",")]
            value = tuple(float(v) for v in value)
            if len(value) != len(default):
                raise ValueError
            return value
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise GanzooError(
        f"bad value {given!r} for hyperparameter {key!r}: expected something like {default!r}"
    )
