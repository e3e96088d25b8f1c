"""N-gram language models for CTC beam search, trained in pure Python and written as ARPA files.

:func:`train_ngram_lm` estimates an interpolated modified Kneser-Ney model (Chen & Goodman, 1998) the way
KenLM's ``lmplz`` does, without needing the KenLM binaries:

* sentences are padded with one ``<s>`` and one ``</s>``; the highest order uses raw counts, lower orders use
  continuation counts (the number of distinct words seen to the left), except n-grams starting with ``<s>``,
  which have no left context and keep their raw counts;
* three discounts per order (for adjusted counts 1, 2 and 3+) from the count-of-counts, with a single
  absolute discount as fallback when the data are too small for the closed-form estimates;
* every order is interpolated with the next lower one, and the unigrams with the uniform distribution over the
  vocabulary (which includes ``</s>`` and ``<unk>``, not ``<s>``), so ``<unk>`` gets a small probability.

In an interpolated model the back-off weight of a context is exactly its interpolation weight, so the ARPA
file is properly normalised: for every context, the probabilities of all words, computed with ARPA back-off,
sum to one.

With ``unit="char"`` the "words" of the model are single characters and ``|`` (the CTC word delimiter) stands
for a space, i.e. the tokens of :class:`speech_tl.text.Vocabulary`, so the model plugs into the lexicon-free
beam search of :class:`speech_tl.asr.decode.BeamSearchDecoder`.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from ..atomic import atomic_open
from ..errors import InputError
from ..text import WORD_DELIMITER, normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (BOS, EOS, UNK)
Unit = Literal["word", "char"]


def lm_tokens(text: str, unit: Unit = "word") -> list[str]:
    """The tokens an LM of ``unit`` sees for ``text`` (normalised first).

    >>> lm_tokens("Grüß Gott!")
    ['grüß', 'gott']
    >>> lm_tokens("Grüß Gott!", unit="char")
    ['g', 'r', 'ü', 'ß', '|', 'g', 'o', 't', 't']
    """
    text = normalize(text)
    if unit == "word":
        return text.split()
    if unit == "char":
        return [WORD_DELIMITER if c == " " else c for c in text]
    raise ValueError(f"unit must be 'word' or 'char', not {unit!r}")


def _discounts(adjusted_counts: Iterable[int]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts ``(D1, D2, D3+)`` from the count-of-counts of one order."""
    t = Counter(min(c, 5) for c in adjusted_counts)
    t1, t2, t3, t4 = t[1], t[2], t[3], t[4]
    if t1 and t2 and t3 and t4:
        y = t1 / (t1 + 2 * t2)
        d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
        if all(0 < dk < k for k, dk in enumerate(d, start=1)):
            return d
    # too little data for the closed form: one absolute discount (always below every count it applies to)
    y = t1 / (t1 + 2 * t2) if t1 and t2 else 0.5
    y = min(max(y, 0.1), 0.9)
    return y, y, y


def _adjusted_counts(sentences: list[list[str]], order: int) -> list[dict[tuple[str, ...], int]]:
    """``counts[n]`` maps each n-gram (n = 1..order) to its Kneser-Ney adjusted count; ``counts[0]`` is empty."""
    top: Counter = Counter()
    bos_prefixes = [Counter() for _ in range(order)]  # raw counts of the "<s> ..." n-grams below the top order
    for tokens in sentences:
        seq = (BOS, *tokens, EOS)
        top.update(zip(*(seq[i:] for i in range(order)), strict=False))
        for n in range(1, min(order, len(seq) + 1)):
            bos_prefixes[n][seq[:n]] += 1
    counts: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
    counts[order] = top
    for n in range(order - 1, 0, -1):
        # every n-gram not starting with <s> has a left neighbour, so it is the suffix of some (n+1)-gram:
        # its continuation count is the number of distinct (n+1)-grams it ends
        cont = Counter(g[1:] for g in counts[n + 1])
        cont.update(bos_prefixes[n])  # disjoint keys: <s> only ever occurs first
        counts[n] = cont
    return counts


