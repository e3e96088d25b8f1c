"""The package's log: one :mod:`logging` logger, ``speech_tl``.

Functions that report progress take a ``log`` callable (tests pass their own); its default,
:func:`info`, logs through this logger. The command line sends it to stderr at INFO
(``speech_tl.cli.setup_logging``: ``-v`` DEBUG, ``-q`` WARNING, DDP ranks other than 0
errors only); a program that imports the package configures :mod:`logging` as it likes.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("speech_tl")


def info(message: str) -> None:
    """Log one progress line at INFO."""
    logger.info(message)


def warning(message: str) -> None:
    """Log something the user should know (data dropped, a fallback taken) at WARNING."""
    logger.warning(message)
