"""The report as a small document tree (sections of paragraphs, tables, figures, aligned transcripts).

:mod:`.build` fills it from the runs; :mod:`.render` writes it as HTML and as Markdown, so both files hold
the same tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Span:
    """Inline text, shown exactly as written (a value from the runs goes here); ``kind``: "" plain, "b" bold,
    "best" the best run's mark, "muted" secondary, "code"."""

    text: str
    kind: str = ""


# A str is the report's own prose, in which text between backticks is code; a value read from the runs (a name,
# path, id, transcript, config value) must not be put in such a str but in a Span.
Inline = str | list[Span]


@dataclass
class Para:
    content: Inline


@dataclass
class Table:
    """Header and cells; a cell that is a str is data, shown as written (no code marks), like a Span."""

    headers: list[str]
    rows: list[list[Inline]]
    numeric: list[bool] | None = None  # right-aligned columns
    note: Inline = ""


@dataclass
class Figure:
    id: str
    png: bytes
    alt: str
    caption: str

    @property
    def filename(self) -> str:
        return f"{self.id}.png"


@dataclass
class Token:
    """One aligned position: kind "ok", "sub", "del" or "ins"; ``ref``/``hyp`` empty where the side has a gap."""

    kind: str
    ref: str
    hyp: str


@dataclass
class Aligned:
    """A reference/hypothesis pair aligned word by word."""

    uid: str
    speaker: str
    tokens: list[Token]


@dataclass
class Examples:
    items: list[Aligned]


Block = Para | Table | Figure | Examples


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def walk(self, depth: int = 0):
        yield depth, self
        for c in self.children:
            yield from c.walk(depth + 1)


@dataclass
class Document:
    title: str
    intro: list[Block]
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for _, x in s.walk() for b in x.blocks if isinstance(b, Figure)]


class Ids:
    """Unique, URL-safe ids for sections and figures."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, *parts: str) -> str:
        base = "-".join(s for s in (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts) if s) or "x"
        out, k = base, 2
        while out in self.used:
            out, k = f"{base}-{k}", k + 1
        self.used.add(out)
        return out
