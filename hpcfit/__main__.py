"""``python -m hpcfit``: the same command line as ``hpcfit``."""

import sys

from hpcfit.steady_imports import install

install()  # first: the command's own imports already look up modules in cached directory listings

from hpcfit.cli import entry  # noqa: E402 - after the finder on purpose

sys.exit(entry())
