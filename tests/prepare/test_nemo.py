"""NeMo ASR manifests: import (prepare nemo) and export (manifest to-nemo), on real audio files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import Utterance, read_manifest, write_manifest
from speech_tl.prepare.nemo import export_nemo, prepare_nemo
from tests.overwrite_check import refused_unless_overwrite
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite


def write_nemo(path: Path, rows: list) -> Path:
    """Lines the way NeMo writes them: ``json.dumps(item)`` per line (ASCII escapes); str rows go in verbatim."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def rejected(out: Path, name: str = "nemo_und") -> list[dict]:
    return [json.loads(x) for x in (out / f"{name}_rejected.jsonl").read_text(encoding="utf-8").splitlines()]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def comparable(u: Utterance) -> tuple:
    return (str(u.audio_path().resolve()), u.text, u.speaker, u.language, round(u.duration, 3),
            None if u.offset is None else round(u.offset, 3))


def test_round_trip_through_nemo(tmp_path, make_tone):
    corpus = tmp_path / "corpus"
    make_tone(corpus / "audio" / "a.wav", seconds=0.6)
    make_tone(corpus / "audio" / "b.flac", seconds=0.45, sr=8000)
    make_tone(corpus / "long.wav", seconds=2.0)
    utts = [
        Utterance("a", "audio/a.wav", 0.6, "Grüße aus Köln", "anna", "de"),
        Utterance("b", "audio/b.flac", 0.45, "zweiter Satz, mit \"Zitat\"", "bert", "de", sample_rate=8000),
        Utterance("l1", "long.wav", 0.8, "erster Teil", "anna", "de", offset=0.0),
        Utterance("l2", "long.wav", 1.1, "zweiter Teil", "bert", "de", offset=0.8),
    ]
    write_manifest(corpus / "m.jsonl", utts)  # relative paths, resolved against the manifest's folder
    original = read_manifest(corpus / "m.jsonl")

    res = invoke("manifest", "to-nemo", corpus / "m.jsonl", tmp_path / "nemo.json")
    assert res.exit_code == 0 and "4 utterances" in res.output, res.output
    lines = [json.loads(x) for x in (tmp_path / "nemo.json").read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"audio_filepath": str((corpus / "audio" / "a.wav").resolve()), "duration": 0.6,
                        "text": "Grüße aus Köln", "speaker": "anna", "lang": "de"}
    assert [x.get("offset") for x in lines] == [None, None, 0.0, 0.8]
    assert all(Path(x["audio_filepath"]).is_absolute() for x in lines)

    out = tmp_path / "out"
    res = invoke("prepare", "nemo", tmp_path / "nemo.json", "--out-dir", out, "--lang", "de", "--workers", 1)
    assert res.exit_code == 0, res.output
    assert re.search(r"all\s+kept\s+4 utterances", res.output)
    again = read_manifest(out / "nemo_de_all.jsonl")
    assert not rejected(out, "nemo_de")
    assert sorted(map(comparable, again)) == sorted(map(comparable, original))
    assert {u.id for u in again} == {"a", "b", "long-00000000", "long-00000800"}
    assert {u.id: u.sample_rate for u in again}["b"] == 8000


def test_manifest_as_nemo_writes_it(tmp_path, make_tone):
    """Relative paths, offsets, NeMo's speaker/language field variants, and ids derived from file names."""
    data = tmp_path / "data"
    make_tone(data / "wav" / "s1" / "utt.wav", seconds=0.5)
    make_tone(data / "wav" / "s2" / "utt.wav", seconds=0.7)  # same stem: ids get line numbers
    make_tone(data / "session.wav", seconds=3.0)
    make_tone(data / "clip.wav", seconds=1.0)
    manifest = write_nemo(data / "train_manifest.json", [
        {"audio_filepath": "wav/s1/utt.wav", "duration": 0.5, "text": "straße eins", "speaker": 7},
        {"audio_filepath": "wav/s2/utt.wav", "duration": 0.7, "text": "zwei", "spk": "s2", "lang": "fr"},
        {"audio_filepath": str(data / "session.wav"), "offset": 0.25, "duration": 1.0, "text": "drei",
         "speaker_id": "sp"},
        {"audio_filepath": "session.wav", "offset": 1.5, "duration": 1.5, "text": "vier", "source_lang": "en"},
        {"audio_filepath": "clip.wav", "duration": 0.6, "text": "nur der Anfang"},  # NeMo reads 0 .. 0.6 s
        {"audio_filepath": "clip.wav", "duration": 1.02, "text": "ganz"},  # within 0.05 s: the whole file
    ])
    result = prepare_nemo(manifest, tmp_path / "out", language="de", workers=1)
    assert not result.rejected
    utts = {u.id: u for u in read_manifest(tmp_path / "out" / "nemo_de_all.jsonl")}
    assert {k: (u.text, u.speaker, u.language, u.offset, u.duration, u.audio_path().relative_to(data.resolve())
                .as_posix()) for k, u in utts.items()} == {
        "utt-line1": ("straße eins", "7", "de", None, pytest.approx(0.5), "wav/s1/utt.wav"),
        "utt-line2": ("zwei", "s2", "fr", None, pytest.approx(0.7), "wav/s2/utt.wav"),
        "session-00000250": ("drei", "sp", "de", 0.25, pytest.approx(1.0), "session.wav"),
        "session-00001500": ("vier", "session-00001500", "en", 1.5, pytest.approx(1.5), "session.wav"),
        "clip-line5": ("nur der Anfang", "clip-line5", "de", 0.0, pytest.approx(0.6), "clip.wav"),
        "clip-line6": ("ganz", "clip-line6", "de", None, pytest.approx(1.0), "clip.wav"),
    }
    assert all(u.sample_rate == 16000 for u in utts.values())


