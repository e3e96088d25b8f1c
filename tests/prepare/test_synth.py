"""Synthetic corpora: real espeak-ng/MBROLA/pico voices speaking a few sentences."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare.sentences import dictionary_sentences, file_sentences
from speech_tl.prepare.synth import ASR_VOICES_DE, plan_asr, plan_speakers, prepare_synth_asr, prepare_synth_speakers
from speech_tl.prepare.tts import ToolMissing, Voice, synthesize
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite, files_of

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("mbrola") and shutil.which("pico2wave")),
    reason="espeak-ng, mbrola and pico2wave not installed (`make system-deps` installs them)")

SENTENCES = [f"Das ist der {w} Satz für den Test." for w in
             ("erste", "zweite", "dritte", "vierte", "fünfte", "sechste", "siebte", "achte", "neunte", "zehnte",
              "elfte", "zwölfte", "letzte", "schöne", "große", "kleine", "neue", "alte", "gute", "lange")]


def test_plan_asr_keeps_test_voices_and_sentences_out_of_training():
    items = plan_asr(SENTENCES * 3, ASR_VOICES_DE, 100, seed=1)
    by_split = {s: [i for i in items if i.split == s] for s in ("train", "dev", "test")}
    assert {s: len(v) for s, v in by_split.items()} == {"train": 80, "dev": 10, "test": 10}
    train_voices = {i.voice for i in by_split["train"]}
    train_texts = {i.text for i in by_split["train"]}
    for held in ("dev", "test"):
        assert not train_voices & {i.voice for i in by_split[held]}
        assert not train_texts & {i.text for i in by_split[held]}
    assert [i.id for i in plan_asr(SENTENCES * 3, ASR_VOICES_DE, 100, seed=1)] == [i.id for i in items]


def test_plan_speakers_splits_by_speaker():
    voices = [Voice("espeak", f"en+m{i}", "en") for i in range(1, 8)] + [Voice("pico", "de-DE", "de")]
    texts = {"en": [f"Sentence number {i} here." for i in range(50)], "de": SENTENCES}
    items = plan_speakers(voices, texts, per_speaker=5, seed=0, num_test=2, num_dev=1)
    split_speakers = {s: {i.voice.id for i in items if i.split == s} for s in ("train", "dev", "test")}
    assert [len(split_speakers[s]) for s in ("train", "dev", "test")] == [5, 1, 2]
    assert not (split_speakers["train"] & split_speakers["test"])
    assert all(len({i.text for i in items if i.voice == v}) == 5 for v in voices)
    assert any(i.augment for i in items) and any(not i.augment for i in items)


def test_dictionary_sentences_are_clean_german():
    if not dictionary_sentences.__defaults__ or not __import__("pathlib").Path("/usr/share/trans/de-en").is_file():
        pytest.skip("trans-de-en not installed")
    sents = dictionary_sentences("de")
    assert len(sents) > 15000
    assert all(4 <= len(s.split()) <= 20 and s[-1] in ".!?" for s in sents)
    assert any("ß" in s or "ü" in s for s in sents)


def test_file_sentences_dedupes_and_skips_comments(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("# comment\nEins zwei drei vier.\n\nEins  zwei drei vier.\nFünf sechs.\n", encoding="utf-8")
    assert file_sentences(f) == ["Eins zwei drei vier.", "Fünf sechs."]
    (tmp_path / "e.txt").write_text("\n# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no sentences"):
        file_sentences(tmp_path / "e.txt")


def test_missing_voice_names_the_package(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ToolMissing, match="apt-get install libttspico-utils"):
        synthesize(Voice("pico", "de-DE", "de"), "Hallo Welt.")


@needs_tts
@pytest.mark.parametrize("voice", [Voice("espeak", "de+m1", "de"), Voice("mbrola", "mb-de2", "de"),
                                   Voice("pico", "de-DE", "de")])
def test_each_engine_speaks(voice):
    slow, sr = synthesize(voice, "Guten Morgen, wie geht es dir heute?", rate=0.8)
    fast, _ = synthesize(voice, "Guten Morgen, wie geht es dir heute?", rate=1.3)
    assert sr in (16000, 22050)
    assert 1.0 < slow.size / sr < 8.0
    assert fast.size < slow.size  # rate is honoured


@needs_tts
def test_synth_asr_writes_playable_disjoint_splits(tmp_path):
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    res = prepare_synth_asr(tmp_path / "out", num_utterances=30, sentences=sent, workers=2)
    assert not res.rejected
    parts = {s: read_manifest(tmp_path / "out" / f"synth-asr_de_{s}.jsonl") for s in ("train", "dev", "test")}
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [24, 3, 3]
    for utts in parts.values():
        for u in utts:
            info = sf.info(str(u.audio_path()))
            assert info.samplerate == 16000 and abs(info.duration - u.duration) < 1e-3
            data, _ = sf.read(str(u.audio_path()))
            assert 0.3 < abs(data).max() < 0.95  # normalised, never clipped
            assert u.language == "de" and u.text in SENTENCES
    assert not {u.speaker for u in parts["train"]} & {u.speaker for u in parts["test"]}
    assert not {u.text for u in parts["train"]} & {u.text for u in parts["test"]}
    again = prepare_synth_asr(tmp_path / "out", num_utterances=30, sentences=sent, workers=2)
    assert again.skipped


@needs_tts
def test_synth_asr_resumes_after_interruption(tmp_path):
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    prepare_synth_asr(tmp_path / "out", num_utterances=10, sentences=sent, workers=1)
    first = read_manifest(tmp_path / "out" / "synth-asr_de_train.jsonl")
    mtimes = {u.id: u.audio_path().stat().st_mtime_ns for u in first}
    first[0].audio_path().unlink()  # as if killed before this file was written
    (tmp_path / "out" / ".synth-asr_de.done").unlink()
    prepare_synth_asr(tmp_path / "out", num_utterances=10, sentences=sent, workers=1)
    second = read_manifest(tmp_path / "out" / "synth-asr_de_train.jsonl")
    assert [u.id for u in second] == [u.id for u in first]
    assert first[0].audio_path().is_file()
    assert all(u.audio_path().stat().st_mtime_ns == mtimes[u.id] for u in second[1:])


@needs_tts
def test_synth_speakers_small(tmp_path):
    res = prepare_synth_speakers(tmp_path, utterances_per_speaker=3, num_test_speakers=2, num_dev_speakers=1,
                                 max_speakers=8, workers=2)
    parts = {s: read_manifest(tmp_path / f"synth-speakers_mul_{s}.jsonl") for s in ("train", "dev", "test")}
    speakers = {s: {u.speaker for u in v} for s, v in parts.items()}
    usable = 8 - sum(r.reason == "voice unusable" for r in res.rejected)
    assert len(speakers["test"]) == 2 and len(speakers["dev"]) == 1 and len(speakers["train"]) == usable - 3
    assert not speakers["train"] & speakers["test"]
    assert all(len([u for v in parts.values() for u in v if u.speaker == s]) == 3
               for s in speakers["train"])
    assert {u.extra["domain"] for v in parts.values() for u in v} <= {"tts-espeak", "tts-mbrola", "tts-pico"}


def test_crosslingual_plan_gives_each_variant_both_languages_under_one_speaker():
    from speech_tl.manifest import Utterance
    from speech_tl.prepare.synth import cross_language_trials, plan_crosslingual

    texts = {"en": [f"english sentence {i}" for i in range(10)], "de": [f"deutscher Satz {i}" for i in range(10)]}
    items = plan_crosslingual(["m1", "f1", "klatt", "Andy"], texts, 3, seed=1, num_test=2)
    assert len(items) == 4 * 2 * 3
    by_speaker = {}
    for it in items:
        by_speaker.setdefault(it.speaker, set()).add((it.voice.language, it.split))
        assert it.voice.name.startswith(it.voice.language + "+") and it.text in texts[it.voice.language]
    assert set(by_speaker) == {"espeak-m1", "espeak-f1", "espeak-klatt", "espeak-Andy"}
    assert all({lang for lang, _ in v} == {"en", "de"} and len({s for _, s in v}) == 1 for v in by_speaker.values())
    assert sum(next(iter(v))[1] == "test" for v in by_speaker.values()) == 2
    assert plan_crosslingual(["m1", "f1", "klatt", "Andy"], texts, 3, seed=1, num_test=2) == items
    utts = [Utterance(id=f"{s}-{lang}", audio="x.wav", duration=1.0, text="", speaker=s, language=lang)
            for s in ("a", "b") for lang in ("en", "de")]
    assert sorted(cross_language_trials(utts)) == ["0 a-en b-de", "0 b-en a-de", "1 a-en a-de", "1 b-en b-de"]


@needs_tts
def test_synth_asr_realistic_channels_and_many_voices(tmp_path):
    """--channel realistic --voices many: train and dev through recorded-sounding channels, test clean and equal to
    the clean corpus' test set, ids prefixed so both corpora merge into one manifest."""
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    clean = prepare_synth_asr(tmp_path / "out", num_utterances=20, sentences=sent, workers=2)
    real = prepare_synth_asr(tmp_path / "out", num_utterances=20, sentences=sent, workers=2, channel="realistic",
                             voices="many", name="synth-asr-rm")
    assert not real.rejected and not clean.rejected
    rm = {s: read_manifest(tmp_path / "out" / f"synth-asr-rm_de_{s}.jsonl") for s in ("train", "dev", "test")}
    assert all("channel" in u.extra for s in ("train", "dev") for u in rm[s])
    assert not any("channel" in u.extra for u in rm["test"])
    assert all(u.id.startswith("synth-asr-rm-") for s in rm for u in rm[s])
    clean_test = read_manifest(tmp_path / "out" / "synth-asr_de_test.jsonl")
    assert [(u.text, u.speaker) for u in clean_test] == [(u.text, u.speaker) for u in rm["test"]]
    for u in rm["train"]:
        data, sr = sf.read(str(u.audio_path()))
        peak_db = 20 * np.log10(np.abs(data).max())
        # the level is set exactly before coding; a lossy codec moves the peak (up to 4 dB seen in 1,500 utterances)
        codec = "codec" in u.extra["channel"]
        assert sr == 16000 and peak_db == pytest.approx(u.extra["channel"]["level_db"], abs=5.0 if codec else 0.1)
        lead = data[: int(0.8 * u.extra["channel"]["pad"][0] * sr)]
        assert lead.size == 0 or np.abs(lead).max() > 0  # a noise floor, never digital silence


