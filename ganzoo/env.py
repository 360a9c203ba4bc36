"""Numbers read from environment variables, checked like command-line options."""
from __future__ import annotations

import math
import os

from .errors import GanzooError


def env_number(name: str, default: float, *, integer: bool = True, minimum: float = 1) -> float:
    """``$name`` as a number of at least ``minimum`` (``default`` when unset or empty).

    A value that is not such a number is a one-line GanzooError naming the
    variable, never a ValueError traceback or a silent fallback.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = "an integer" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise GanzooError(f"{name}={raw!r} is not {kind}; set it to {kind} of at least {minimum:g} "
                          "or unset it") from None
    if not math.isfinite(value) or value < minimum:
        raise GanzooError(f"{name}={raw!r} must be {kind} of at least {minimum:g}")
    return value
