"""Text for the decoder's language model beyond the training transcripts.

A few thousand synthetic-corpus sentences make a narrow word LM: most words of real speech
are not in it, and a lexicon decoder cannot spell what its lexicon lacks. Two offline sources
widen it:

- **sentences** (:func:`lm_sentences`): ``fortunes-de`` (Debian's German fortune cookies,
  ``/usr/share/games/fortunes/de``: about 38,000 sentences of quotations, jokes and
  anecdotes), or a UTF-8 text file with one sentence per line;
- **word frequencies** (:func:`background_unigrams`): the ``wordfreq`` package's frequency
  list of a language (German: about 600,000 words from Wikipedia, subtitles, news, books and
  the web), used as the LM's background unigram distribution, so every listed word is in the
  lexicon with a prior that reflects how common it is.

Nothing here reads a dev or test set; the caller keeps sentences equal to a held-out transcript
out of the LM (:class:`speech_tl.asr.task.AsrTask` drops its dev transcripts).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SpeechTlError
from ..text import LANGUAGE_ALPHABETS, normalize

FORTUNES = {"fortunes-de": (Path("/usr/share/games/fortunes/de"), "fortunes-de")}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NOT_SPOKEN = re.compile(r"[0-9@/\\|<>{}\[\]=_#*~^$%&+]")  # digits, markup, code: not read aloud as written


class LmTextError(SpeechTlError, ValueError):
    """An LM text source that cannot be read; the message says what to install or give instead."""


def fortune_sentences(folder: Path, min_words: int = 3) -> list[str]:
    """Sentences of a fortune database folder (entries separated by ``%`` lines), without digits or markup."""
    out = []
    for f in sorted(folder.iterdir()):
        if f.suffix in (".dat", ".u8") or not f.is_file():
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"\n%\n", text):
            for s in _SENTENCE_END.split(" ".join(entry.split())):
                s = s.strip(" -\"'")
                if len(s.split()) >= min_words and not _NOT_SPOKEN.search(s) and not s.startswith("--"):
                    out.append(s)
    return out


def lm_sentences(source: str) -> list[str]:
    """Sentences of one source: a name of :data:`FORTUNES` or a text file (one sentence per line)."""
    if source in FORTUNES:
        folder, package = FORTUNES[source]
        if not folder.is_dir():
            raise LmTextError(f"decode.lm_texts: {source} is not installed ({folder} missing): run "
                              f"`apt-get install {package}` (or `make system-deps`), or give a text file")
        return fortune_sentences(folder)
    path = Path(source)
    if not path.is_file():
        raise LmTextError(f"decode.lm_texts: {source!r} is neither a known source ({', '.join(FORTUNES)}) nor a "
                          "file; give a UTF-8 text file with one sentence per line")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def background_unigrams(language: str, top: int = 200_000, alphabet: str | None = None) -> dict[str, float]:
    """The ``top`` most frequent words of ``language`` from ``wordfreq``, spelled with ``alphabet``, normalised to
    sum to one. ``alphabet`` defaults to the language's CTC alphabet (:data:`speech_tl.text.LANGUAGE_ALPHABETS`)."""
    try:
        import wordfreq
    except ImportError as err:
        raise LmTextError("decode.lm_unigrams=wordfreq needs the wordfreq package: pip install wordfreq") from err
    chars = set(alphabet or LANGUAGE_ALPHABETS.get(language, ""))
    if not chars:
        raise LmTextError(f"no alphabet known for language {language!r}; give one")
    try:
        freqs = wordfreq.get_frequency_dict(language, wordlist="large")
    except LookupError:
        freqs = {}
    if not freqs:
        raise LmTextError(f"wordfreq has no word list for language {language!r}")
    out: dict[str, float] = {}
    for word, p in freqs.items():  # most frequent first
        w = normalize(word)
        if w and " " not in w and all(c in chars for c in w) and w not in out:
            out[w] = p
            if len(out) >= top:
                break
    total = sum(out.values())
    return {w: p / total for w, p in out.items()}
