"""The hooks a ganzoo plugin can implement.

A plugin is a module (or any object) with functions marked ``@ganzoo.hookimpl``
whose names match the specs below. Third-party plugins are found through the
``ganzoo`` entry-point group; the built-in variants and datasets register
through exactly the same hooks.

Hooks are called with keyword arguments only, so an implementation may accept a
subset of the parameters; new parameters may be added in later versions, but
none is ever renamed or removed.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ganzoo")
hookimpl = pluggy.HookimplMarker("ganzoo")


@hookspec
def register_variants(register):
    """Register GAN variants.

    Called once per process, the first time the registry is queried (listing,
    getting or creating a variant); not at ``import ganzoo``.

    :param register: ``register(variant_class)``, where ``variant_class`` is a
        subclass of :class:`ganzoo.Variant` with a unique ``name``. Call it once
        per variant. Registration from one plugin is all-or-nothing: if this hook
        raises, or registers a name another plugin already owns, none of its
        variants are kept and the failure is reported by ``ganzoo list``.
    :returns: nothing; return values are ignored.
    """


@hookspec
def register_datasets(register):
    """Register datasets.

    Called once per process, the first time the dataset registry is queried;
    not at ``import ganzoo``.

    :param register: ``register(dataset_class)``, where ``dataset_class`` is a
        subclass of :class:`ganzoo.Dataset` with a unique ``name``. The same
        all-or-nothing rule as :func:`register_variants` applies.
    :returns: nothing; return values are ignored.
    """


@hookspec
def register_loggers(register):
    """Register loggers: observers of the training events that a user selects per run.

    Called once per process, the first time a run or ``ganzoo list`` asks for loggers.

    :param register: ``register(logger_class)``, where ``logger_class`` is a subclass of
        :class:`ganzoo.Observer` with a unique ``name`` (what ``ganzoo train --logger NAME``
        and ``TrainOptions(loggers=[NAME])`` select) and a one-line ``description``. Each run
        builds one instance with ``logger_class()`` and calls its event methods
        (``on_start``, ``on_step``, ``on_log``, ``on_samples``, ``on_checkpoint``, ``on_end``;
        see :mod:`ganzoo.events` for when each fires and what it receives), on rank 0 only.
        The same all-or-nothing rule as :func:`register_variants` applies. A logger whose
        optional package is missing overrides the classmethod ``check_available()`` to raise
        :class:`ganzoo.GanzooError` naming the package to install: it is called when the run's
        options are checked, before the run directory exists. An exception other than a
        GanzooError or OSError raised by an event method stops the run like any bug would.
    :returns: nothing; return values are ignored.
    """
