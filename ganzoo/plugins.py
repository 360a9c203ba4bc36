"""Plugin loading: built-in modules and third-party entry points, on pluggy.

The built-in variants and datasets are registered with ``pm.register`` exactly
like third-party plugins; the only difference is where the module comes from.
Nothing is loaded at ``import ganzoo``: :func:`get_plugin_manager` loads
everything the first time the registry needs it.

``GANZOO_LOAD_PLUGINS`` restricts the third-party plugins that load: unset
means all installed ones, an empty string means none, ``a,b`` means only the
entry points (or distributions) named ``a`` and ``b``. Built-ins always load.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "ganzoo"
LOAD_PLUGINS_ENV = "GANZOO_LOAD_PLUGINS"

BUILTIN_PLUGINS = (
    "ganzoo.variants.vanilla",
    "ganzoo.variants.dcgan",
    "ganzoo.variants.cgan",
    "ganzoo.variants.lsgan",
    "ganzoo.variants.wgan_gp",
    "ganzoo.variants.pggan",
    "ganzoo.variants.stackgan",
    "ganzoo.variants.stylegan2",
    "ganzoo.variants.biggan",
    "ganzoo.variants.cyclegan",
    "ganzoo.data.toy",
    "ganzoo.data.digits",
    "ganzoo.data.mnist",
    "ganzoo.data.cifar",
    "ganzoo.data.folder",
    "ganzoo.data.pair",
    "ganzoo.loggers.tensorboard",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported, or whose hook could not register."""

    plugin: str
    problem: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.problem}"


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from (for ``ganzoo list`` and error messages)."""

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None


_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_load_failures: list[PluginFailure] = []
_infos: dict[str, PluginInfo] = {}
#: Bumped by every register_plugin / unregister_plugin: part of the registries' cache key, because a
#: plugin object registered after another was freed can reuse its id(), which alone would leave the
#: registries serving the freed plugin's entries.
_generation = 0


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("ganzoo")
    pm.add_hookspecs(hookspecs)
    return pm


def _wanted_plugins() -> set[str] | None:
    """Names allowed by GANZOO_LOAD_PLUGINS, or None when every plugin may load."""
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _load_all(pm: pluggy.PluginManager) -> None:
    for module_name in BUILTIN_PLUGINS:
        # A broken built-in is a ganzoo bug, so let it raise.
        pm.register(importlib.import_module(module_name), name=module_name)
        _infos[module_name] = PluginInfo(module_name, builtin=True)

    wanted = _wanted_plugins()
    found: set[str] = set()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if wanted is not None and not ({entry_point.name, dist_name} & wanted):
            continue
        found.update({entry_point.name, dist_name})
        if pm.has_plugin(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin (sys.exit included) must not break ganzoo
            _load_failures.append(
                PluginFailure(entry_point.name, f"failed to load: {type(exc).__name__}: {exc}")
            )
            continue
        _infos[entry_point.name] = PluginInfo(
            entry_point.name, builtin=False, distribution=dist_name,
            version=dist.version if dist is not None else None,
        )
    for name in sorted((wanted or set()) - found):
        _load_failures.append(
            PluginFailure(name, f"named in {LOAD_PLUGINS_ENV} but no installed plugin has that name")
        )


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading every plugin on first use."""
    global _pm
    with _lock:
        if _pm is None:
            pm = _new_manager()
            _load_all(pm)
            _pm = pm
        return _pm


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (tests, notebooks); returns its name."""
    global _generation
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name!r} is already registered or blocked")
    _infos[registered] = PluginInfo(registered, builtin=False)
    _generation += 1
    return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    global _generation
    get_plugin_manager().unregister(name=name)
    _infos.pop(name, None)
    _generation += 1


def load_failures() -> list[PluginFailure]:
    """Plugins that failed to import (hook failures are kept by the registry)."""
    get_plugin_manager()
    return list(_load_failures)


def plugin_info(name: str) -> PluginInfo:
    return _infos.get(name, PluginInfo(name, builtin=False))


def hook_implementations(hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
    """``(plugin_name, call)`` for every implementation of a hook, in load order.

    ``call(**kwargs)`` passes each implementation only the arguments it
    declares. pluggy's own hook call stops at the first exception; calling each
    implementation separately lets the registry pin a failure on the plugin
    that caused it and keep everything else working.
    """
    caller = getattr(get_plugin_manager().hook, hook_name)

    def bind(impl) -> Callable[..., Any]:
        return lambda **kwargs: impl.function(**{n: kwargs[n] for n in impl.argnames})

    # get_hookimpls() is in registration order (pluggy *calls* them in reverse):
    # built-ins first, so a third-party duplicate is the one reported.
    return [(impl.plugin_name, bind(impl)) for impl in caller.get_hookimpls()]


def plugin_set_key() -> tuple[int, ...]:
    """Changes whenever a plugin is registered or removed (registry cache key): the registration
    count of :func:`register_plugin` / :func:`unregister_plugin`, then the plugin objects' ids (which
    catch a plugin registered on the manager directly)."""
    pm = get_plugin_manager()
    return (_generation, *sorted(id(p) for p in pm.get_plugins()))
