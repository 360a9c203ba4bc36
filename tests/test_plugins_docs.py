"""docs/plugins.md cannot drift from the example packages in plugins/.

A code block preceded by ``<!-- file: PATH -->`` must be the file at PATH
exactly; one preceded by ``<!-- part: PATH -->`` must appear in it verbatim.
The tutorial builds plugins/ganzoo-wgan, so every Python and TOML file of that
package must be in the guide: whole, or in parts that, in order, rebuild it
(blank lines aside). Every other Python block must at least parse.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
TUTORIAL_PACKAGE = ROOT / "plugins" / "ganzoo-wgan"

BLOCK = re.compile(r"```(?P<lang>[\w-]*)\n(?P<code>.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- (?P<kind>file|part): (?P<path>\S+) -->\n```")


def blocks():
    """(kind or None, path or None, language, code) for every fenced block, in order."""
    text = GUIDE.read_text()
    markers = {m.end() - 3: (m["kind"], m["path"]) for m in MARKER.finditer(text)}
    found = []
    for match in BLOCK.finditer(text):
        kind, path = markers.get(match.start(), (None, None))
        found.append((kind, path, match["lang"], match["code"]))
    return found


def without_blank_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def referenced():
    return [(kind, path, code) for kind, path, _, code in blocks() if kind]


def test_the_guide_includes_files_by_reference():
    kinds = {kind for kind, _, _ in referenced()}
    assert kinds == {"file", "part"}


@pytest.mark.parametrize("kind, path, code", [
    pytest.param(kind, path, code, id=f"{kind}:{path}#{i}") for i, (kind, path, code) in enumerate(referenced())
])
def test_snippet_is_the_committed_code(kind, path, code):
    source = ROOT / path
    assert source.is_file(), f"docs/plugins.md refers to {path}, which does not exist"
    text = source.read_text()
    if kind == "file":
        assert code == text, f"the block marked 'file: {path}' differs from {path}"
    else:
        assert code in text, f"a block marked 'part: {path}' is not verbatim in {path}"


def test_the_tutorial_shows_the_whole_example_package():
    parts: dict[str, list[str]] = {}
    whole: set[str] = set()
    for kind, path, code in referenced():
        if kind == "file":
            whole.add(path)
        else:
            parts.setdefault(path, []).append(code)
    files = sorted(str(p.relative_to(ROOT)) for p in TUTORIAL_PACKAGE.rglob("*")
                   if p.suffix in (".py", ".toml") and "__pycache__" not in p.parts
                   and ".egg-info" not in str(p))
    assert files
    for path in files:
        if path in whole:
            continue
        assert path in parts, f"the tutorial does not show {path}"
        rebuilt = without_blank_lines("\n".join(parts[path]))
        assert rebuilt == without_blank_lines((ROOT / path).read_text()), (
            f"the parts of {path} in docs/plugins.md, in order, do not rebuild the file")


def test_every_python_block_parses():
    for kind, path, lang, code in blocks():
        if lang == "python":
            try:
                ast.parse(code)
            except SyntaxError as exc:
                if kind == "part":  # an indented excerpt of a class body
                    ast.parse("class _Excerpt:\n" + code)
                else:
                    raise AssertionError(f"a python block in docs/plugins.md does not parse: {exc}")
