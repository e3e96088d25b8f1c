"""Normalisation and the CTC character vocabulary."""

from __future__ import annotations

import doctest

import pytest

import speech_tl.text
from speech_tl.text import BLANK, WORD_DELIMITER, Vocabulary, normalize


def test_doctests():
    assert doctest.testmod(speech_tl.text).failed == 0


@pytest.mark.parametrize("raw, expected", [
    ('"Das ist schön", sagte sie.', "das ist schön sagte sie"),
    ("Straße — Maß!  ", "straße maß"),
    ("GRÜSSE aus Köln?", "grüsse aus köln"),
    ("Er sagt: 'nein'.", "er sagt nein"),
    ("Geht’s gut?", "geht's gut"),
    ("", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_vocabulary_for_german_and_round_trip(tmp_path):
    vocab = Vocabulary.build(["Grüß Gott!", "Das Öl ist heiß."], language="de")
    assert vocab.symbols[:2] == [BLANK, WORD_DELIMITER]
    assert set("abcdefghijklmnopqrstuvwxyzäöüß'") <= set(vocab.symbols)
    ids, unknown = vocab.encode("Grüß Gott, Öl!")
    assert vocab.decode(ids) == "grüß gott öl" and not unknown
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").symbols == vocab.symbols


def test_characters_outside_the_vocabulary_are_counted():
    vocab = Vocabulary.build(["abc"], language="de")
    ids, unknown = vocab.encode("café 3 élan")
    assert unknown == {"é": 2, "3": 1}
    assert vocab.decode(ids) == "caf lan"


def test_load_refuses_other_json(tmp_path):
    (tmp_path / "v.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a speech-tl vocabulary"):
        Vocabulary.load(tmp_path / "v.json")
