"""Content digests of files: what a derived preparation, a training run and an evaluation record of their inputs,
so that an input prepared again under the same path is told apart from the one they used."""

from __future__ import annotations

import hashlib
import os


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (a twin or packs record their source manifest's, a run its training manifest's, an
    evaluation its manifest's)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