def train_ngram_lm(
    texts: Iterable[str],
    order: int = 3,
    unit: Unit = "word",
    path: str | os.PathLike | None = None,
    background: dict[str, float] | None = None,
) -> Path:
    """Train an interpolated modified Kneser-Ney n-gram LM on ``texts`` and write it to ``path`` as ARPA.

    ``texts`` are normalised with :func:`speech_tl.text.normalize` (empty ones are skipped); ``unit`` is
    ``"word"`` (tokens are words) or ``"char"`` (tokens are characters, ``|`` between words). Probabilities
    and back-off weights are log10, ``<s>``, ``</s>`` and ``<unk>`` are in the vocabulary, and the file is
    written through a temporary file and :func:`os.replace`. Returns ``path`` as a :class:`~pathlib.Path`.

    ``background`` (word -> probability, summing to one; e.g. :func:`speech_tl.asr.lm_text.background_unigrams`)
    replaces the uniform distribution that the unigrams are interpolated with: its words join the vocabulary
    with the discounted mass shared out by their frequency (1% of it stays uniform, for ``</s>``, ``<unk>``
    and training words it lacks). The model stays normalised.
    """
    if path is None:
        raise TypeError("train_ngram_lm() needs the output path")
    if order < 1:
        raise ValueError(f"order must be at least 1, not {order}")
    sentences = [toks for t in texts if (toks := lm_tokens(t, unit))]
    if not sentences:
        raise InputError(f"no training text left after normalisation for the {unit} LM (every text given is empty "
                         "or has no letters); check decode.lm_texts and the training transcripts")

    counts = _adjusted_counts(sentences, order)
    # unigrams: interpolated with the uniform distribution over the vocabulary (without <s>)
    unigrams = {g: c for g, c in counts[1].items() if g != (BOS,)}
    unigrams.setdefault((UNK,), 0)
    d1 = _discounts(c for c in unigrams.values() if c > 0)
    total = sum(unigrams.values())
    discounted = sum(d1[min(c, 3) - 1] for c in unigrams.values() if c > 0)
    if background:
        for word in background:
            unigrams.setdefault((word,), 0)
    gamma = discounted / total
    uniform = 0.01 if background else 1.0
    prior = {g: (1 - uniform) * background.get(g[0], 0.0) for g in unigrams} if background else {}
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    probs[1] = {g: (c - d1[min(c, 3) - 1] if c else 0.0) / total + gamma * (prior.get(g, 0.0)
                                                                             + uniform / len(unigrams))
                for g, c in unigrams.items()}
    backoffs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]

    for n in range(2, order + 1):
        counts_n, lower = counts[n], probs[n - 1]
        d1_, d2_, d3_ = _discounts(counts_n.values())
        small = (0.0, d1_, d2_)  # discount for adjusted counts 1 and 2; d3_ for 3+
        context: dict[tuple[str, ...], list[float]] = {}  # history -> [total count, total discount]
        for g, c in counts_n.items():
            stats = context.get(g[:-1])
            if stats is None:
                context[g[:-1]] = [c, small[c] if c < 3 else d3_]
            else:
                stats[0] += c
                stats[1] += small[c] if c < 3 else d3_
        # p(w | h) = (c(h w) - D(c)) / c(h) + gamma(h) p(w | h'), gamma(h) = sum of discounts / c(h)
        coef = {h: (1.0 / total_h, discount_h / total_h) for h, (total_h, discount_h) in context.items()}
        probs_n = {}
        for g, c in counts_n.items():
            inv_total, gamma = coef[g[:-1]]
            probs_n[g] = (c - (small[c] if c < 3 else d3_)) * inv_total + gamma * lower[g[1:]]
        probs[n] = probs_n
        backoffs[n - 1] = {h: gamma for h, (_, gamma) in coef.items()}

    path = Path(path)
    _write_arpa(path, probs, backoffs)
    return path


def _write_arpa(path: Path, probs: list[dict], backoffs: list[dict]) -> None:
    order = len(probs) - 1
    log10 = math.log10
    with atomic_open(path) as f:
        f.write("\\data\\\n")
        f.write(f"ngram 1={len(probs[1]) + 1}\n")  # + <s>
        for n in range(2, order + 1):
            f.write(f"ngram {n}={len(probs[n])}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            bows = backoffs[n]
            if n == 1:
                bos = f"\t{log10(bows[(BOS,)]):.7f}" if (BOS,) in bows else ""
                f.write(f"-99\t{BOS}{bos}\n")
            grams = list(probs[n])
            logp = np.log10(np.fromiter(probs[n].values(), dtype=np.float64, count=len(grams))).tolist()
            lines = []
            for g, lp in zip(grams, logp, strict=True):
                b = bows.get(g)
                if b is None:
                    lines.append(f"{lp:.7f}\t{' '.join(g)}\n")
                else:
                    lines.append(f"{lp:.7f}\t{' '.join(g)}\t{log10(b):.7f}\n")
            f.writelines(lines)
        f.write("\n\\end\\\n")


def read_arpa(path: str | os.PathLike) -> dict[tuple[str, ...], tuple[float, float]]:
    """All n-grams of an ARPA file: ``{(w1, ..., wn): (log10 prob, log10 back-off weight, 0.0 if none)}``."""
    entries: dict[tuple[str, ...], tuple[float, float]] = {}
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if fields[0].startswith("\\"):
                head = fields[0]
                n = int(head[1:].split("-")[0]) if head.endswith("-grams:") else 0
                continue
            if n:
                if len(fields) not in (n + 1, n + 2):
                    raise InputError(f"{path}:{lineno}: bad {n}-gram line {line!r}; expected 'LOG10PROB W1 .. W{n} "
                                     "[BACKOFF]' (an ARPA file)")
                bow = float(fields[n + 1]) if len(fields) == n + 2 else 0.0
                entries[tuple(fields[1 : n + 1])] = (float(fields[0]), bow)
    return entries


def arpa_vocabulary(path: str | os.PathLike) -> list[str]:
    """The unigrams of an ARPA file, without ``<s>``, ``</s>`` and ``<unk>``, in file order."""
    words: list[str] = []
    in_unigrams = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if in_unigrams:
                    break
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                fields = line.split()
                if len(fields) >= 2 and fields[1] not in SPECIAL_TOKENS:
                    words.append(fields[1])
    return words