class Rendering(Exception):
    """Raised where a synthetic preparation would start looking at voices: it got past the output check."""


@pytest.mark.parametrize("command, corpus", [("synth-asr", "synth-asr_de"), ("synth-speakers", "synth-speakers_mul"),
                                             ("synth-crosslingual", "synth-xlang_mul")])
def test_synth_rerun_with_other_parameters_is_refused_before_any_voice_speaks(tmp_path, monkeypatch, command, corpus):
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / f"{corpus}_train.jsonl"
    manifest.write_text("{}\n")
    (out / f".{corpus}.done").write_text(json.dumps({"params": {"seed": 99}, "files": {"train": str(manifest)}}))
    (out / f"{corpus}_test_trials.txt").write_text("1 a b\n")

    def rendering(*args, **kwargs):
        raise Rendering

    monkeypatch.setattr("speech_tl.prepare.synth.usable_voices", rendering)
    before = files_of(out)
    res = CliRunner().invoke(main, ["prepare", command, "--out-dir", str(out)])
    assert res.exit_code == 1, res.output
    assert str(manifest) in res.output and "--overwrite" in res.output and "seed: 99 -> 0" in res.output
    assert files_of(out) == before
    for flag in ("--overwrite", "--force"):
        res = CliRunner().invoke(main, ["prepare", command, "--out-dir", str(out), flag])
        assert isinstance(res.exception, Rendering), res.output


