"""Hooks, their docs and their tests stay in step (as datasette does it).

Every hookspec in ganzoo/hookspecs.py must have
* a test named ``test_hook_<name>`` somewhere under tests/,
* a section in docs/plugins.md headed by its exact signature,
  e.g. ``### `register_variants(register)` ``, that says when it is called,
  describes each parameter and what it returns,
* a docstring with ``:param <p>:`` for each parameter and ``:returns:``;
and docs/plugins.md documents no hook that does not exist.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ganzoo import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
HEADING = re.compile(r"^### `(?P<name>\w+)\((?P<params>[^)]*)\)`$", re.M)


def specs() -> dict[str, object]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "ganzoo_spec")}


def signature(fn) -> str:
    return f"{fn.__name__}{inspect.signature(fn)}"


def hook_sections() -> dict[str, str]:
    """``{"register_variants(register)": section text}`` for the guide's hook headings."""
    text = GUIDE.read_text()
    sections = {}
    for match in HEADING.finditer(text):
        end = text.find("\n## ", match.end())
        following = text.find("\n### ", match.end())
        stops = [i for i in (end, following) if i != -1]
        sections[f"{match['name']}({match['params']})"] = text[match.end():min(stops) if stops else None]
    return sections


def test_there_are_hookspecs():
    assert {"register_variants", "register_datasets"} <= set(specs())


@pytest.mark.parametrize("name", sorted(specs()))
def test_plugin_hook_has_a_test(name):
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"^def test_hook_{name}\(", sources, re.M), (
        f"hook {name!r} has no test: add `def test_hook_{name}(...)` under tests/")


@pytest.mark.parametrize("name", sorted(specs()))
def test_plugin_hook_is_documented_with_its_signature(name):
    fn = specs()[name]
    sections = hook_sections()
    assert signature(fn) in sections, (
        f"docs/plugins.md has no section headed ### `{signature(fn)}` "
        f"(documented: {', '.join(sections) or 'none'})")
    section = sections[signature(fn)]
    assert "**When it is called:**" in section
    assert "**Returns:**" in section
    for param in inspect.signature(fn).parameters:
        assert f"* `{param}`" in section, f"docs/plugins.md does not describe {name}'s parameter {param!r}"


@pytest.mark.parametrize("name", sorted(specs()))
def test_plugin_hook_docstring_documents_each_parameter(name):
    fn = specs()[name]
    doc = inspect.getdoc(fn) or ""
    assert "Called" in doc, f"the docstring of {name} does not say when it is called"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"the docstring of {name} has no ':param {param}:'"
    assert ":returns:" in doc


def test_docs_describe_no_hook_that_does_not_exist():
    documented = {key.split("(")[0] for key in hook_sections()}
    assert documented == set(specs()), (
        f"documented but not hookspecs: {sorted(documented - set(specs()))}; "
        f"hookspecs without a section: {sorted(set(specs()) - documented)}")
