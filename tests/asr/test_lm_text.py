"""LM text sources: fortune databases split into sentences, wordfreq's word list as a background unigram."""

from __future__ import annotations

import pytest

from speech_tl.asr.lm_text import LmTextError, background_unigrams, fortune_sentences, lm_sentences


def test_fortune_entries_become_clean_sentences(tmp_path):
    (tmp_path / "witze").write_text(
        "Ein Mann geht zum Arzt. Der Arzt sagt:\n\"Sie sind kerngesund!\"\n%\n"
        "Version 2.0 ist da.\n%\n    -- Goethe\n%\nKurz.\n", encoding="utf-8")
    (tmp_path / "witze.dat").write_bytes(b"\x00\x01")
    sentences = fortune_sentences(tmp_path)
    assert sentences == ["Ein Mann geht zum Arzt.", "Der Arzt sagt: \"Sie sind kerngesund!"]


def test_sources_are_named_or_files(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("# comment\nEins zwei drei.\n\nVier fünf.\n", encoding="utf-8")
    assert lm_sentences(str(f)) == ["Eins zwei drei.", "Vier fünf."]
    with pytest.raises(LmTextError, match="neither a known source"):
        lm_sentences(str(tmp_path / "missing.txt"))


def test_wordfreq_background_keeps_spellable_words_in_frequency_order():
    pytest.importorskip("wordfreq")
    words = background_unigrams("de", top=5000)
    assert len(words) == 5000 and sum(words.values()) == pytest.approx(1.0)
    ranked = list(words)
    assert ranked.index("die") < ranked.index("haus") < ranked.index("schule")
    assert all(set(w) <= set("abcdefghijklmnopqrstuvwxyzäöüß'") for w in words)
    with pytest.raises(LmTextError, match="no word list"):
        background_unigrams("xx", top=10, alphabet="abc")