@needs_tts
def test_synth_asr_rerun_with_other_parameters_needs_overwrite(tmp_path):
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    out = tmp_path / "out"
    args = ["prepare", "synth-asr", "--out-dir", str(out), "--sentences", str(sent), "--workers", "2"]
    res = CliRunner().invoke(main, [*args, "--num-utterances", "10"])
    assert res.exit_code == 0, res.output
    res = assert_other_parameters_refused_unless_overwrite([*args, "--num-utterances", "20"], out,
                                                           out / "synth-asr_de_train.jsonl")
    assert len(read_manifest(out / "synth-asr_de_train.jsonl")) == 16


@needs_tts
def test_synth_asr_rerun_with_same_parameters_is_reused_and_says_so(tmp_path):
    """recipes/demo/run.sh, then recipes/asr_de/run.sh: the same `prepare synth-asr` into the same manifests/ is
    reused, not redone, and its log line names the manifest and says why; other parameters stop it, naming them."""
    sent = tmp_path / "sentences.txt"
    sent.write_text("\n".join(SENTENCES), encoding="utf-8")
    out = tmp_path / "manifests"
    args = ["prepare", "synth-asr", "--out-dir", str(out), "--sentences", str(sent), "--workers", "2"]
    first = CliRunner().invoke(main, [*args, "--num-utterances", "10"])
    assert first.exit_code == 0 and "already prepared" not in first.output, first.output
    train = out / "synth-asr_de_train.jsonl"

    def everything() -> dict[str, tuple[bytes, int]]:  # manifests, done-marker and audio, with their mtimes
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}

    before = everything()
    assert any(p.endswith(".wav") for p in before)
    again = CliRunner().invoke(main, [*args, "--num-utterances", "10"])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0] == (f"synth-asr (de): {train} (and 3 more file(s)): already prepared with the "
                                            "same parameters, reused (use --force to redo)")
    # the split lines follow as after a preparation: what is there, and where
    assert [line.split()[0] for line in again.output.splitlines()[1:4]] == ["train", "dev", "test"]
    assert everything() == before

    other = CliRunner().invoke(main, [*args, "--num-utterances", "20"])
    assert other.exit_code == 1, other.output
    (line,) = other.output.strip().splitlines()
    assert line == (f"error: {train} (and 3 more file(s)): synth-asr (de) was prepared here with other parameters "
                    "(num_utterances: 10 -> 20); give --overwrite to replace it, or another --out-dir")
    assert everything() == before
