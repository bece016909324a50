"""``python -m hpcfit``: the same command line as ``hpcfit``."""

import sys

from .cli import main

sys.exit(main())
