"""Text normalisation and the character vocabulary of a CTC head.

One :func:`normalize` is used for training targets and for scoring, so WER/CER never
depend on casing or punctuation: lowercase, punctuation removed, hyphens and
apostrophe variants unified, whitespace collapsed. German keeps ä ö ü ß.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

BLANK = "<blank>"
WORD_DELIMITER = "|"
APOSTROPHES = "'’‘`´"
LANGUAGE_ALPHABETS = {
    "de": "abcdefghijklmnopqrstuvwxyzäöüß'",
    "en": "abcdefghijklmnopqrstuvwxyz'",
}


def normalize(text: str) -> str:
    """Lowercase, strip punctuation, keep letters, digits, apostrophes and single spaces.

    >>> normalize('„Grüß Gott!“, sagte er -- ganz   leise.')
    'grüß gott sagte er ganz leise'
    >>> normalize("Don’t  stop-and-go")
    "don't stop and go"
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(f"[{APOSTROPHES}]", "'", text)
    text = "".join(c if (c.isalnum() or c == "'") else " " for c in text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quotes, not apostrophes inside words
    return " ".join(text.split())


@dataclass
class Vocabulary:
    """Characters of a CTC head: index 0 is the blank, the word delimiter stands for spaces."""

    symbols: list[str]

    @classmethod
    def build(cls, texts: Iterable[str], language: str | None = None, min_count: int = 1) -> Vocabulary:
        """From normalised training texts; with a known ``language`` its whole alphabet is included."""
        counts = Counter(c for t in texts for c in normalize(t).replace(" ", ""))
        chars = {c for c, n in counts.items() if n >= min_count}
        if language in LANGUAGE_ALPHABETS:
            chars |= set(LANGUAGE_ALPHABETS[language])
        return cls([BLANK, WORD_DELIMITER, *sorted(chars)])

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def encode(self, text: str) -> tuple[list[int], Counter]:
        """Normalised text -> ids (spaces become the delimiter), and a count of characters left out."""
        idx = self.index
        ids, unknown = [], Counter()
        for c in normalize(text):
            key = WORD_DELIMITER if c == " " else c
            if key in idx:
                ids.append(idx[key])
            else:
                unknown[c] += 1
        return ids, unknown

    def unknown_characters(self, texts: Iterable[str]) -> Counter:
        """Characters of the normalised ``texts`` that the vocabulary cannot spell (a model can never output them,
        so each costs an error in scoring)."""
        known = set(self.symbols)
        return Counter(c for t in texts for c in normalize(t) if c != " " and c not in known)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (already collapsed, no blanks) -> text."""
        out = "".join(self.symbols[i] for i in ids if i != 0)
        return " ".join(out.replace(WORD_DELIMITER, " ").split())

    def save(self, path: str | Path) -> None:
        from .atomic import atomic_write_text

        atomic_write_text(path, json.dumps({"symbols": self.symbols}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a speech-tl vocabulary (not JSON: {e})") from None
        symbols = data.get("symbols") if isinstance(data, dict) else None
        if not isinstance(symbols, list) or not symbols or symbols[0] != BLANK:
            raise InputError(f"{path}: not a speech-tl vocabulary (expected {{'symbols': ['{BLANK}', ...]}}); "
                             "is the checkpoint folder complete?")
        return cls(symbols)
