"""Speaker names: the one form that is stored, looked up and answered.

:func:`normalize_name` gives the one form of a speaker name that is stored, looked up (enroll, rename,
remove, clips, verify) and answered (identify, verify, speakers): Unicode NFC, surrounding whitespace
removed, inner runs of whitespace one space; an empty name or one with control characters is refused.
So ``" Anna "`` is ``"Anna"``, and ``"Zoë"`` typed as ``"Zoe"`` and a combining diaeresis is ``"Zoë"``.
:data:`UNKNOWN` is reserved: identify answers it when no speaker matches.
"""

from __future__ import annotations

import unicodedata

from .errors import SpeakerRegistryError

UNKNOWN = "unknown"  # what identify() answers when no speaker reaches the threshold (a reserved name)


def normalize_name(name: str) -> str:
    """The one form of a speaker name that the database stores, looks up and answers.

    Unicode NFC (a composed "ë" and "e" + combining diaeresis are the same letter), surrounding
    whitespace removed, inner runs of whitespace one space. Refuses a name that is empty (or all
    whitespace) or holds control characters (tab, newline, ...) inside.
    """
    if not isinstance(name, str):
        raise SpeakerRegistryError(f"a speaker name must be a string, not {type(name).__name__}")
    text = unicodedata.normalize("NFC", name).strip()
    if not text:
        raise SpeakerRegistryError("a speaker name must be a non-empty string")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise SpeakerRegistryError(f"speaker name {text!r} contains control characters")
    return normal_form(text)


def normal_form(name: str) -> str:
    """:func:`normalize_name` without its checks, for names an older version stored."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def new_name(name: str) -> str:
    """A name a speaker may get (enroll, rename): normalised, and not the reserved :data:`UNKNOWN`."""
    name = normalize_name(name)
    if name == UNKNOWN:
        raise SpeakerRegistryError(f"'{UNKNOWN}' is reserved: identify answers it when no speaker matches")
    return name
