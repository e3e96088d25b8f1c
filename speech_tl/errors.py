"""The base of the package's expected errors.

An expected error is one a user can act on: a bad file, a missing tool, a config that does
not validate, an output that already exists. Each subclasses :class:`SpeechTlError` (and,
where older callers catch it, ``ValueError``/``RuntimeError``). The command line prints an
expected error as one ``error:`` line and exits 1; anything else is a bug and shows its
traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class SpeechTlError(Exception):
    """An error the user can act on; its message says what was wrong and what to do."""


class OutputExistsError(SpeechTlError, FileExistsError):
    """A command would replace an existing output file or folder."""


def check_output(path: str | os.PathLike, overwrite: bool, what: str = "output") -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; returns it as a Path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: {what} already exists; give --overwrite to replace it, or another path")
    return path


class InputError(SpeechTlError, ValueError):
    """An input (file, option value, manifest field) that cannot be used as given."""