def test_bad_lines_are_rejected_with_file_and_line(tmp_path, make_tone):
    make_tone(tmp_path / "ok.wav", seconds=0.5)
    make_tone(tmp_path / "long.wav", seconds=1.0)
    manifest = write_nemo(tmp_path / "m.json", [
        {"audio_filepath": "ok.wav", "duration": 0.5, "text": "gut"},                        # 1 kept
        "{\"audio_filepath\": \"ok.wav\", \"duration\": 0.5,",                                 # 2 not JSON
        "",                                                                                    # 3 blank: skipped
        ["ok.wav", 0.5],                                                                       # 4 not an object
        {"duration": 0.5, "text": "ohne Datei"},                                               # 5 no audio_filepath
        {"audio_filepath": "ok.wav", "text": "ohne Dauer"},                                    # 6 no duration
        {"audio_filepath": "ok.wav", "duration": 0, "text": "null"},                           # 7 duration 0
        {"audio_filepath": "ok.wav", "duration": "0.5", "text": "Text statt Zahl"},            # 8 not a number
        {"audio_filepath": "gone.wav", "duration": 0.5, "text": "fehlt"},                      # 9 missing audio
        {"audio_filepath": "long.wav", "offset": 0.6, "duration": 0.8, "text": "zu lang"},     # 10 past the end
        {"audio_filepath": "long.wav", "duration": 2.5, "text": "Datei zu kurz"},              # 11 file too short
        {"audio_filepath": "ok.wav", "duration": 0.5, "text": "gut"},                          # 12 duplicate of 1
        {"audio_filepath": "long.wav", "duration": 1.0, "text": ""},                           # 13 empty text
        {"audio_filepath": "long.wav", "offset": -1, "duration": 0.5, "text": "negativ"},      # 14 negative offset
    ])
    result = prepare_nemo(manifest, tmp_path / "out", workers=1)
    (kept,) = result.splits["all"]
    assert (kept.id, kept.text) == ("ok", "gut")
    rej = {r["line"]: r for r in rejected(tmp_path / "out")}
    assert all(r["source"] == "m.json" for r in rej.values())
    assert {k: r["reason"] for k, r in rej.items()} == {
        2: "malformed line", 4: "malformed line", 5: "malformed line", 6: "malformed line", 7: "empty segment",
        8: "malformed line", 9: "missing audio file", 10: "segment outside audio", 11: "segment outside audio",
        12: "duplicate utterance", 13: "empty transcript", 14: "malformed line",
    }
    assert "not valid JSON" in rej[2]["detail"] and "audio_filepath" in rej[5]["detail"]
    assert "'duration'" in rej[6]["detail"] and "'0.5'" in rej[8]["detail"] and "line 1" in rej[12]["detail"]
    assert "1.00 s long" in rej[11]["detail"] and rej[9]["audio"].endswith("gone.wav")
    assert re.search(r"6\s+malformed line", result.summary()) and re.search(r"2\s+segment outside", result.summary())


def test_cli_missing_file_rerun_and_refusals(tmp_path, make_tone):
    res = invoke("prepare", "nemo", tmp_path / "nope.json", "--out-dir", tmp_path / "out")
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and "nope.json" in line and "not found" in line

    res = invoke("manifest", "to-nemo", tmp_path / "nope.jsonl", tmp_path / "x.json")
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and "nope.jsonl" in line

    make_tone(tmp_path / "a.wav", seconds=0.4)
    first = write_nemo(tmp_path / "one.json", [{"audio_filepath": "a.wav", "duration": 0.4, "text": "eins"}])
    other = write_nemo(tmp_path / "two.json", [{"audio_filepath": "a.wav", "duration": 0.4, "text": "zwei"}])
    out = tmp_path / "out"
    args = ["prepare", "nemo", str(first), "--out-dir", str(out), "--name", "mine", "--workers", "1"]
    assert invoke(*args).exit_code == 0
    assert "already prepared with the same parameters, reused" in invoke(*args).output
    assert_other_parameters_refused_unless_overwrite(
        ["prepare", "nemo", str(other), "--out-dir", str(out), "--name", "mine", "--workers", "1"],
        out, out / "mine_und_all.jsonl")
    assert [u.text for u in read_manifest(out / "mine_und_all.jsonl")] == ["zwei"]

    target = tmp_path / "export" / "n.json"
    target.parent.mkdir()
    refused_unless_overwrite(["manifest", "to-nemo", str(out / "mine_und_all.jsonl"), str(target)], [target],
                             target.parent)
    assert json.loads(target.read_text(encoding="utf-8"))["text"] == "zwei"
    res = invoke("manifest", "to-nemo", out / "mine_und_all.jsonl", out / "mine_und_all.jsonl", "--overwrite")
    assert res.exit_code == 1 and "also an input" in res.output


def test_export_is_atomic_and_keeps_nothing_half_written(tmp_path, make_tone):
    a = make_tone(tmp_path / "a.wav", seconds=0.3)
    path = export_nemo([Utterance("u", str(a), 0.3, "t", "s", "de")], tmp_path / "sub" / "n.json")
    assert json.loads(path.read_text(encoding="utf-8")) == {"audio_filepath": str(a.resolve()), "duration": 0.3,
                                                            "text": "t", "speaker": "s", "lang": "de"}
    assert [p.name for p in path.parent.iterdir()] == ["n.json"]  # no temporary file left
