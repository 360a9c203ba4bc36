"""``ganzoo plugins``: the installed plugins, what each provides, and which failed.

For every plugin: its name (the entry-point name, or the module of a built-in),
the distribution and version it comes from, the hooks it implements, and the
variants and datasets it registered. A plugin that failed to import, whose hook
raised, or that registered something invalid is listed with the error.
Built-in plugins are shown with ``--all``.
"""
from __future__ import annotations

import importlib.metadata
import json
from typing import Any

from . import __version__


def plugin_table(include_builtin: bool = False) -> list[dict[str, Any]]:
    """One dict per plugin: name, builtin, distribution, version, loaded, hooks,
    variants, datasets, loggers and errors (problem strings; empty when it works).

    Loaded plugins come in load order (built-ins first), then plugins that could
    not be loaded.
    """
    from . import plugins
    from .registry import DATASETS, LOGGERS, VARIANTS, plugin_failures

    pm = plugins.get_plugin_manager()
    owned: dict[str, dict[str, list[str]]] = {}
    for kind, registry in (("variants", VARIANTS), ("datasets", DATASETS), ("loggers", LOGGERS)):
        for name in registry.names():
            owned.setdefault(registry.entry(name).plugin, {}).setdefault(kind, []).append(name)
    errors: dict[str, list[str]] = {}
    for failure in plugin_failures():
        errors.setdefault(failure.plugin, []).append(failure.problem)

    rows = []
    for name, plugin in pm.list_name_plugin():
        info = plugins.plugin_info(name)
        if info.builtin and not include_builtin:
            continue
        callers = pm.get_hookcallers(plugin) or []
        hooks = sorted(caller.name for caller in callers)
        problems = errors.pop(name, [])
        # pluggy accepts an implementation of a hook nobody specified (a typo) and
        # never calls it; say so, since the plugin then silently provides nothing.
        for caller in callers:
            if caller.spec is None:
                problems.append(f"implements {caller.name!r}, which is not a ganzoo hook "
                                f"(hooks: {', '.join(_hook_names())})")
        rows.append({
            "name": name,
            "builtin": info.builtin,
            "distribution": "ganzoo" if info.builtin else info.distribution,
            "version": __version__ if info.builtin else info.version,
            "loaded": True,
            "hooks": hooks,
            "variants": owned.get(name, {}).get("variants", []),
            "datasets": owned.get(name, {}).get("datasets", []),
            "loggers": owned.get(name, {}).get("loggers", []),
            "errors": problems,
        })
    # What is left failed before it could register (an import error, or a name in
    # GANZOO_LOAD_PLUGINS that no installed plugin has).
    dists = _entry_point_distributions()
    for name, problems in errors.items():
        dist, version = dists.get(name, (None, None))
        rows.append({"name": name, "builtin": False, "distribution": dist, "version": version,
                     "loaded": False, "hooks": [], "variants": [], "datasets": [], "loggers": [],
                     "errors": problems})
    return rows


def _hook_names() -> list[str]:
    from . import hookspecs

    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "ganzoo_spec"))


def _entry_point_distributions() -> dict[str, tuple[str | None, str | None]]:
    from .plugins import ENTRY_POINT_GROUP

    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
    return found


def cmd_plugins(args) -> int:
    rows = plugin_table(include_builtin=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No third-party plugins are installed (`ganzoo plugins --all` lists the built-in ones;\n"
              "docs/plugins.md shows how to write one).")
        return 0
    for row in rows:
        if row["builtin"]:
            origin = "built-in"
        else:
            origin = " ".join(x for x in (row["distribution"], row["version"]) if x) or "registered at run time"
        status = "" if not row["errors"] else ("  FAILED TO LOAD" if not row["loaded"] else "  BROKEN")
        print(f"{row['name']}  ({origin}){status}")
        if row["loaded"]:
            print(f"  hooks:    {', '.join(row['hooks']) or '(none)'}")
        if row["variants"]:
            print(f"  variants: {', '.join(row['variants'])}")
        if row["datasets"]:
            print(f"  datasets: {', '.join(row['datasets'])}")
        if row["loggers"]:
            print(f"  loggers:  {', '.join(row['loggers'])}")
        for problem in row["errors"]:
            print(f"  error:    {problem}")
    if any(row["errors"] for row in rows):
        print("\nSkip a broken plugin by naming the ones to load: "
              "GANZOO_LOAD_PLUGINS=name1,name2 (empty: none).")
    return 0


def add_command(subparsers, parser_class=None) -> None:
    p = subparsers.add_parser(
        "plugins", help="list installed plugins, their hooks and what they register",
        description="List the installed ganzoo plugins: version, the hooks each implements, the "
                    "variants and datasets it registered, and the error of any plugin that failed.")
    p.add_argument("--all", action="store_true", help="include ganzoo's built-in plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_plugins)
