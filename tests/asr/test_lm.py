"""N-gram LM training: a valid, normalised ARPA file that KenLM (inside flashlight) reads and scores alike."""

from __future__ import annotations

import doctest
import itertools
import math
import random
import time

import pytest

import speech_tl.asr.lm
from speech_tl.asr.lm import arpa_vocabulary, lm_tokens, read_arpa, train_ngram_lm
from speech_tl.text import Vocabulary

CORPUS = [
    "Das Haus ist groß.",
    "Das Haus ist alt!",
    "das haus steht im dorf",
    "Die Maus ist klein",
    "die katze jagt die maus",
    "der hund bellt",
    "die straße ist lang",
    "die straße ist nass",
    "ja",
    "",
]


def log10_prob(model: dict, context: tuple[str, ...], word: str) -> float:
    """log10 P(word | context) by ARPA back-off: the longest known n-gram, plus the back-off weights of the
    contexts that had to be shortened (0 for contexts that are not in the model)."""
    if context + (word,) in model:
        return model[context + (word,)][0]
    if not context:
        raise KeyError(word)
    return model.get(context, (0.0, 0.0))[1] + log10_prob(model, context[1:], word)


def sentence_log10_prob(model: dict, tokens: list[str], order: int) -> float:
    seq = ["<s>", *tokens, "</s>"]
    return sum(log10_prob(model, tuple(seq[max(0, i - order + 1):i]), seq[i]) for i in range(1, len(seq)))


def test_doctests():
    assert doctest.testmod(speech_tl.asr.lm).failed == 0


