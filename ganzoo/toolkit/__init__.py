"""The training toolkit: features any variant gets with ``--set`` (EMA, LR schedules, ...).

A :class:`Feature` is a set of hyperparameters plus the code that acts on them
at a few named events. A variant opts in by listing feature names in its
``features`` class attribute (``TwoPlayerVariant`` lists them all); the
options then appear among its hyperparameters (``ganzoo list --json``, ``--set``,
``config.json``, checkpoints). The trainer never looks at an option: it calls
the events of the variant's :class:`Toolkit`, which runs the features that are
switched on. Features keep no state of their own: what they change lives in
the nets (``G_ema``, spectral-norm vectors), the optimisers or ``TrainState``,
all checkpointed, so a resumed run stays bit-identical.

Events, in the order a run meets them (see :class:`Feature`)::

    nets = variant.build(spec);  feature.on_build(variant, nets)      # every build: train, sample, eval
    optimizers = variant.make_optimizers(nets);  feature.on_optimizers(variant, optimizers)
    for each generator step:
        feature.before_step(variant, state) -> stats                   # e.g. set this step's LR
        ... the variant's phases (losses read their options from variant.hparams) ...
        state.step += 1;  variant.end_step(state)
        feature.after_step(variant, state)                             # e.g. EMA update
    sampling: variant.sampling_nets(nets) -> feature.sampling_nets(variant, nets)   # e.g. G -> G_ema

Roles: features that act on "the generator" or "the critic" use the variant's
``generator_nets`` and ``critic_nets`` (default ``("G",)`` and ``("D",)``), so a
variant with other net names (``G_ab``, ``D_a``, ...) opts in by naming them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import GanzooError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from ..variant import TrainState, Variant


class Feature:
    """One toolkit feature. Subclasses set the class attributes and override events.

    name: what a variant lists in ``features``.
    hparams: the options and their "off" values (the defaults).
    summary, paper: shown in the docs and errors.
    applies_to: a phrase naming the variants it is for, used when a variant
        that does not list the feature is given one of its options.
    check_settings: options that switch it on in the conformance kit.
    """

    name: ClassVar[str] = ""
    hparams: ClassVar[dict[str, Any]] = {}
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    applies_to: ClassVar[str] = "variants that list it in `features`"
    check_settings: ClassVar[dict[str, Any]] = {}

    def enabled(self, hp: dict[str, Any]) -> bool:
        """Whether ``hp`` switches the feature on (default: an option differs from its off value)."""
        return any(hp.get(k, off) != off for k, off in self.hparams.items())

    def validate(self, variant: "Variant") -> None:
        """Raise GanzooError when the options are invalid for this variant and data.

        Called when the variant is created (``variant.spec`` may be None there,
        e.g. for ``ganzoo list``), only when the feature is enabled.
        """

    def batch_multiple(self, variant: "Variant") -> int:
        """Every micro-batch the critic sees must be a multiple of this (packing, minibatch-std)."""
        return 1

    # -- events ---------------------------------------------------------------
    def on_build(self, variant: "Variant", nets: "nn.ModuleDict") -> None:
        """Change freshly built nets in place (add a net, a parametrisation, a forward hook)."""

    def on_optimizers(self, variant: "Variant", optimizers: dict[str, "torch.optim.Optimizer"]) -> None:
        """Change freshly made optimisers in place (record base learning rates)."""

    def before_step(self, variant: "Variant", state: "TrainState") -> dict[str, float] | None:
        """Before the phases of generator step ``state.step``; may return values to log."""
        return None

    def after_step(self, variant: "Variant", state: "TrainState") -> None:
        """After the phases and ``variant.end_step``; ``state.step`` counts the finished step."""

    def sampling_nets(self, variant: "Variant", nets: "nn.ModuleDict") -> "nn.ModuleDict":
        """The nets ``generate`` should see when sampling (grids, ``ganzoo sample``, eval)."""
        return nets


def _features() -> dict[str, Feature]:
    from .diffaugment import DiffAugmentFeature
    from .ema import EMAFeature
    from .label_smoothing import LabelSmoothingFeature
    from .lr_schedule import LRScheduleFeature
    from .minibatch_std import MinibatchStdFeature
    from .pack import PackFeature
    from .r1 import R1Feature
    from .spectral_norm import SpectralNormFeature

    # This order is the order of their events: augmentation's pre-hook runs before packing's.
    found = [EMAFeature(), LRScheduleFeature(), LabelSmoothingFeature(), SpectralNormFeature(),
             R1Feature(), DiffAugmentFeature(), PackFeature(), MinibatchStdFeature()]
    return {f.name: f for f in found}


_FEATURES: dict[str, Feature] = {}


def features() -> dict[str, Feature]:
    """Every toolkit feature by name (built on first use)."""
    if not _FEATURES:
        _FEATURES.update(_features())
    return _FEATURES


def get_feature(name: str) -> Feature:
    try:
        return features()[name]
    except KeyError:
        raise GanzooError(f"unknown toolkit feature {name!r}; known: {', '.join(features())}") from None


def feature_hparams(names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The options (with their off values) of the named features."""
    out: dict[str, Any] = {}
    for name in names:
        out.update(get_feature(name).hparams)
    return out


