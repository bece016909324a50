"""``python -m hpcfit``: the same command line as ``hpcfit``."""

import sys

from .cli import entry

sys.exit(entry())
