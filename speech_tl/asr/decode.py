"""Turning CTC posteriors into text: greedy (best path) decoding and beam search with an optional n-gram LM.

Both take the CTC head's log-probabilities ``(B, T, V)`` over :class:`speech_tl.text.Vocabulary` symbols
(index 0 the blank, index 1 the word delimiter ``|``) and valid lengths ``(B,)``, and return one normalised
string per utterance: words separated by single spaces, nothing leading or trailing.

:class:`BeamSearchDecoder` wraps flashlight's CTC beam search (``torchaudio.models.decoder.ctc_decoder``,
which needs the ``flashlight-text`` package). How it uses an LM depends on ``unit``:

* ``unit="char"`` -- lexicon-free search; the LM (e.g. from :func:`speech_tl.asr.lm.train_ngram_lm` with
  ``unit="char"``) scores every emitted character, ``|`` included, so words outside any list can be produced.
* ``unit="word"`` -- flashlight's lexicon-free search would feed single characters to the LM, which is
  meaningless for a word LM, so a word LM is always used with a lexicon (a prefix tree of spellings): the one
  given as ``lexicon``, or else the LM's own vocabulary. Only lexicon words can then be recognised.

Without ``lm_path`` and ``lexicon`` the search is lexicon-free without LM (close to greedy decoding, but it sums
over alignments only approximately: flashlight keeps the best alignment per prefix unless ``log_add``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError, SpeechTlError
from ..text import BLANK, WORD_DELIMITER, Vocabulary, normalize
from .lm import SPECIAL_TOKENS, UNK, arpa_vocabulary

# the score of "impossible" tokens in the frame appended for lexicon decoding (finite: flashlight adds scores)
_IMPOSSIBLE = -1.0e4


class DecoderMissing(SpeechTlError, ImportError):
    """Beam search was asked for, but flashlight-text (or torchaudio's decoder) cannot be imported."""


def _valid_lengths(log_probs: Tensor, lengths: Tensor | None) -> list[int]:
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    batch, frames, _ = log_probs.shape
    if lengths is None:
        return [frames] * batch
    out = [int(n) for n in torch.as_tensor(lengths).reshape(-1).tolist()]
    if len(out) != batch:
        raise ValueError(f"{len(out)} lengths for a batch of {batch}")
    if any(n < 0 or n > frames for n in out):
        raise ValueError(f"lengths must lie in [0, {frames}], got {out}")
    return out


def greedy_decode(log_probs: Tensor, lengths: Tensor | None, vocab: Vocabulary) -> list[str]:
    """Best-path CTC decoding: per-frame argmax, repeats collapsed, blanks dropped, ``|`` as a space.

    ``log_probs``: ``(B, T, V)`` scores (log-probabilities or logits; only the argmax matters) on any device;
    ``lengths``: ``(B,)`` valid frames per utterance (``None``: all ``T``). Returns ``B`` strings.
    """
    valid = _valid_lengths(log_probs, lengths)
    best = log_probs.detach().argmax(dim=-1).cpu()  # (B, T)
    texts = []
    for b, n in enumerate(valid):
        ids = torch.unique_consecutive(best[b, :n]).tolist()
        texts.append(vocab.decode(ids))  # drops the blank (id 0)
    return texts


def _spell(word: str, index: dict[str, int]) -> list[str] | None:
    """Tokens of ``word`` followed by ``|``, or ``None`` if a character is not in the vocabulary."""
    if not word or any(c not in index for c in word):
        return None
    return [*word, WORD_DELIMITER]


class BeamSearchDecoder:
    """CTC prefix beam search (flashlight) with an optional KenLM n-gram LM read from an ARPA (or binary) file.

    Args:
        vocab: the CTC head's vocabulary; its symbols are the decoder's tokens (blank ``<blank>``,
            silence/word delimiter ``|``).
        beam_size: hypotheses kept after each frame.
        lm_path: n-gram LM (ARPA, or a KenLM binary); ``None``: no LM.
        lm_weight: weight of the LM score. Note that KenLM scores are log10 while the acoustic scores are
            natural logs, so the effective weight in nats is ``lm_weight / ln(10)``.
        word_score: added per recognised word (lexicon decoding only; flashlight's lexicon-free search has no
            word bonus, so a non-zero value then only triggers a warning).
        lexicon: ``None``; a file with one word per line (``word`` or flashlight's ``word t1 t2 ...``, where
            only the word is used); or an iterable of words. Words are normalised, spelled with the
            vocabulary's characters (words with other characters are skipped) and end with ``|``.
        unit: ``"word"`` or ``"char"``: what the tokens of the LM are (see the module docstring).
        beam_threshold: hypotheses scoring more than this below the best are pruned.
        beam_size_token: tokens tried per frame (``None``: all).
        log_add: merge equal hypotheses by log-sum-exp instead of max.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        beam_size: int = 16,
        lm_path: str | os.PathLike | None = None,
        lm_weight: float = 0.5,
        word_score: float = 0.0,
        lexicon: str | os.PathLike | Iterable[str] | None = None,
        unit: Literal["word", "char"] = "word",
        beam_threshold: float = 50.0,
        beam_size_token: int | None = None,
        log_add: bool = False,
    ) -> None:
        ctc_decoder = _import_ctc_decoder()
        if unit not in ("word", "char"):
            raise InputError(f"decoder unit must be 'word' or 'char' (decode.lm_unit, decoder.json), not {unit!r}")
        if len(vocab) < 2 or vocab.symbols[0] != BLANK or vocab.symbols[1] != WORD_DELIMITER:
            raise ValueError(f"vocabulary must start with {BLANK!r}, {WORD_DELIMITER!r}")
        if lm_path is not None and not Path(lm_path).is_file():
            raise FileNotFoundError(f"language model not found: {lm_path}")
        if unit == "char" and lexicon is not None:
            raise ValueError("a lexicon restricts words, but unit='char' decodes lexicon-free; use unit='word'")
        self.vocab = vocab
        self.unit = unit
        self.lm_path = None if lm_path is None else Path(lm_path)
        self.beam_size, self.lm_weight, self.word_score = beam_size, lm_weight, word_score
        self._search = {"beam_size_token": beam_size_token or len(vocab), "beam_threshold": beam_threshold,
                        "log_add": log_add}
        self._trie = None  # built on the first reweighted() of a lexicon decoder

        words = None
        if lexicon is not None:
            words = _read_words(lexicon)
        elif lm_path is not None and unit == "word":
            words = arpa_vocabulary(lm_path)
        self.lexicon_words: list[str] | None = None
        if words is not None:
            index = vocab.index
            spelled: dict[str, list[str]] = {}
            skipped = set()
            for word in words:
                w = normalize(word)
                spelling = None if w in SPECIAL_TOKENS or " " in w else _spell(w, index)
                if spelling is None:
                    skipped.add(word)
                else:
                    spelled.setdefault(w, spelling)
            if skipped:
                warnings.warn(
                    f"{len(skipped)} lexicon words skipped (not one word, or characters outside the vocabulary): "
                    f"{sorted(skipped)[:5]}",
                    stacklevel=2,
                )
            if not spelled:
                source = "the lexicon" if lexicon is not None else f"the word LM {lm_path}"
                raise InputError(f"no word of {source} can be spelled with the model's vocabulary "
                                 f"({''.join(vocab.symbols[2:])[:60]}); train the LM on text of the model's language")
            self.lexicon_words = list(spelled)
        elif word_score:
            warnings.warn("word_score has no effect in lexicon-free decoding", stacklevel=2)

        lm: str | object | None = None if lm_path is None else str(lm_path)
        if lm is not None and self.lexicon_words is None:
            # Lexicon-free, flashlight passes *token indices* to the LM, and the KenLM wrapper maps them to LM
            # words through the dictionary it was built with. torchaudio builds that dictionary from an
            # unordered map (create_word_dict), so its indices do not match the token indices and the LM
            # would score the wrong characters. Build KenLM with the tokens in vocabulary order instead.
            lm = _kenlm(str(lm_path), list(vocab.symbols))
        with tempfile.TemporaryDirectory(prefix="speech_tl_lexicon_") as tmp:
            lexicon_file = None
            if self.lexicon_words is not None:
                lexicon_file = os.path.join(tmp, "lexicon.txt")
                with open(lexicon_file, "w", encoding="utf-8") as f:
                    f.writelines(f"{w}\t{' '.join(spelled[w])}\n" for w in self.lexicon_words)
            # ctc_decoder reads the lexicon (and the LM) here, so the temporary file may go afterwards
            self._decoder = ctc_decoder(
                lexicon=lexicon_file,
                tokens=list(vocab.symbols),
                lm=lm,
                nbest=1,
                beam_size=beam_size,
                beam_size_token=beam_size_token,
                beam_threshold=beam_threshold,
                lm_weight=lm_weight,
                word_score=word_score,
                log_add=log_add,
                blank_token=BLANK,
                sil_token=WORD_DELIMITER,
                unk_word=UNK,
            )

    def reweighted(self, lm_weight: float, word_score: float = 0.0) -> BeamSearchDecoder:
        """The same search with another LM weight and word score, sharing the loaded LM and the lexicon's prefix
        tree (loading a large ARPA file and building the tree take far longer than a decoding pass: this is what
        makes tuning the two weights on a dev set cheap). Uses flashlight-text's decoder classes directly."""
        import copy

        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
        )

        inner = self._decoder
        silence = inner.tokens_dict.get_index(WORD_DELIMITER)
        common = {"beam_size": self.beam_size, "beam_size_token": self._search["beam_size_token"],
                  "beam_threshold": self._search["beam_threshold"], "lm_weight": lm_weight, "sil_score": 0.0,
                  "log_add": self._search["log_add"], "criterion_type": CriterionType.CTC}
        new_inner = copy.copy(inner)
        if self.uses_lexicon:
            if self._trie is None:
                self._trie = self._build_trie()
            options = LexiconDecoderOptions(word_score=word_score, unk_score=float("-inf"), **common)
            new_inner.decoder = LexiconDecoder(options, self._trie, inner.lm, silence, inner.blank,
                                               inner.word_dict.get_index(UNK), [], False)
        else:
            new_inner.decoder = LexiconFreeDecoder(LexiconFreeDecoderOptions(**common), inner.lm, silence,
                                                   inner.blank, [])
        out = copy.copy(self)
        out._decoder, out.lm_weight, out.word_score = new_inner, lm_weight, word_score
        return out

    def _build_trie(self):
        """The lexicon's prefix tree over token ids, each word scored by its LM unigram and smeared (max), as
        torchaudio's ``ctc_decoder`` builds it."""
        from flashlight.lib.text.decoder import SmearingMode, Trie

        inner = self._decoder
        trie = Trie(inner.tokens_dict.index_size(), inner.tokens_dict.get_index(WORD_DELIMITER))
        start = inner.lm.start(False)
        for word in self.lexicon_words:
            index = inner.word_dict.get_index(word)
            _, score = inner.lm.score(start, index)
            trie.insert([inner.tokens_dict.get_index(t) for t in [*word, WORD_DELIMITER]], index, score)
        trie.smear(SmearingMode.MAX)
        return trie

    @property
    def uses_lexicon(self) -> bool:
        """Whether words are restricted to a lexicon (always so with a word LM)."""
        return self.lexicon_words is not None

    @property
    def has_lm(self) -> bool:
        """Whether an n-gram LM takes part in the search."""
        return self.lm_path is not None

    def decode(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[str]:
        """Beam search over log-softmax outputs ``(B, T, V)`` with valid lengths ``(B,)``; returns ``B`` strings.

        The tensor may be on any device and in any float dtype; it is copied to contiguous CPU float32.
        """
        valid = _valid_lengths(log_probs, lengths)
        emissions = log_probs.detach().to(device="cpu", dtype=torch.float32)
        batch, frames, size = emissions.shape
        if size != len(self.vocab):
            raise ValueError(f"log_probs have {size} classes, the vocabulary {len(self.vocab)}")
        if self.uses_lexicon:
            # A lexicon word ends with "|", but CTC targets have no "|" after the last word, so the last word
            # would never be completed. Append one frame in which "|" is certain, right after each utterance.
            vocab_delimiter = self.vocab.symbols.index(WORD_DELIMITER)
            padded = torch.full((batch, frames + 1, size), _IMPOSSIBLE, dtype=torch.float32)
            padded[:, :frames] = emissions
            for b, n in enumerate(valid):
                padded[b, n] = _IMPOSSIBLE
                padded[b, n, vocab_delimiter] = 0.0
            emissions, valid = padded, [n + 1 for n in valid]
        emissions = emissions.contiguous()
        texts: list[str] = []
        for b, n in enumerate(valid):
            if n == 0 or (self.uses_lexicon and n == 1):
                texts.append("")
                continue
            hyps = self._decoder(emissions[b : b + 1], torch.tensor([n], dtype=torch.int32))[0]
            if not hyps:
                texts.append("")
            elif self.uses_lexicon:
                texts.append(" ".join(w for w in hyps[0].words if w != UNK))
            else:
                # tokens: the collapsed path without blanks; flashlight puts "|" (silence) at both ends
                texts.append(self.vocab.decode(hyps[0].tokens.tolist()))
        return texts

    __call__ = decode


def _read_words(lexicon: str | os.PathLike | Iterable[str]) -> list[str]:
    if isinstance(lexicon, str | os.PathLike):
        with open(lexicon, encoding="utf-8") as f:
            return [line.split()[0] for line in f if line.strip()]
    return list(lexicon)


def _kenlm(path: str, tokens: list[str]):
    """flashlight's KenLM wrapper whose user index ``i`` is ``tokens[i]``."""
    from flashlight.lib.text.dictionary import Dictionary

    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError:
        from flashlight.lib.text.decoder import KenLM
    return KenLM(path, Dictionary(tokens))


def decoder_install_hint(version_info: tuple[int, ...] | None = None) -> str:
    """How to get beam search on this Python (``version_info``: ``sys.version_info`` unless given).

    flashlight-text (0.0.7, the last release) has wheels up to Python 3.12 only, so pip cannot install it on 3.13
    or later; ufal.flashlight-text, a build of the same bindings (the same ``flashlight.lib.text`` module, KenLM
    included), has wheels for 3.13 and later, and pyproject.toml installs it there instead."""
    major, minor = tuple(version_info or sys.version_info)[:2]
    if (major, minor) < (3, 13):
        return ("beam search decoding needs flashlight-text: pip install flashlight-text (greedy decoding, --beam 0, "
                "does not)")
    return (f"beam search decoding needs flashlight-text, which has no wheels for Python {major}.{minor} (the last "
            "ones are for 3.12): pip install ufal.flashlight-text (the same decoder built for Python 3.13 and later), "
            "or use Python 3.11 or 3.12 (greedy decoding, --beam 0, needs neither)")


def _import_ctc_decoder():
    """torchaudio's ``ctc_decoder`` factory, or :class:`DecoderMissing` (an ImportError) that says how to get
    flashlight-text on this Python (:func:`decoder_install_hint`)."""
    message = decoder_install_hint()
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError as err:
        raise DecoderMissing(message) from err
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:  # torchaudio wraps the import error in a RuntimeError
        raise DecoderMissing(f"{message} ({err})") from err
    return ctc_decoder