def owner_of(key: str) -> Feature | None:
    """The feature whose option ``key`` is, if any."""
    for feature in features().values():
        if key in feature.hparams:
            return feature
    return None


class Toolkit:
    """The enabled features of one variant instance, called at the trainer's events."""

    def __init__(self, variant: "Variant"):
        self.variant = variant
        listed = set(variant.features)
        for name in listed:
            get_feature(name)  # an unknown name is an error, not a silent no-op
        # In the toolkit's own order (e.g. augmentation before packing), not the variant's.
        self.active = [f for f in features().values() if f.name in listed and f.enabled(variant.hparams)]

    def validate(self) -> None:
        hp = self.variant.hparams
        # The variant's own defaults (e.g. pggan's ema_rampup) are not the user's doing: `--set ema=0`
        # alone must turn EMA off, so only a value differing from both "off" and the default is idle.
        own = type(self.variant).resolve_hparams(self.variant.spec, {})
        for feature in features().values():
            if feature.name not in self.variant.features or feature in self.active:
                continue
            # A secondary option of a feature that is off would silently do nothing.
            idle = [k for k, off in feature.hparams.items() if hp.get(k, off) not in (off, own.get(k, off))]
            if idle:
                main = next(iter(feature.hparams))
                raise GanzooError(f"{idle[0]}={hp[idle[0]]} has no effect while {feature.name} is off; "
                                  f"also set {main} (see the README's training toolkit table) or drop {idle[0]}")
        for feature in self.active:
            feature.validate(self.variant)

    def batch_multiple(self) -> int:
        import math

        multiple = 1
        for feature in self.active:
            multiple = math.lcm(multiple, feature.batch_multiple(self.variant))
        return multiple

    def on_build(self, nets):
        if self.active:
            for role in ("generator", "critic"):
                missing = [n for n in role_nets(self.variant, role) if n not in nets]
                if missing:
                    raise GanzooError(
                        f"variant {self.variant.name!r} names {', '.join(map(repr, missing))} in {role}_nets, "
                        f"but build() returned the nets {', '.join(nets)}; set {role}_nets to the names of its "
                        f"{role}s")
        for feature in self.active:
            feature.on_build(self.variant, nets)
        return nets

    def on_optimizers(self, optimizers):
        for feature in self.active:
            feature.on_optimizers(self.variant, optimizers)
        return optimizers

    def before_step(self, state) -> dict[str, float]:
        stats: dict[str, float] = {}
        for feature in self.active:
            stats.update(feature.before_step(self.variant, state) or {})
        return stats

    def after_step(self, state) -> None:
        for feature in self.active:
            feature.after_step(self.variant, state)

    def sampling_nets(self, nets):
        for feature in self.active:
            nets = feature.sampling_nets(self.variant, nets)
        return nets


def require(condition: bool, message: str) -> None:
    """A one-line user error unless ``condition``."""
    if not condition:
        raise GanzooError(message)


def role_nets(variant: "Variant", role: str) -> tuple[str, ...]:
    """The variant's net names for ``role`` ("generator" or "critic")."""
    return tuple(getattr(variant, f"{role}_nets"))


__all__ = ["Feature", "Toolkit", "features", "get_feature", "feature_hparams", "owner_of", "require"]
