"""hpcfit's messages: one ``logging`` logger, ``hpcfit``, and the command line's handler for it.

Library code (the engine, the jobs, the Python API) only logs; it never configures logging, so a notebook or an
application decides where messages go. The command line installs ``setup_logging``: messages of rank 0 (and
warnings/errors of any rank) as ``hpcfit: message``, information on stdout and warnings and errors on stderr, at
the level chosen by ``-v`` (debug) / ``-q`` (warnings and errors only). Progress lines are not log messages: they
stay on rank 0's stderr unless the progress mode says otherwise.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "hpcfit"
logger = logging.getLogger(LOGGER_NAME)


class _ByLevelHandler(logging.Handler):
    """Information to stdout, warnings and errors to stderr; both flushed at once (batch logs interleave ranks)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - a message must never end a run
            self.handleError(record)


def level_for(verbose: int = 0, quiet: int = 0) -> int:
    """The logging level of ``-v`` / ``-q`` counts: INFO by default, DEBUG with -v, WARNING with -q."""
    if quiet:
        return logging.WARNING if quiet == 1 else logging.ERROR
    return logging.DEBUG if verbose else logging.INFO


def setup_logging(level: int = logging.INFO) -> None:
    """Send the ``hpcfit`` logger's messages to the terminal (the command line's choice, not the library's)."""
    for handler in list(logger.handlers):
        if isinstance(handler, _ByLevelHandler):
            logger.removeHandler(handler)
    handler = _ByLevelHandler()
    handler.setFormatter(logging.Formatter("hpcfit: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
