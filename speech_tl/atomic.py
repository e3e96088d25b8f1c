"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``.

Readers (and a run resumed after a kill) see either the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _temporary(path: Path, suffix: str) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open would
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears only when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)``, for writers that take a file name (``suffix``: the ending
    they read the format from): the written file is synced and renamed to ``p`` when the block ends."""
    path = Path(path)
    fd, tmp = _temporary(path, suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def temporary_dir_beside(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new empty folder ``.<name>.<tag>-XXXX`` beside ``path`` (same filesystem, so it can be renamed onto it by
    :func:`replace_dir`), absolute."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{tag}-"))


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the folder ``new`` (made by :func:`temporary_dir_beside`) in place of ``path``: a folder already there is
    renamed away first and removed after, so ``path`` names the old folder or the new one, never a mixture (and
    files of the old one that the new one lacks do not linger). If the swap fails, the old folder is put back."""
    new, path = Path(new), Path(path)
    old = None
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise FileExistsError(f"{path}: not a folder, so it cannot be replaced by one; move it away")
        old = temporary_dir_beside(path, "old")
        os.replace(path, old)  # onto the empty folder mkdtemp made (rename replaces an empty directory)
    try:
        os.replace(new, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RANDOM = "[a-z0-9_]{8}"  # the part tempfile.mkstemp / mkdtemp put in a name


def clean_leftovers(path: str | os.PathLike, tags: tuple[str, ...] = ("tmp",),
                    suffixes: tuple[str, ...] = (".tmp",)) -> list[Path]:
    """Remove what a killed writer of ``path`` left beside it, found by the names this module gives, nothing else:
    files ``.<name>.XXXXXXXX<suffix>`` of :func:`atomic_path`, folders ``.<name>.<tag>-XXXXXXXX`` of
    :func:`temporary_dir_beside` (or ``-<pid>``, as older ``speech-tl interpolate`` named them), and the old folder
    ``.<name>.old-XXXXXXXX`` of :func:`replace_dir`: removed, or put back when ``path`` is missing (the swap never
    finished). Returns the paths removed or put back."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.escape(path.name)
    temp_file = re.compile(rf"\.{name}\.{_RANDOM}(?:{'|'.join(map(re.escape, suffixes))})")
    temp_dir = re.compile(rf"\.{name}\.(?:{'|'.join(map(re.escape, tags))})-(?:{_RANDOM}|[0-9]+)")
    old_dir = re.compile(rf"\.{name}\.old-{_RANDOM}")
    done, olds = [], []
    for p in sorted(path.parent.glob(f".{glob.escape(path.name)}.*")):
        if p.is_symlink():
            continue
        if p.is_file() and temp_file.fullmatch(p.name):
            p.unlink()
        elif p.is_dir() and temp_dir.fullmatch(p.name):
            shutil.rmtree(p)
        elif p.is_dir() and old_dir.fullmatch(p.name):
            olds.append(p)
            continue
        else:
            continue
        done.append(p)
    olds.sort(key=lambda p: p.stat().st_mtime)
    if olds and not (path.exists() or path.is_symlink()):
        os.replace(olds.pop(), path)  # the newest: the output the killed swap had moved away
        done.append(path)
    for p in olds:
        shutil.rmtree(p)
        done.append(p)
    return done
