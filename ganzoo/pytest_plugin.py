"""ganzoo's pytest plugin, for the test suites of ganzoo plugins.

pytest loads it in any environment where ganzoo is installed (ganzoo's
``pytest11`` entry point), so a plugin's tests need no conftest.py::

    def test_my_gan_conforms(ganzoo_check):
        ganzoo_check("my-gan")                  # a registered name ...
        ganzoo_check(MyGAN, hparams={"arch": "mlp"})   # ... or a class, with overrides

A failed check fails the test with the whole report (one line per check, with
the reason). Disable the plugin with ``pytest -p no:ganzoo``.

This module imports nothing heavy: it is imported by every pytest run in the
environment, ganzoo's or not.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def ganzoo_check() -> Callable[..., Any]:
    """``ganzoo_check(variant, **options)``: run :func:`ganzoo.testing.check_variant`
    and fail the test with its report unless every check passed; returns the report.

    ``variant`` is a registered name or a :class:`ganzoo.Variant` subclass;
    ``options`` are those of :func:`~ganzoo.testing.check_variant` (``hparams``,
    ``steps``, ``seed``, ``cases``, ``workdir``).
    """

    def check(variant: Any, **options: Any):
        from ganzoo.errors import GanzooError
        from ganzoo.testing import check_variant

        try:
            report = check_variant(variant, **options)
        except GanzooError as exc:  # unknown name, broken plugin: no report to show
            pytest.fail(f"ganzoo check {variant}: {exc}", pytrace=False)
        if not report.ok:
            pytest.fail(report.format(), pytrace=False)
        return report

    return check
