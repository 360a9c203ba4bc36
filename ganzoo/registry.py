"""The variant and dataset registries (timm-style query API).

Both are filled by plugin hooks on first use::

    ganzoo.list_variants("wgan*")         # ['wgan-gp']
    ganzoo.get_variant("dcgan")           # the class
    ganzoo.create_variant("dcgan", spec, lr_d=1e-4)

A plugin whose hook raises, or registers a taken name or an invalid object,
has none of its entries kept; the failure is recorded (see
:func:`plugin_failures`) and every other plugin keeps working.
"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import plugins
from .errors import DuplicateNameError, GanzooError, PluginError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    plugin: str


class Registry(Generic[T]):
    """Names -> classes registered through one hook, rebuilt when plugins change."""

    def __init__(self, kind: str, hook_name: str, base_class: type):
        self.kind = kind
        self.hook_name = hook_name
        self.base_class = base_class
        self._entries: dict[str, Entry[T]] = {}
        self._failures: list[plugins.PluginFailure] = []
        self._key: tuple[int, ...] | None = None

    def _validate(self, obj: Any) -> str:
        if not (inspect.isclass(obj) and issubclass(obj, self.base_class)):
            raise PluginError(
                f"registered {obj!r}, which is not a subclass of ganzoo.{self.base_class.__name__}"
            )
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} class {obj.__qualname__} has no 'name'")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise PluginError(f"{self.kind} {name!r} does not implement: {missing}")
        legacy = getattr(obj, "legacy_hparams", None)
        if legacy:  # variants: each key must be a hyperparameter, or old configs would gain a stray one
            stray = sorted(set(legacy) - set(obj.known_hparams()))
            if stray:
                raise PluginError(f"{self.kind} {name!r} lists legacy_hparams that are not its hyperparameters: "
                                  f"{', '.join(stray)}")
        return name

    def _build(self) -> None:
        entries: dict[str, Entry[T]] = {}
        failures: list[plugins.PluginFailure] = []
        for plugin_name, call in plugins.hook_implementations(self.hook_name):
            staged: dict[str, Entry[T]] = {}

            def register(obj: Any, _staged=staged, _plugin=plugin_name) -> None:
                name = self._validate(obj)
                owner = entries.get(name) or _staged.get(name)
                if owner is not None:
                    raise DuplicateNameError(
                        f"{self.kind} {name!r} is registered by both "
                        f"{owner.plugin!r} and {_plugin!r}"
                    )
                _staged[name] = Entry(name, obj, _plugin)

            try:
                call(register=register)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin never ends the command
                problem = str(exc) if isinstance(exc, GanzooError) else f"{type(exc).__name__}: {exc}"
                failures.append(plugins.PluginFailure(plugin_name, f"{self.hook_name}: {problem}"))
                continue
            entries.update(staged)
        self._entries, self._failures = entries, failures

    def _ensure(self) -> None:
        key = plugins.plugin_set_key()
        if key != self._key:
            self._build()
            self._key = key

    def names(self, pattern: str | list[str] = "*") -> list[str]:
        """Sorted registered names matching an fnmatch pattern (or any of several)."""
        self._ensure()
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        return sorted(n for n in self._entries if any(fnmatch.fnmatch(n, p) for p in patterns))

    def entry(self, name: str) -> Entry[T]:
        self._ensure()
        if name not in self._entries:
            failed = plugins.load_failures() + self.failures()
            broken = [f for f in failed if f"{name!r}" in f.problem or f.plugin == name]
            if broken:
                raise PluginError(f"{self.kind} {name!r} is unavailable: {broken[0]}")
            unknown = UnknownNameError(self.kind, name, list(self._entries))
            if failed:  # the name may belong to a plugin that failed before registering it
                unknown.args = (f"{unknown} Plugins that failed, one of which may provide it: "
                                + "; ".join(str(f) for f in failed),)
            raise unknown
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def failures(self) -> list[plugins.PluginFailure]:
        self._ensure()
        return list(self._failures)


def _variant_base():
    from .variant import Variant

    return Variant


def _dataset_base():
    from .data.base import Dataset

    return Dataset


def _observer_base():
    from .events import Observer

    return Observer


class _LazyRegistry(Registry):
    """Defers importing the base class until first use (keeps import light)."""

    def __init__(self, kind: str, hook_name: str, base_loader):
        super().__init__(kind, hook_name, object)
        self._base_loader = base_loader

    def _ensure(self) -> None:
        if self.base_class is object:
            self.base_class = self._base_loader()
        super()._ensure()


VARIANTS: Registry = _LazyRegistry("variant", "register_variants", _variant_base)
DATASETS: Registry = _LazyRegistry("dataset", "register_datasets", _dataset_base)
LOGGERS: Registry = _LazyRegistry("logger", "register_loggers", _observer_base)


def list_variants(pattern: str | list[str] = "*", conditional: bool | None = None) -> list[str]:
    """Names of registered variants matching ``pattern`` (fnmatch, e.g. ``"*gan"``)."""
    names = VARIANTS.names(pattern)
    if conditional is not None:
        names = [n for n in names if VARIANTS.get(n).conditional == conditional]
    return names


def get_variant(name: str):
    """The variant class registered as ``name``; raises UnknownNameError listing known names."""
    return VARIANTS.get(name)


def create_variant(name: str, spec=None, **hparams):
    """An instance of variant ``name`` for data ``spec`` with hyperparameter overrides."""
    return get_variant(name)(spec, **hparams)


def list_datasets(pattern: str | list[str] = "*") -> list[str]:
    return DATASETS.names(pattern)


def get_dataset(name: str):
    return DATASETS.get(name)


def split_dataset_name(name: str) -> tuple[str, str | None]:
    """``"folder:PATH"`` -> ``("folder", "PATH")``; a plain name -> ``(name, None)``."""
    if ":" in name:
        base, data_dir = name.split(":", 1)
        return base, data_dir
    return name, None


def dataset_option_names(name: str) -> frozenset[str]:
    """The options dataset ``name`` takes by name (``standardize``, ``data_dir``, ...)."""
    parameters = inspect.signature(get_dataset(name).__init__).parameters
    return frozenset(k for k, p in parameters.items()
                     if k != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL))


def create_dataset(name: str, **options):
    """An instance of dataset ``name``; ``NAME:DIR`` is shorthand for ``data_dir=DIR``.

    Options a dataset does not take (e.g. ``data_dir`` for a toy set) are a
    GanzooError naming them, not a TypeError.
    """
    name, data_dir = split_dataset_name(name)
    if data_dir is not None:
        options["data_dir"] = data_dir
    cls = get_dataset(name)
    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(k for k in options if k not in accepted and not takes_any)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise GanzooError(f"dataset {name!r} does not take {flags}")
    return cls(**options)


def list_loggers(pattern: str | list[str] = "*") -> list[str]:
    """Names of the registered loggers (``--logger NAME``), e.g. ``['tensorboard']``."""
    return LOGGERS.names(pattern)


def create_logger(name: str):
    """A new observer of the logger registered as ``name`` (an :class:`ganzoo.events.Observer`)."""
    return LOGGERS.get(name)()


def plugin_failures() -> list[plugins.PluginFailure]:
    """Every plugin problem seen so far: failed imports and failed registrations."""
    seen: list[plugins.PluginFailure] = []
    for failure in plugins.load_failures() + VARIANTS.failures() + DATASETS.failures() + LOGGERS.failures():
        if failure not in seen:
            seen.append(failure)
    return seen
