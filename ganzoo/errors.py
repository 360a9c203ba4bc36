"""Errors that ganzoo reports to a user as one line (exit code 2 on the CLI).

Anything raised as a :class:`GanzooError` is the user's to fix (a wrong name, a
bad value, a broken plugin); anything else is a bug in ganzoo and keeps its
traceback.
"""
from __future__ import annotations

import difflib


class GanzooError(Exception):
    """A problem with the user's input or environment, with the fix in its message."""


class UnknownNameError(GanzooError, KeyError):
    """A variant or dataset name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(self.known) or '(none)'}."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(GanzooError):
    """Two plugins registered the same name."""


class PluginError(GanzooError):
    """A plugin failed to import, its hook raised, or it registered something invalid."""
