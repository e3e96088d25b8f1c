"""Lhotse manifests: import (CutSet, or RecordingSet + SupervisionSet) and export, on real audio files.

The lhotse files are written and read by lhotse itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import Utterance, read_manifest, write_manifest
from speech_tl.prepare.lhotse_io import prepare_lhotse
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite

lhotse = pytest.importorskip("lhotse")
from lhotse import AudioSource, CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet  # noqa: E402

# id -> (file, offset, duration, text, speaker, language); offset None: the whole file
EXPECTED = {
    "a-1": ("a.wav", 0.1, 0.3, "HALLO WELT", "spk1", "de"),
    "a-2": ("a.wav", 0.5, 0.4, "grüße aus köln", "spk2", "de"),
    "b-1": ("b.flac", None, 0.6, "ZWEI", "spk1", "und"),  # no language: --lang
    "c-1": ("c.wav", None, 0.5, "DREI", "c-1", "en"),  # no speaker: the segment's id
}


@pytest.fixture
def corpus(tmp_path, make_tone) -> tuple[RecordingSet, SupervisionSet]:
    audio = tmp_path / "audio"
    recs = RecordingSet.from_recordings([
        Recording.from_file(make_tone(audio / "a.wav", seconds=1.0), recording_id="a"),
        Recording.from_file(make_tone(audio / "b.flac", seconds=0.6, freq=330), recording_id="b"),
        Recording.from_file(make_tone(audio / "c.wav", seconds=0.5, sr=8000), recording_id="c"),
    ])
    sups = SupervisionSet.from_segments([
        SupervisionSegment("a-1", "a", 0.1, 0.3, text="HALLO WELT", speaker="spk1", language="de"),
        SupervisionSegment("a-2", "a", 0.5, 0.4, text="grüße aus köln", speaker="spk2", language="de"),
        SupervisionSegment("b-1", "b", 0.0, 0.6, text="ZWEI", speaker="spk1"),
        SupervisionSegment("c-1", "c", 0.0, 0.5, text="DREI", language="en"),
    ])
    return recs, sups


def utterances(path: Path) -> dict[str, tuple]:
    return {u.id: (u.audio_path().resolve(), u.offset, u.duration, u.text, u.speaker, u.language)
            for u in read_manifest(path)}


def expected(audio: Path) -> dict[str, tuple]:
    return {k: ((audio / f).resolve(), off, pytest.approx(dur, abs=1e-3), text, spk, lang)
            for k, (f, off, dur, text, spk, lang) in EXPECTED.items()}


def rejected(out: Path, name: str = "lhotse_und") -> list[dict]:
    return [json.loads(x) for x in (out / f"{name}_rejected.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("layout", ["cuts", "trimmed-cuts", "sets"])
def test_import_lhotse_corpus(corpus, tmp_path, layout):
    recs, sups = corpus
    lh = tmp_path / "lhotse"
    lh.mkdir()
    if layout == "sets":
        recs.to_file(lh / "recordings.jsonl.gz")
        sups.to_file(lh / "supervisions.jsonl.gz")
        args = ["--recordings", str(lh / "recordings.jsonl.gz"), "--supervisions", str(lh / "supervisions.jsonl.gz")]
    else:
        cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)  # one cut per recording
        if layout == "trimmed-cuts":
            cuts = cuts.trim_to_supervisions(keep_overlapping=False)  # cut start = segment start
            assert any(c.start > 0 for c in cuts)
        cuts.to_file(lh / "cuts.jsonl.gz")
        args = [str(lh / "cuts.jsonl.gz")]
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", "lhotse", *args, "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "kept       4 utterances" in res.output
    assert utterances(out / "lhotse_und_all.jsonl") == expected(tmp_path / "audio")
    assert rejected(out) == []
    assert {u.id: u.sample_rate for u in read_manifest(out / "lhotse_und_all.jsonl")}["c-1"] == 8000
    res = CliRunner().invoke(main, ["prepare", "lhotse", *args, "--out-dir", str(out)])
    assert res.exit_code == 0 and "already prepared" in res.output, res.output


def test_sources_that_are_not_files_are_rejected(corpus, tmp_path, make_tone):
    recs, sups = corpus
    b = str(tmp_path / "audio" / "b.flac")
    odd = [
        Recording("piped", [AudioSource("command", [0], f"sox {b} -t wav - |")], 16000, 9600, 0.6),
        Recording("remote", [AudioSource("url", [0], "https://example.org/x.wav")], 16000, 9600, 0.6),
        # lhotse keeps bytes in memory (JSON cannot hold them): a hand-written manifest may still say "memory"
        Recording("inline", [AudioSource("memory", [0], "UklGRg==")], 16000, 9600, 0.6),
        Recording("two-files", [AudioSource("file", [0], b), AudioSource("file", [1], b)], 16000, 9600, 0.6),
    ]
    stereo = Recording.from_file(make_tone(tmp_path / "audio" / "stereo.wav", seconds=0.6, channels=2))
    odd_sups = [SupervisionSegment(f"{r.id}-1", r.id, 0.0, 0.6, text="X", speaker="s") for r in odd]
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings([*recs, *odd]),
                                 supervisions=SupervisionSet.from_segments([*sups, *odd_sups]))
    # one channel of a stereo file: speech-tl would mix both down
    left = MonoCut("stereo-0", 0.0, 0.6, channel=0, recording=stereo,
                   supervisions=[SupervisionSegment("stereo-1", stereo.id, 0.0, 0.6, 0, text="Y", speaker="s")])
    cuts = CutSet.from_cuts([*cuts, left])
    cuts.to_file(tmp_path / "cuts.jsonl")
    out = tmp_path / "out"
    result = prepare_lhotse(tmp_path / "cuts.jsonl", out, workers=1)
    assert set(utterances(out / "lhotse_und_all.jsonl")) == set(EXPECTED)
    rej = {r["id"]: r for r in rejected(out)}
    assert {k: r["reason"] for k, r in rej.items()} == {
        "piped-1": "source not a file", "remote-1": "source not a file", "inline-1": "source not a file",
        "two-files-1": "several sources", "stereo-1": "channel selection"}
    assert "'command'" in rej["piped-1"]["detail"] and "sox" in rej["piped-1"]["detail"]
    assert "'url'" in rej["remote-1"]["detail"] and "'memory'" in rej["inline-1"]["detail"]
    assert all(r["source"] == "cuts.jsonl" and isinstance(r["line"], int) for r in rej.values())
    assert "source not a file" in result.summary()


def test_round_trip_and_to_lhotse_overwrite(tmp_path, make_tone):
    audio = tmp_path / "corpus" / "audio"
    make_tone(audio / "long.wav", seconds=1.2)
    make_tone(audio / "short.flac", seconds=0.4, sr=8000, freq=440)
    manifest = tmp_path / "corpus" / "m.jsonl"
    write_manifest(manifest, [  # relative audio paths, against the manifest's folder
        Utterance("u1", "audio/long.wav", 0.5, "EINS", "anna", "de", offset=0.2),
        Utterance("u2", "audio/long.wav", 0.4, "ZWEI", "bert", "de", offset=0.8),
        Utterance("u3", "audio/short.flac", 0.4, "DREI", "anna", "de", sample_rate=8000, extra={"gender": "f"}),
    ])
    out = tmp_path / "exp" / "cuts.jsonl.gz"
    res = CliRunner().invoke(main, ["manifest", "to-lhotse", str(manifest), str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["cuts.jsonl.gz"]  # no temporary file left

    # refused without --overwrite, and left as it was
    before = out.read_bytes()
    res = CliRunner().invoke(main, ["manifest", "to-lhotse", str(manifest), str(out)])
    assert res.exit_code == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(out) in line and "--overwrite" in line, line
    assert out.read_bytes() == before
    res = CliRunner().invoke(main, ["manifest", "to-lhotse", str(manifest), str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["cuts.jsonl.gz"]

    # lhotse reads it, audio included
    cuts = {c.id: c for c in CutSet.from_file(out)}  # read lazily from a .jsonl.gz
    assert sorted(cuts) == ["u1", "u2", "u3"]
    u2 = cuts["u2"]
    assert (u2.start, u2.duration, u2.recording.sampling_rate) == (pytest.approx(0.8), pytest.approx(0.4), 16000)
    (sup,) = u2.supervisions
    assert (sup.text, sup.speaker, sup.language, sup.start) == ("ZWEI", "bert", "de", 0.0)
    assert cuts["u3"].supervisions[0].gender == "f"
    samples = u2.load_audio()
    assert samples.shape == (1, 6400)
    wav, _ = sf.read(audio / "long.wav", dtype="float32")
    np.testing.assert_allclose(samples[0], wav[12800:19200], atol=1e-4)

    # and back: the same utterances
    back = tmp_path / "back"
    res = CliRunner().invoke(main, ["prepare", "lhotse", str(out), "--out-dir", str(back), "--lang", "de"])
    assert res.exit_code == 0, res.output
    assert utterances(back / "lhotse_de_all.jsonl") == utterances(manifest)
    assert {u.id: u.extra for u in read_manifest(back / "lhotse_de_all.jsonl")}["u3"] == {"gender": "f"}
    assert rejected(back, "lhotse_de") == []
    copy = tmp_path / "exp" / "copy.jsonl.gz"
    copy.write_bytes(out.read_bytes())
    assert_other_parameters_refused_unless_overwrite(
        ["prepare", "lhotse", str(copy), "--out-dir", str(back), "--lang", "de"], back, back / "lhotse_de_all.jsonl")


def test_bad_inputs_are_one_error_line(tmp_path, corpus):
    recs, sups = corpus
    recs.to_file(tmp_path / "recordings.jsonl")
    (tmp_path / "junk.jsonl").write_text("{\"no\": \"lhotse\"}\n", encoding="utf-8")
    for args in (["--recordings", str(tmp_path / "recordings.jsonl")],  # no supervisions
                 [str(tmp_path / "junk.jsonl")]):
        res = CliRunner().invoke(main, ["prepare", "lhotse", *args, "--out-dir", str(tmp_path / "o")])
        assert res.exit_code == 1, res.output
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith("error: "), line
    res = CliRunner().invoke(main, ["manifest", "to-lhotse", str(tmp_path / "m.jsonl"), str(tmp_path / "x.json")])
    assert res.exit_code == 1 and res.stderr.startswith("error: ") and ".jsonl.gz" in res.stderr
