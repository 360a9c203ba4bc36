"""``python -m ganzoo`` (and ``torchrun -m ganzoo``) runs the CLI."""
import sys

from .cli import main

sys.exit(main())
