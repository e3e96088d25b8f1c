"""Greedy and beam-search CTC decoding, with and without word/char n-gram LMs, on hand-built posteriors."""

from __future__ import annotations

import math

import pytest
import torch

from speech_tl.asr.decode import BeamSearchDecoder, greedy_decode
from speech_tl.asr.lm import lm_tokens, read_arpa, train_ngram_lm
from speech_tl.text import BLANK, Vocabulary

from .test_lm import sentence_log10_prob

pytest.importorskip("flashlight.lib.text.decoder")

B = BLANK
VOCAB = Vocabulary.build([], language="de")

CORPUS = [
    "das haus ist groß",
    "das haus ist alt",
    "das haus steht im dorf",
    "die maus ist klein",
    "die katze jagt die maus",
    "der hund bellt",
    "die straße ist lang",
    "die straße ist nass",
]


def posteriors(frames: list[str | dict[str, float]], vocab: Vocabulary = VOCAB) -> torch.Tensor:
    """Log-probabilities ``(T, V)``: a symbol gets 0.98 of the mass, a dict gives its symbols' probabilities;
    the rest is spread evenly over the other symbols."""
    idx = vocab.index
    rows = []
    for frame in frames:
        probs = {frame: 0.98} if isinstance(frame, str) else frame
        rest = (1.0 - sum(probs.values())) / (len(vocab) - len(probs))
        row = torch.full((len(vocab),), rest)
        for sym, p in probs.items():
            row[idx[sym]] = p
        rows.append(row.log())
    return torch.stack(rows)


def frames_for(text: str, repeat: int = 1) -> list[str]:
    """A CTC path for ``text``: each character ``repeat`` times, blanks around, ``|`` for spaces."""
    out = [B]
    for c in text:
        out += ["|" if c == " " else c] * repeat + [B]
    return out