@pytest.mark.parametrize("unit, order", [("word", 1), ("word", 2), ("word", 3), ("word", 4), ("char", 3), ("char", 6)])
def test_every_context_is_normalised(tmp_path, unit, order):
    path = train_ngram_lm(CORPUS, order=order, unit=unit, path=tmp_path / "lm.arpa")
    model = read_arpa(path)
    vocab = [g[0] for g in model if len(g) == 1 and g[0] != "<s>"]
    assert {"</s>", "<unk>"} <= set(vocab)
    contexts = {()} | {g for g in model if len(g) < order and g[-1] != "</s>"}
    # contexts the model never saw back off all the way, and must be normalised too
    contexts |= {("<unk>",) * (order - 1), ("<s>", "<unk>")[: order - 1]}
    assert len(contexts) >= (1 if order == 1 else 10)
    for context in contexts:
        total = sum(10 ** log10_prob(model, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-3), context


def test_arpa_format(tmp_path):
    path = train_ngram_lm(CORPUS, order=3, path=tmp_path / "sub" / "lm.arpa")
    assert path == tmp_path / "sub" / "lm.arpa" and sorted(p.name for p in path.parent.iterdir()) == ["lm.arpa"]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    model = read_arpa(path)
    headers = (line[len("ngram "):].split("=") for line in text.splitlines() if line.startswith("ngram "))
    declared = {int(n): int(c) for n, c in headers}
    assert declared == {n: sum(len(g) == n for g in model) for n in (1, 2, 3)}
    assert {("<s>",), ("</s>",), ("<unk>",)} <= set(model)
    assert model[("<s>",)][0] == -99 and model[("<s>",)][1] < 0  # <s> is only a context
    assert all(p <= 0 for p, _ in model.values())
    assert all(bow == 0 for g, (_, bow) in model.items() if len(g) == 3)  # no back-off at the top order
    for g in model:  # every n-gram's prefix and suffix are in the model, as KenLM requires
        assert len(g) == 1 or (g[:-1] in model and g[1:] in model)
    assert arpa_vocabulary(path) == [g[0] for g in model if len(g) == 1 and g[0] not in ("<s>", "</s>", "<unk>")]
    assert set(arpa_vocabulary(path)) == {w for s in CORPUS for w in lm_tokens(s)}
    # overwriting goes through a temporary file too and leaves nothing else behind
    train_ngram_lm(["ganz anders"], order=2, path=path)
    assert set(arpa_vocabulary(path)) == {"ganz", "anders"}
    assert [p.name for p in path.parent.iterdir()] == ["lm.arpa"]


def test_kneser_ney_probabilities_follow_the_data(tmp_path):
    texts = ["san francisco"] * 6 + ["the dog", "a dog", "my dog", "his dog"]
    model = read_arpa(train_ngram_lm(texts, order=2, path=tmp_path / "lm.arpa"))
    # continuation counts: "francisco" is frequent but only ever follows "san", "dog" follows four words
    assert model[("francisco",)][0] < model[("dog",)][0]
    assert log10_prob(model, ("san",), "francisco") > log10_prob(model, ("the",), "francisco")
    assert log10_prob(model, ("the",), "dog") > log10_prob(model, ("the",), "francisco")
    assert model[("<unk>",)][0] < min(p for g, (p, _) in model.items() if len(g) == 1 and g[0] not in ("<s>", "<unk>"))


def test_char_lm_tokens_are_vocabulary_symbols(tmp_path):
    path = train_ngram_lm(CORPUS, order=4, unit="char", path=tmp_path / "char.arpa")
    vocab = Vocabulary.build(CORPUS, language="de")
    words = arpa_vocabulary(path)
    assert "|" in words and " " not in words and all(len(w) == 1 for w in words)
    assert set(words) <= set(vocab.symbols[1:])
    model = read_arpa(path)
    assert ("|", "h", "a") in model and ("ß", "e") in model


@pytest.mark.parametrize("unit, order", [("word", 3), ("char", 5)])
def test_kenlm_in_flashlight_reads_the_arpa_and_agrees(tmp_path, unit, order):
    pytest.importorskip("flashlight.lib.text.decoder")
    from speech_tl.asr.decode import _kenlm

    path = train_ngram_lm(CORPUS, order=order, unit=unit, path=tmp_path / "lm.arpa")
    model = read_arpa(path)
    tokens = sorted(g[0] for g in model if len(g) == 1) + ["unseen"]
    lm = _kenlm(str(path), tokens)
    for sentence in ["das haus ist groß", "die maus jagt die katze", "ein unseen wort"]:
        seq = lm_tokens(sentence, unit)
        state, total = lm.start(False), 0.0
        for t in seq:
            state, score = lm.score(state, tokens.index(t) if t in tokens else tokens.index("unseen"))
            total += score
        total += lm.finish(state)[1]
        seq = [t if t in tokens[:-1] else "<unk>" for t in seq]
        assert total == pytest.approx(sentence_log10_prob(model, seq, order), abs=1e-4), sentence


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no training text"):
        train_ngram_lm(["", "?!"], path=tmp_path / "lm.arpa")
    with pytest.raises(ValueError, match="unit"):
        train_ngram_lm(["a b"], unit="phone", path=tmp_path / "lm.arpa")
    with pytest.raises(ValueError, match="order"):
        train_ngram_lm(["a b"], order=0, path=tmp_path / "lm.arpa")
    with pytest.raises(TypeError, match="path"):
        train_ngram_lm(["a b"])
    assert not list(tmp_path.iterdir())


def test_twenty_thousand_sentences_in_seconds(tmp_path):
    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzäöüß", k=rng.randint(2, 9))) for _ in range(8000)]
    zipf = list(itertools.accumulate(1 / (i + 1) for i in range(len(words))))
    texts = [" ".join(rng.choices(words, cum_weights=zipf, k=rng.randint(4, 16))) for _ in range(20000)]
    for unit, order in [("word", 3), ("char", 6)]:
        start = time.perf_counter()
        train_ngram_lm(texts, order=order, unit=unit, path=tmp_path / f"{unit}.arpa")
        seconds = time.perf_counter() - start
        assert seconds < 20, (unit, seconds)  # about 2 s (word) and 4 s (char) on two busy cores
    model = read_arpa(tmp_path / "word.arpa")
    vocab = [g[0] for g in model if len(g) == 1 and g[0] != "<s>"]
    assert len(vocab) > 5000
    for context in [("<s>",), ("<s>", texts[0].split()[0]), tuple(texts[1].split()[:2])]:
        assert math.fsum(10 ** log10_prob(model, context, w) for w in vocab) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("order", [1, 3])
def test_background_unigrams_join_the_vocabulary_and_keep_it_normalised(tmp_path, order):
    background = {"haus": 0.4, "garten": 0.3, "baum": 0.2, "zaun": 0.1}
    model = read_arpa(train_ngram_lm(CORPUS, order=order, path=tmp_path / "lm.arpa", background=background))
    vocab = [g[0] for g in model if len(g) == 1 and g[0] != "<s>"]
    assert {"garten", "baum", "zaun"} <= set(vocab)  # never in the training text
    for context in [(), ("das",), ("<s>", "das")][:order]:
        total = sum(10 ** log10_prob(model, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-3), context
    # unseen words are ranked by their background frequency
    assert model[("garten",)][0] > model[("baum",)][0] > model[("zaun",)][0]
