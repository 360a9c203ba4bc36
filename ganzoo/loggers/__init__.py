"""Loggers: observers of the training events that a run selects with ``--logger NAME``."""
