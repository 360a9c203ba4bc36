"""``python -m ganzoo`` (and ``torchrun -m ganzoo``) runs the CLI."""
from .cli import run

run()