def batch(*utterances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``(T_i, V)`` log-probs with garbage to ``(B, T_max, V)``; returns it and the lengths ``(B,)``."""
    t_max = max(u.shape[0] for u in utterances)
    garbage = posteriors(["x"] * t_max)
    out = torch.stack([torch.cat([u, garbage[u.shape[0]:]]) for u in utterances])
    return out, torch.tensor([u.shape[0] for u in utterances])


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    return train_ngram_lm(CORPUS, order=3, unit="word", path=tmp_path_factory.mktemp("lm") / "word3.arpa")


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    return train_ngram_lm(CORPUS, order=6, unit="char", path=tmp_path_factory.mktemp("lm") / "char6.arpa")


# --- greedy ---------------------------------------------------------------------------------------------

def test_greedy_collapses_repeats_drops_blanks_and_maps_delimiter_to_space():
    path = ["|", B, "h", "h", "a", "l", "l", B, "l", "o", "o", "|", "|", B, "|", "w", B, "e", "l", "t", B, "|", B]
    lp, lengths = batch(posteriors(path), posteriors(["j", "a", "a", B, "a"]))
    assert greedy_decode(lp, lengths, VOCAB) == ["hallo welt", "jaa"]


def test_greedy_needs_a_blank_between_repeated_letters_and_respects_lengths():
    lp, lengths = batch(posteriors(["l", "l", "l"]), posteriors(["l", B, "l"]), posteriors([B, B]))
    assert greedy_decode(lp, lengths, VOCAB) == ["l", "ll", ""]
    lengths[1] = 1  # frames past the length are ignored
    assert greedy_decode(lp, lengths, VOCAB)[1] == "l"
    assert greedy_decode(lp, None, VOCAB)[2] == "x"  # None: all frames (here the padding "x x", no blank)


# --- beam search without LM -----------------------------------------------------------------------------

def test_beam_search_without_lm_equals_greedy_on_peaked_posteriors():
    gen = torch.Generator().manual_seed(0)
    texts = ["hallo welt", "das ist ein kleiner test", "straße", "a b c", "wetter morgen ", "lass das"]
    utterances = []
    for i, text in enumerate(texts):
        lp = posteriors(frames_for(text, repeat=1 + i % 3))
        lp = torch.log_softmax(lp + 0.3 * torch.randn(lp.shape, generator=gen), dim=-1)
        utterances.append(lp)
    lp, lengths = batch(*utterances)
    greedy = greedy_decode(lp, lengths, VOCAB)
    assert greedy == [" ".join(t.split()) for t in texts]
    decoder = BeamSearchDecoder(VOCAB, beam_size=8)
    assert not decoder.uses_lexicon and not decoder.has_lm
    assert decoder.decode(lp, lengths) == greedy
    # any device / dtype / layout is accepted: float64, non-contiguous, lengths as int32
    assert decoder.decode(lp.double().transpose(0, 1).contiguous().transpose(0, 1), lengths.int()) == greedy


def test_beam_search_output_has_single_spaces_and_no_padding():
    path = ["|", "|", B, "a", "|", "|", B, "|", "b", "|", B, "|"]
    decoder = BeamSearchDecoder(VOCAB, beam_size=4)
    assert decoder.decode(posteriors(path)[None]) == ["a b"]
    assert decoder.decode(posteriors([B, "|", B])[None]) == [""]
    lp, lengths = batch(posteriors(["a"]), posteriors(["b", B, "c"]))
    lengths[0] = 0
    assert decoder.decode(lp, lengths) == ["", "bc"]


def test_lexicon_without_lm_restricts_words_and_keeps_the_last_word(tmp_path):
    # the last word ends without "|" and its last letter spans several frames, as CTC models emit it
    lp = posteriors(frames_for("das haus ist", repeat=3)[:-1])[None]
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("das\nhaus\nist\n", encoding="utf-8")
    assert BeamSearchDecoder(VOCAB, lexicon=lexicon).decode(lp) == ["das haus ist"]
    assert BeamSearchDecoder(VOCAB, lexicon=["Das", "HAUS", "ist"]).decode(lp) == ["das haus ist"]
    # "haus" is not a word: the closest path through lexicon words wins
    assert BeamSearchDecoder(VOCAB, lexicon=["das", "maus", "ist"]).decode(lp) == ["das maus ist"]


# --- beam search with LMs -------------------------------------------------------------------------------

def _haus_or_maus() -> torch.Tensor:
    """``das ?aus ist groß`` where "m" is slightly more likely than "h"; greedy reads "maus"."""
    frames = frames_for("das ")
    frames += [{"m": 0.5, "h": 0.4}, B] + frames_for("aus ist groß")[1:]
    return posteriors(frames)[None]


def _strasse_misspelt() -> torch.Tensor:
    """``die stra?e ist lang`` where "s" is slightly more likely than "ß"; greedy reads "strase"."""
    frames = frames_for("die stra")
    frames += [{"s": 0.5, "ß": 0.4}, B] + frames_for("e ist lang")[1:]
    return posteriors(frames)[None]


def test_word_lm_picks_in_domain_word_over_acoustically_preferred_one(word_lm):
    lp = _haus_or_maus()
    assert greedy_decode(lp, None, VOCAB) == ["das maus ist groß"]
    words = sorted({w for s in CORPUS for w in s.split()})
    # both "haus" and "maus" are words: without the LM the acoustics decide, with it the context "das"
    assert BeamSearchDecoder(VOCAB, lexicon=words).decode(lp) == ["das maus ist groß"]
    decoder = BeamSearchDecoder(VOCAB, lm_path=word_lm, lm_weight=0.5)
    assert decoder.has_lm and decoder.uses_lexicon and set(decoder.lexicon_words) == set(words)  # LM's vocabulary
    assert decoder.decode(lp) == ["das haus ist groß"]


def test_word_lm_corrects_a_misspelling(word_lm):
    lp = _strasse_misspelt()
    assert greedy_decode(lp, None, VOCAB) == ["die strase ist lang"]
    assert BeamSearchDecoder(VOCAB, beam_size=16).decode(lp) == ["die strase ist lang"]
    assert BeamSearchDecoder(VOCAB, lm_path=word_lm).decode(lp) == ["die straße ist lang"]


def test_char_lm_in_lexicon_free_decoding(char_lm):
    decoder = BeamSearchDecoder(VOCAB, lm_path=char_lm, unit="char", lm_weight=0.5)
    assert decoder.has_lm and not decoder.uses_lexicon
    lp, lengths = batch(_haus_or_maus()[0], _strasse_misspelt()[0], posteriors(frames_for("ein boot")))
    assert greedy_decode(lp, lengths, VOCAB) == ["das maus ist groß", "die strase ist lang", "ein boot"]
    # the char LM fixes both ambiguous letters but, lexicon-free, still spells out an unseen word ("boot")
    assert decoder.decode(lp, lengths) == ["das haus ist groß", "die straße ist lang", "ein boot"]


def test_lm_weight_zero_follows_the_acoustics(word_lm, char_lm):
    lp = _haus_or_maus()
    assert BeamSearchDecoder(VOCAB, lm_path=word_lm, lm_weight=0.0).decode(lp) == ["das maus ist groß"]
    assert BeamSearchDecoder(VOCAB, lm_path=char_lm, unit="char", lm_weight=0.0).decode(lp) == ["das maus ist groß"]


# --- arguments and errors -------------------------------------------------------------------------------

def test_bad_arguments(tmp_path, char_lm):
    with pytest.raises(ValueError, match="unit"):
        BeamSearchDecoder(VOCAB, unit="phone")
    with pytest.raises(ValueError, match="lexicon"):
        BeamSearchDecoder(VOCAB, lm_path=char_lm, unit="char", lexicon=["das"])
    with pytest.raises(FileNotFoundError):
        BeamSearchDecoder(VOCAB, lm_path=tmp_path / "missing.arpa")
    with pytest.warns(UserWarning, match="word_score"):
        BeamSearchDecoder(VOCAB, word_score=1.0)
    with pytest.warns(UserWarning, match="skipped"):
        BeamSearchDecoder(VOCAB, lexicon=["das", "ça"])
    decoder = BeamSearchDecoder(VOCAB)
    with pytest.raises(ValueError, match="classes"):
        decoder.decode(torch.zeros(1, 3, len(VOCAB) + 1))
    with pytest.raises(ValueError, match="lengths"):
        decoder.decode(torch.zeros(1, 3, len(VOCAB)), torch.tensor([4]))


@pytest.mark.parametrize("unit", ["word", "char"])
def test_hypothesis_score_is_acoustic_plus_weighted_lm_score(word_lm, char_lm, unit):
    """The LM really scores our tokens: score = path log-prob + lm_weight * log10 P_LM + word_score * words."""
    text, weight, bonus = "die maus ist klein", 0.7, (0.25 if unit == "word" else 0.0)
    lm_path, order = (word_lm, 3) if unit == "word" else (char_lm, 6)
    path = frames_for(text)
    decoder = BeamSearchDecoder(VOCAB, lm_path=lm_path, unit=unit, lm_weight=weight, word_score=bonus)
    assert decoder.decode(posteriors(path)[None]) == [text]
    lp = posteriors(path)[None]
    if unit == "word":  # the frame appended so that the last word can end (log-prob 0 for "|")
        lp = torch.cat([lp, torch.full((1, 1, len(VOCAB)), -1e4)], dim=1)
        lp[0, -1, 1] = 0.0
    hyp = decoder._decoder(lp.contiguous(), torch.tensor([lp.shape[1]]))[0][0]
    acoustic = len(path) * math.log(0.98)
    lm = sentence_log10_prob(read_arpa(lm_path), lm_tokens(text, unit), order)
    assert hyp.score == pytest.approx(acoustic + weight * lm + bonus * len(text.split()), abs=1e-3)


@pytest.mark.parametrize("unit", ["word", "char"])
def test_reweighted_decoder_equals_a_freshly_built_one(word_lm, char_lm, unit):
    lm = word_lm if unit == "word" else char_lm
    # (words outside the lexicon, such as "boot", are left out: flashlight's choice among equally impossible
    # spellings is not stable even between two fresh decoders)
    lp, lengths = batch(_haus_or_maus()[0], _strasse_misspelt()[0], posteriors(frames_for("das haus ist alt")))
    base = BeamSearchDecoder(VOCAB, lm_path=lm, unit=unit, lm_weight=0.0, word_score=0.0)
    for weight, score in [(0.0, 0.0), (0.5, 0.0), (2.0, 1.0), (0.5, -2.0)]:
        if unit == "char" and score:
            continue
        fresh = BeamSearchDecoder(VOCAB, lm_path=lm, unit=unit, lm_weight=weight, word_score=score)
        again = base.reweighted(weight, score)
        assert again.decode(lp, lengths) == fresh.decode(lp, lengths), (weight, score)
        assert (again.lm_weight, again.word_score) == (weight, score)
    assert base.decode(lp, lengths)[0] == "das maus ist groß"  # the original keeps its weights
