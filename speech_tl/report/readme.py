"""Measured tables into a README: the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` is replaced."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import InputError


def replace_block(text: str, name: str, table: str) -> str:
    """``text`` with the block ``name`` holding ``table``; :class:`InputError` when the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise InputError(f"no {start} ... {end} markers; add them where the table belongs")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def update_readme(path: str | Path, blocks: dict[str, str | None]) -> None:
    """Write each non-empty ``blocks[name]`` into its markers of ``path`` (atomically, all or nothing)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    for name, table in blocks.items():
        if table:
            try:
                text = replace_block(text, name, table)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
    atomic_write_text(path, text)


def load_result(path: str | Path) -> dict | None:
    """A results/summary JSON file, or None when the run has not written it (its table cell shows "-")."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def fmt(result: dict | None, key: str) -> str:
    """``result[key]`` with 3 decimals, or "-" when the file or the value is missing."""
    return "-" if result is None or result.get(key) is None else f"{result[key]:.3f}"
