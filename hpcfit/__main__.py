"""``python -m hpcfit``: the same command line as ``hpcfit``."""

import sys

from hpcfit.cli import entry

sys.exit(entry())
