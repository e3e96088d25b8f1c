"""Sentences to speak: the German/English sides of Debian's ``trans-de-en`` dictionary, or a file.

``trans-de-en`` (``/usr/share/trans/de-en``, from TU Chemnitz's Ding dictionary, GPL-2+)
has lines ``German entries :: English entries`` whose ``|``/``;``-separated entries include
many example sentences. Only clean ones are kept: 4-20 words, starting with a capital
letter, ending in ``.``, ``!`` or ``?``, made of letters, spaces and light punctuation.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

TRANS_DE_EN = Path("/usr/share/trans/de-en")
_CLEAN = {
    "de": re.compile(r"^[A-ZÄÖÜ][A-Za-zÄÖÜäöüß ,.'!?\-]*[.!?]$"),
    "en": re.compile(r"^[A-Z][A-Za-z ,.'!?\-]*[.!?]$"),
}


def _clean(sentence: str, language: str, min_words: int, max_words: int) -> bool:
    return bool(_CLEAN[language].match(sentence)) and min_words <= len(sentence.split()) <= max_words \
        and "--" not in sentence


def dictionary_sentences(language: str = "de", path: Path = TRANS_DE_EN, min_words: int = 4,
                         max_words: int = 20) -> list[str]:
    """Clean sentences of one side (``de`` or ``en``) of the trans-de-en dictionary, sorted, unique."""
    if language not in _CLEAN:
        raise InputError(f"trans-de-en has German and English sentences only, not {language!r}; "
                         "give your own with --sentences FILE")
    if not path.is_file():
        from .tts import ToolMissing

        raise ToolMissing(f"{path} not found: run `apt-get install trans-de-en` (or give --sentences FILE)")
    side = 0 if language == "de" else 1
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or "::" not in line:
                continue
            for alt in line.split("::")[side].split("|"):
                for s in alt.split(";"):
                    s = s.strip()
                    if _clean(s, language, min_words, max_words):
                        out.add(s)
    return sorted(out)


def file_sentences(path: str | Path) -> list[str]:
    """One sentence per line (UTF-8); blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentence file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        try:
            for line in f:
                s = " ".join(line.split())
                if s and not s.startswith("#"):
                    out.append(s)
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text ({e.reason}); give a UTF-8 file of sentences, one per "
                             "line") from None
    if not out:
        raise InputError(f"{path}: no sentences (one per line expected)")
    return list(dict.fromkeys(out))
