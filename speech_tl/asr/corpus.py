"""What every task with a CTC head sets up the same way: the transcribed training set, its vocabulary
and CTC targets, the dev subset, and the decoder's n-gram LM.

Used by :class:`speech_tl.asr.task.AsrTask` and :class:`speech_tl.multitask.task.MultitaskTask`, so a
change here (a check, a message, what the LM is trained on) lands in both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import DataConfig, UtteranceDataset, load_training_manifest, subset
from ..logs import info
from ..manifest import ManifestError, Utterance, read_manifest
from ..text import Vocabulary, normalize

if TYPE_CHECKING:
    from .config import DecodeConfig


@dataclass
class AsrCorpus:
    train: list[Utterance]  # transcribed training utterances, as kept by the duration filter
    vocab: Vocabulary
    targets: list[list[int]]  # CTC target ids of each training utterance
    dev: UtteranceDataset | None  # the dev subset (``data.dev_max_utterances``, seeded)


def load_asr_corpus(data: DataConfig, language: str, seed: int, out: Path, log=info) -> AsrCorpus:
    """Read ``data.train`` and ``data.dev``, build the vocabulary (the language's whole alphabet and every
    character of the training text) and encode the targets.

    Nothing is dropped silently: training characters the vocabulary leaves out are counted and logged,
    a transcript left with no character is an error naming ``file:line``, and dev characters the head
    can never output (scored as errors) are logged.
    """
    train = load_training_manifest(data.train, data, need_text=True, out_dir=out, name="train")
    vocab = Vocabulary.build((u.text for u in train), language=language)
    targets, unknown = [], Counter()
    for u in train:
        ids, bad = vocab.encode(u.text)
        targets.append(ids)
        unknown.update(bad)
    if unknown:
        log(f"characters outside the vocabulary, left out of targets: {dict(unknown.most_common(20))}")
    empty = [u for u, t in zip(train, targets, strict=True) if not t]
    if empty:
        raise ManifestError(f"{data.train}:{empty[0].line}: transcript {empty[0].text!r} has no character of "
                            f"the vocabulary after normalisation ({len(empty)} such utterances); fix their text or "
                            "drop those lines")
    dev = None
    if data.dev:
        utts = load_training_manifest(data.dev, data, need_text=True, out_dir=out, name="dev")
        dev = UtteranceDataset(subset(utts, data.dev_max_utterances, seed))
        outside = vocab.unknown_characters(u.text for u in dev.utterances)
        if outside:
            log(f"{data.dev}: dev transcripts hold characters outside the vocabulary (scored as errors): "
                f"{dict(outside.most_common(20))}")
    return AsrCorpus(train, vocab, targets, dev)


def train_decoder_lm(corpus: AsrCorpus, language: str, dec: DecodeConfig, path: Path, log=info) -> Path:
    """The decoder's n-gram LM: target-language training transcripts, ``decode.lm_texts`` (without sentences
    equal to a dev or ``decode.tune_on`` transcript) and the ``decode.lm_unigrams`` background."""
    from .lm import train_ngram_lm
    from .lm_text import background_unigrams, lm_sentences

    # the LM models the target language: with source-language data in the mix, only the target's text
    texts = [u.text for u in corpus.train if u.language == language] or [u.text for u in corpus.train]
    sources = [f"{len(texts)} training transcripts"]
    # sentences of other sources equal to a dev transcript are left out: the LM must not know the dev set
    held_out = {normalize(u.text) for u in corpus.dev.utterances} if corpus.dev is not None else set()
    if dec.tune_on and Path(dec.tune_on).is_file():
        held_out |= {normalize(u.text) for u in read_manifest(dec.tune_on)}
    kept = list(texts)
    for source in dec.lm_texts:
        more = lm_sentences(source)
        clean = [t for t in more if normalize(t) not in held_out]
        kept += clean
        sources.append(f"{len(clean)} sentences of {source}"
                       + (f" ({len(more) - len(clean)} equal to dev transcripts left out)" if len(clean) < len(more)
                          else ""))
    background = None
    if dec.lm_unigrams:
        background = background_unigrams(language, dec.lm_vocab_size, "".join(s for s in corpus.vocab.symbols[2:]))
        sources.append(f"{dec.lm_unigrams} background unigrams over {len(background)} words")
    path = train_ngram_lm(kept, dec.lm_order, dec.lm_unit, path, background=background)
    log(f"{dec.lm_unit} {dec.lm_order}-gram LM on {', '.join(sources)} -> {path}")
    return path
