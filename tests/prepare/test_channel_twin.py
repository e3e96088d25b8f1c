"""`prepare channel`: the phone twin of a manifest, one seeded call per utterance at 8 kHz, written once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.channel import CODECS, codecs
from speech_tl.channel.codecs import codec_available
from speech_tl.cli import main
from speech_tl.errors import InputError, OutputExistsError
from speech_tl.manifest import Utterance, read_manifest, write_manifest
from speech_tl.prepare.channel_twin import prepare_channel_twin
from tests.channel.speech import SR, one_torch_thread, speech_clips  # noqa: F401
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite

needs_codecs = pytest.mark.skipif(any(codec_available(c) for c in CODECS),
                                  reason="; ".join(filter(None, (codec_available(c) for c in CODECS))))
needs_mulaw = pytest.mark.skipif(codec_available("mulaw") is not None, reason=str(codec_available("mulaw")))

TEXTS = ["Guten Morgen.", "Wie geht es dir?", "Das Wetter ist schön.", "Bis morgen.", "Ich rufe später an.",
         "Der Zug ist pünktlich.", "Wo ist der Bahnhof?", "Danke schön.", "Heute nicht.", "Gute Nacht.",
         "Bitte warten.", "Alles klar."]


def corpus(folder: Path, n: int, seconds: float = 2.0, lines: dict[int, str] | None = None) -> Path:
    """A manifest of ``n`` utterances, 16 kHz WAVs of real speech (Common Voice when ../shared is there, see
    tests/channel/speech.py) written with soundfile; ``lines``: audio paths to use instead on those lines (1-based)."""
    clips, _ = speech_clips(4, seconds)
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for i in range(n):
        wav = folder / "wav" / f"u{i}.wav"
        wav.parent.mkdir(exist_ok=True)
        sf.write(str(wav), clips[i % len(clips)].numpy(), SR, subtype="PCM_16")
        audio = (lines or {}).get(i + 1, str(wav))
        utts.append(Utterance(id=f"utt-{i:02d}", audio=audio, duration=clips[i % len(clips)].numel() / SR,
                              text=TEXTS[i % len(TEXTS)], speaker=f"spk{i % 3}", language="de",
                              extra={"gender": "female" if i % 2 else "male"}))
    manifest = folder / "corpus.jsonl"
    write_manifest(manifest, utts, relative=False)
    return manifest


def wav_bytes(twin: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(twin.with_name(twin.stem + "_audio").glob("*.wav"))}


@needs_codecs
def test_twin_keeps_the_utterances_and_writes_8khz_calls(tmp_path):
    manifest = corpus(tmp_path / "src", 4)
    out = tmp_path / "twin" / "phone.jsonl"
    res = prepare_channel_twin(manifest, out, seed=1, workers=1)
    assert not res.skipped and not res.rejected
    src, twin = read_manifest(manifest), read_manifest(out)
    assert [(u.id, u.text, u.speaker, u.language) for u in twin] == [(f"{u.id}-phone", u.text, u.speaker, u.language)
                                                                      for u in src]
    assert [u.id for u in res.splits["twin"]] == [f"{u.id}-phone" for u in src]
    assert [u.extra["source_id"] for u in res.splits["twin"]] == [u.id for u in src]
    for s, u in zip(src, twin, strict=True):
        assert u.sample_rate == 8000 and u.extra["gender"] == s.extra["gender"] and u.extra["domain"] == "phone"
        assert u.extra["channel"]["kind"] == "phone" and u.extra["channel"]["codec"]["name"] in CODECS
        assert u.extra["source_audio"] == str(s.audio_path())
        assert u.audio_path().parent == out.with_name("phone_audio") and u.audio_path().is_file()
        info = sf.info(str(u.audio_path()))
        assert info.samplerate == 8000 and info.channels == 1
        assert info.frames == s.duration * SR // 2 and u.duration == pytest.approx(s.duration, abs=1e-3)
        data, _ = sf.read(str(u.audio_path()))
        assert 0.01 < np.abs(data).max() <= 1.0
    assert len({json.dumps(u.extra["channel"], sort_keys=True) for u in twin}) == 4  # a draw per utterance
    assert out.with_name("phone_rejected.jsonl").read_text() == ""
    assert json.loads(out.with_name(".phone.jsonl.done").read_text())["params"]["seed"] == 1
    # the same parameters again: skipped, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in out.parent.rglob("*") if p.is_file()}
    again = prepare_channel_twin(manifest, out, seed=1, workers=1)
    assert again.skipped and [u.id for u in again.splits["twin"]] == [f"{u.id}-phone" for u in src]
    assert {p: p.stat().st_mtime_ns for p in out.parent.rglob("*") if p.is_file()} == before


@needs_mulaw
def test_same_seed_same_bytes_other_seed_other_calls(tmp_path):
    """Two outputs, the same seed: byte-identical WAVs (rendered inline and by 2 worker processes); another seed
    draws other calls."""
    manifest = corpus(tmp_path / "src", 9, seconds=1.0)
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    prepare_channel_twin(manifest, a, seed=5, codec="mulaw", workers=1)
    prepare_channel_twin(manifest, b, seed=5, codec="mulaw", workers=2)
    prepare_channel_twin(manifest, c, seed=6, codec="mulaw", workers=1)
    assert len(wav_bytes(a)) == 9 and wav_bytes(a) == wav_bytes(b)
    assert [u.extra["channel"] for u in read_manifest(a)] == [u.extra["channel"] for u in read_manifest(b)]
    assert all(u.extra["channel"]["codec"] == {"name": "mulaw", "kbps": 64.0} for u in read_manifest(a))
    assert set(wav_bytes(a).values()).isdisjoint(wav_bytes(c).values())
    assert [u.extra["channel"] for u in read_manifest(a)] != [u.extra["channel"] for u in read_manifest(c)]


@needs_mulaw
def test_other_parameters_are_refused_unless_overwrite_which_leaves_only_the_new_calls(tmp_path):
    manifest = corpus(tmp_path / "src", 4, seconds=1.0)
    out = tmp_path / "phone.jsonl"
    prepare_channel_twin(manifest, out, seed=1, codec="mulaw", workers=1)
    first = wav_bytes(out)
    with pytest.raises(OutputExistsError, match=r"other parameters \(seed: 1 -> 2\).*--overwrite"):
        prepare_channel_twin(manifest, out, seed=2, codec="mulaw", workers=1)
    assert wav_bytes(out) == first and len(read_manifest(out)) == 4
    with pytest.raises(OutputExistsError, match="max_utterances: None -> 2"):
        prepare_channel_twin(manifest, out, seed=1, codec="mulaw", workers=1, max_utterances=2)
    res = prepare_channel_twin(manifest, out, seed=2, codec="mulaw", workers=1, overwrite=True)
    assert not res.skipped
    second = wav_bytes(out)
    assert len(second) == 4 and set(second).isdisjoint(first)  # the seed-1 calls are gone
    assert {u.audio_path().name for u in read_manifest(out)} == set(second)
    assert prepare_channel_twin(manifest, out, seed=2, codec="mulaw", workers=1).skipped
    # --force redoes it with the same parameters and keeps the same files
    assert not prepare_channel_twin(manifest, out, seed=2, codec="mulaw", workers=1, force=True).skipped
    assert wav_bytes(out) == second


@needs_mulaw
def test_unreadable_or_missing_audio_is_rejected_with_its_line(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    manifest = corpus(tmp_path / "src", 4, seconds=1.0, lines={2: str(tmp_path / "gone.wav"), 4: str(junk)})
    out = tmp_path / "phone.jsonl"
    res = prepare_channel_twin(manifest, out, seed=0, codec="mulaw", workers=1)
    rejected = [json.loads(line) for line in out.with_name("phone_rejected.jsonl").read_text().splitlines()]
    # only the two bad files' own lines: a good utterance that drew a bad one as a babble talker mixes the others
    assert {(r["line"], r["id"], r["audio"]) for r in rejected} == {(2, "utt-01", str(tmp_path / "gone.wav")),
                                                                    (4, "utt-03", str(junk))}
    assert all(r["reason"] == "unreadable audio" and r["source"] == str(manifest) for r in rejected)
    by_id = {r["id"]: r["detail"] for r in rejected}
    assert "gone.wav" in by_id["utt-01"] and "not found" in by_id["utt-01"] and "junk.wav" in by_id["utt-03"]
    assert {r.id for r in res.rejected} == set(by_id)
    kept = {u.extra["source_id"] for u in read_manifest(out)}
    assert "utt-00" in kept and kept | set(by_id) == {f"utt-{i:02d}" for i in range(4)}  # none dropped silently
    assert not kept & set(by_id)
    for u in read_manifest(out):  # the recorded draw names only talkers that were mixed
        assert not set((u.extra["channel"]["noise"]).get("talkers", [])) & {"utt-01", "utt-03"}


@needs_mulaw
def test_max_utterances_takes_a_seeded_sample_in_manifest_order(tmp_path):
    manifest = corpus(tmp_path / "src", 6, seconds=1.0)
    res = CliRunner().invoke(main, ["prepare", "channel", str(manifest), "--out", str(tmp_path / "two.jsonl"),
                                    "--codec", "mulaw", "--max-utterances", "2", "--seed", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    two = read_manifest(tmp_path / "two.jsonl")
    ids = [u.id for u in read_manifest(manifest)]
    assert len(two) == 2 and [u.extra["source_id"] for u in two] == [i for i in ids if i in
                                                                     {u.extra["source_id"] for u in two}]
    assert len(wav_bytes(tmp_path / "two.jsonl")) == 2 and "kept       2 utterances" in res.output
    again = prepare_channel_twin(manifest, tmp_path / "again.jsonl", seed=3, codec="mulaw", max_utterances=2,
                                 workers=1)
    assert [u.id for u in again.splits["twin"]] == [u.id for u in two]
    with pytest.raises(InputError, match="at least 1"):
        prepare_channel_twin(manifest, tmp_path / "none.jsonl", max_utterances=0)


@needs_mulaw
def test_babble_talkers_are_other_utterances(tmp_path):
    manifest = corpus(tmp_path / "src", 12, seconds=1.0)
    ids = {u.id for u in read_manifest(manifest)}
    out = tmp_path / "twin.jsonl"
    prepare_channel_twin(manifest, out, seed=0, codec="mulaw", babble=manifest, workers=1)
    babbles = [u for u in read_manifest(out) if u.extra["channel"]["noise"]["kind"] == "babble"]
    assert len(babbles) >= 3  # ~30 % of calls (7 of these 12)
    for u in babbles:
        talkers = u.extra["channel"]["noise"]["talkers"]
        assert u.id not in talkers and set(talkers) <= ids and 3 <= len(talkers) <= 6
    # --babble MANIFEST: the talkers come from that manifest only
    other = corpus(tmp_path / "other", 8, seconds=1.0)
    other_ids = {u.id: u for u in read_manifest(other)}
    prepare_channel_twin(manifest, tmp_path / "ob.jsonl", seed=0, codec="mulaw", babble=other, workers=1)
    talkers = [t for u in read_manifest(tmp_path / "ob.jsonl") if u.extra["channel"]["noise"]["kind"] == "babble"
               for t in u.extra["channel"]["noise"]["talkers"]]
    assert talkers and set(talkers) <= set(other_ids)


@needs_mulaw
def test_babble_talkers_speak_the_callers_language_unless_any(tmp_path):
    """A bilingual manifest: by default a German call's babble is German talkers and a Dutch call's Dutch ones;
    --babble-language any draws from both. The choice is one of the twin's parameters (a rerun with the other is
    refused without --overwrite). A one-language manifest draws the same either way, so its finished twin stays
    valid (the parameter is recorded only where it changes draws)."""
    manifest = corpus(tmp_path / "src", 24, seconds=1.0)
    utts = read_manifest(manifest)
    for u in utts[12:]:
        u.language = "nl"
    write_manifest(manifest, utts, relative=False)
    language = {u.id: u.language for u in utts}

    def babble_languages(out: Path) -> list[tuple[str, set[str]]]:
        return [(u.language, {language[t] for t in u.extra["channel"]["noise"]["talkers"]})
                for u in read_manifest(out) if u.extra["channel"]["noise"]["kind"] == "babble"]

    prepare_channel_twin(manifest, tmp_path / "same.jsonl", seed=0, codec="mulaw", workers=1)
    same = babble_languages(tmp_path / "same.jsonl")
    assert {lang for lang, _ in same} == {"de", "nl"}
    assert all(talkers == {lang} for lang, talkers in same)
    prepare_channel_twin(manifest, tmp_path / "any.jsonl", seed=0, codec="mulaw", workers=1, babble_language="any")
    mixed = babble_languages(tmp_path / "any.jsonl")
    assert any(len(talkers) == 2 for _, talkers in mixed)
    with pytest.raises(OutputExistsError, match="other parameters"):
        prepare_channel_twin(manifest, tmp_path / "same.jsonl", seed=0, codec="mulaw", workers=1,
                             babble_language="any")
    with pytest.raises(InputError, match="--babble-language must be one of same, any"):
        prepare_channel_twin(manifest, tmp_path / "x.jsonl", babble_language="german")

    # lines without a language draw from the whole pool, and an unlabelled group is no language of its own
    for u in utts[:6]:
        u.language = ""
    write_manifest(manifest, utts, relative=False)
    prepare_channel_twin(manifest, tmp_path / "unlabelled.jsonl", seed=0, codec="mulaw", workers=1)
    language = {u.id: u.language for u in utts}
    drawn = babble_languages(tmp_path / "unlabelled.jsonl")
    assert all(talkers == {"nl"} for lang, talkers in drawn if lang == "nl")
    assert any(len(talkers) > 1 for lang, talkers in drawn if lang != "nl")

    german = corpus(tmp_path / "de", 8, seconds=1.0)
    a = prepare_channel_twin(german, tmp_path / "de.jsonl", seed=0, codec="mulaw", workers=1, babble_language="any")
    b = prepare_channel_twin(german, tmp_path / "de.jsonl", seed=0, codec="mulaw", workers=1)
    assert not a.skipped and b.skipped


def test_bad_arguments_are_input_errors(tmp_path):
    manifest = corpus(tmp_path / "src", 1, seconds=1.0)
    with pytest.raises(InputError, match="--channel must be one of phone"):
        prepare_channel_twin(manifest, tmp_path / "t.jsonl", channel="radio")
    with pytest.raises(InputError, match="--codec must be one of"):
        prepare_channel_twin(manifest, tmp_path / "t.jsonl", codec="g729")
    with pytest.raises(InputError, match="must end in .jsonl"):
        prepare_channel_twin(manifest, tmp_path / "t.json")
    with pytest.raises(InputError, match="cannot replace its own source manifest"):
        prepare_channel_twin(manifest, manifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_missing_codec_is_an_error_and_writes_nothing(tmp_path, monkeypatch):
    """An ffmpeg without libgsm: `prepare channel --codec gsm` exits with an error naming the codec, and writes no
    twin (no clean copies passed off as GSM calls); the usual mix needs GSM too."""
    monkeypatch.setattr(codecs, "_ffmpeg_encoders", lambda: frozenset({"pcm_mulaw", "pcm_alaw", "libopus",
                                                                        "libspeex"}))
    manifest = corpus(tmp_path / "src", 2, seconds=1.0)
    out = tmp_path / "twin" / "phone.jsonl"
    for extra in (["--codec", "gsm"], []):
        res = CliRunner().invoke(main, ["prepare", "channel", str(manifest), "--out", str(out), *extra])
        assert res.exit_code == 1, res.output
        (line,) = res.output.strip().splitlines()
        assert line.startswith("error: ") and "codec 'gsm'" in line and "libgsm" in line, line
        assert not out.parent.exists()


@needs_mulaw
def test_cli_rerun_with_another_seed_needs_overwrite(tmp_path):
    manifest = corpus(tmp_path / "src", 2, seconds=1.0)
    out = tmp_path / "twin" / "phone.jsonl"
    args = ["prepare", "channel", str(manifest), "--out", str(out), "--codec", "mulaw", "--workers", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "already prepared" in res.output, res.output
    assert_other_parameters_refused_unless_overwrite([*args, "--seed", "9"], out.parent, out)
    assert all(u.extra["channel"]["codec"]["name"] == "mulaw" for u in read_manifest(out))
    assert json.loads(out.with_name(".phone.jsonl.done").read_text())["params"]["seed"] == 9
