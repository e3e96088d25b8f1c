"""Plain-folder preparer: audio files with same-name .txt transcripts, speaker from a folder or a regex."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare import prepare_folder
from tests.ffmpeg_tools import encode, requires_ffmpeg

FSDD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fsdd" / "recordings"
FSDD_REGEX = r"^\d+_([a-z]+)_\d+$"


def say(audio: Path, text: str, make_tone, seconds: float = 0.4, **kw) -> Path:
    make_tone(audio, seconds=seconds, **kw)
    audio.with_suffix(".txt").write_text(text, encoding="utf-8")
    return audio


def rejected(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len({r["id"] for r in rows}) == len(rows)
    return {r["id"]: r for r in rows}


def build(root: Path, make_tone) -> None:
    say(root / "anna" / "a1.wav", "Guten Morgen, Anna!", make_tone, seconds=0.42)
    say(root / "anna" / "a2.flac", "  Zwei\tLeerzeichen \n und Zeilen.  \n", make_tone, seconds=0.31)
    say(root / "anna" / "a3.ogg", "Öl, Größe und Maß.", make_tone, seconds=0.5)
    say(root / "bernd" / "b1.mp3", "Hallo Bernd.", make_tone, seconds=0.6, sr=22050)
    make_tone(root / "bernd" / "b2.wav", seconds=0.3)                 # no transcript
    say(root / "bernd" / "b3.wav", "   \n", make_tone)                 # empty transcript
    (root / "bernd" / "b4.wma").write_bytes(b"\x30\x26\xb2\x75")  # Windows Media audio: not read
    (root / "bernd" / "b5.wav").write_bytes(b"not a wav at all")      # corrupt
    (root / "bernd" / "b5.txt").write_text("Kaputt.", encoding="utf-8")
    say(root / "top.wav", "Ohne Sprecherordner.", make_tone)         # no speaker folder
    make_tone(root / "anna" / "a1.flac", seconds=0.2)                # same id (and a1.txt) as a1.wav
    (root / "anna" / "notes.md").write_text("ignored: not audio")


def test_folder_with_transcripts(tmp_path, make_tone):
    root = tmp_path / "corpus"
    build(root, make_tone)
    out = tmp_path / "out"
    result = prepare_folder(root, out, language="de", name="mine", workers=1)

    assert sorted(p.name for p in out.glob("*.jsonl")) == ["mine_de_all.jsonl", "mine_de_rejected.jsonl"]
    utts = {u.id: u for u in read_manifest(out / "mine_de_all.jsonl")}
    assert {k: (u.speaker, u.text) for k, u in utts.items()} == {
        "anna-a1": ("anna", "Guten Morgen, Anna!"),
        "anna-a2": ("anna", "Zwei Leerzeichen und Zeilen."),
        "anna-a3": ("anna", "Öl, Größe und Maß."),
        "bernd-b1": ("bernd", "Hallo Bernd."),
    }
    # a1.flac and a1.wav share an id: the first in sorted path order wins, the other is rejected
    assert utts["anna-a1"].audio_path().name == "a1.flac"
    assert utts["anna-a1"].duration == pytest.approx(0.2, abs=1e-4)
    assert utts["anna-a2"].duration == pytest.approx(0.31, abs=1e-4)
    assert utts["anna-a3"].duration == pytest.approx(0.5, abs=1e-3)   # ogg/vorbis
    assert utts["bernd-b1"].duration == pytest.approx(0.6, abs=2e-3)  # mp3 (gapless header: exact in practice)
    assert utts["bernd-b1"].sample_rate == 22050
    assert all(u.language == "de" for u in utts.values())

    rej = rejected(out / "mine_de_rejected.jsonl")
    assert {k: r["reason"] for k, r in rej.items()} == {
        "bernd-b2": "no transcript",
        "bernd-b3": "empty transcript",
        "bernd-b4": "unsupported format",
        "bernd-b5": "unreadable audio",
        "top": "no speaker",
        "anna-a1": "duplicate id",
    }
    assert rej["bernd-b2"]["source"] == "bernd/b2.wav" and "b2.txt" in rej["bernd-b2"]["detail"]
    assert "convert" in rej["bernd-b4"]["detail"]
    assert rej["anna-a1"]["source"] == "anna/a1.wav"
    assert rej["anna-a1"]["detail"] == "id already used at anna/a1.flac"
    # every audio file is kept or rejected
    n_audio = sum(1 for p in root.rglob("*") if p.suffix in (".wav", ".flac", ".ogg", ".mp3", ".wma"))
    assert len(utts) + len(rej) == n_audio == 10
    summary = result.summary()
    assert summary.startswith("mine (de):") and re.search(r"all\s+kept\s+4 utterances", summary)
    assert re.search(r"rejected\s+6 rows", summary) and "no transcript" in summary


def test_non_utf8_transcript_is_rejected_not_fatal(tmp_path, make_tone):
    root = tmp_path / "corpus"
    say(root / "anna" / "ok.wav", "Schön.", make_tone)
    make_tone(root / "anna" / "latin1.wav")
    (root / "anna" / "latin1.txt").write_bytes("Grüße".encode("latin-1"))
    result = prepare_folder(root, tmp_path / "out", workers=1)
    assert [u.id for u in result.splits["all"]] == ["anna-ok"]
    (bad,) = result.rejected
    assert (bad.id, bad.source) == ("anna-latin1", "anna/latin1.wav")
    assert "latin1.txt" in bad.detail and "UTF-8" in bad.detail


def test_no_text_speaker_corpus(tmp_path, make_tone):
    root = tmp_path / "corpus"
    build(root, make_tone)
    result = prepare_folder(root, tmp_path / "out", require_text=False, workers=1)
    utts = {u.id: u for u in result.splits["all"]}
    assert utts["bernd-b2"].text == "" and utts["bernd-b3"].text == ""
    assert utts["anna-a1"].text == "Guten Morgen, Anna!"  # transcripts are still read when present
    assert {r.id: r.reason for r in result.rejected} == {"bernd-b4": "unsupported format",
                                                        "bernd-b5": "unreadable audio", "top": "no speaker",
                                                        "anna-a1": "duplicate id"}
    assert (tmp_path / "out" / "folder_und_all.jsonl").is_file()


def test_speaker_level_and_regex(tmp_path, make_tone):
    root = tmp_path / "digits"
    for name in ("0_jackson_0", "7_jackson_32", "3_theo_1", "9_nicolas_12"):
        make_tone(root / "recordings" / f"{name}.wav", seconds=0.25, sr=8000)
    make_tone(root / "recordings" / "README_clip.wav", seconds=0.25, sr=8000)
    out = tmp_path / "out"

    result = prepare_folder(root, out, speaker_regex=FSDD_REGEX, require_text=False, workers=1)
    assert {u.id: u.speaker for u in result.splits["all"]} == {
        "recordings-0_jackson_0": "jackson", "recordings-7_jackson_32": "jackson",
        "recordings-3_theo_1": "theo", "recordings-9_nicolas_12": "nicolas"}
    assert all(u.sample_rate == 8000 and u.duration == pytest.approx(0.25) for u in result.splits["all"])
    (nomatch,) = result.rejected
    assert nomatch.reason == "no speaker" and "--speaker-regex" in nomatch.detail

    by_level = prepare_folder(root, out, speaker_level=1, require_text=False, workers=1, force=True)
    assert {u.speaker for u in by_level.splits["all"]} == {"recordings"}
    assert len(by_level.splits["all"]) == 5
    one_each = prepare_folder(root, out, speaker_level=0, require_text=False, workers=1, force=True)
    assert all(u.speaker == u.id for u in one_each.splits["all"])
    too_deep = prepare_folder(root, out, speaker_level=2, require_text=False, workers=1, force=True)
    assert not too_deep.splits["all"]
    assert {r.reason for r in too_deep.rejected} == {"no speaker"}
    assert "fewer than 2 folder(s)" in too_deep.rejected[0].detail

    with pytest.raises(ValueError, match="needs a group"):
        prepare_folder(root, out, speaker_regex=r"^\d+_")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        prepare_folder(root / "nope", out)


def test_skip_force_and_cli(tmp_path, make_tone):
    root = tmp_path / "corpus"
    build(root, make_tone)
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["prepare", "folder", str(root), "--out-dir", str(out), "--lang", "de", "--workers", "1"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert re.search(r"all\s+kept\s+4 utterances", res.output) and "no transcript" in res.output
    res = runner.invoke(main, args)
    assert "already prepared with the same parameters, reused" in res.output
    # different parameters are a different preparation, not a skip: it would replace the manifests, so it is
    # refused (one line naming them, nothing touched) unless --overwrite, or --force, is given
    manifest = out / "folder_de_all.jsonl"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = runner.invoke(main, [*args, "--no-text"])
    assert res.exit_code == 1, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and str(manifest) in line and "--overwrite" in line
    assert "require_text: True -> False" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = runner.invoke(main, [*args, "--no-text", "--overwrite"])
    assert res.exit_code == 0 and "already prepared" not in res.output
    assert re.search(r"all\s+kept\s+6 utterances", res.output)
    res = runner.invoke(main, [*args, "--no-text", "--overwrite"])  # --overwrite keeps up-to-date outputs
    assert res.exit_code == 0 and "already prepared with the same parameters, reused" in res.output
    res = runner.invoke(main, [*args, "--force"])  # --force redoes, whatever the parameters were
    assert res.exit_code == 0 and "already prepared" not in res.output
    assert re.search(r"all\s+kept\s+4 utterances", res.output)
    res = runner.invoke(main, [*args, "--speaker-regex", "nogroup"])
    assert res.exit_code == 1 and "needs a group" in res.output


def test_real_free_spoken_digit_dataset(tmp_path):
    if not FSDD.is_dir():
        pytest.skip(f"Free Spoken Digit Dataset not found at {FSDD} (only present beside the repo in ../shared)")
    result = prepare_folder(FSDD, tmp_path / "out", language="en", name="fsdd", speaker_level=0,
                            speaker_regex=FSDD_REGEX, require_text=False)
    utts = read_manifest(tmp_path / "out" / "fsdd_en_all.jsonl")
    assert not result.rejected
    assert len(utts) == 3000
    per_speaker = Counter(u.speaker for u in utts)
    assert sorted(per_speaker) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert set(per_speaker.values()) == {500}
    assert {u.sample_rate for u in utts} == {8000}
    assert all(0.1 < u.duration < 2.5 for u in utts)
    assert all(u.audio_path().is_file() for u in utts[:50])
    assert {u.id.split("_")[0] for u in utts} == {str(d) for d in range(10)}


@requires_ffmpeg
def test_m4a_in_a_folder_is_read_through_ffmpeg(tmp_path, make_tone):
    root = tmp_path / "phone"
    encode(make_tone(tmp_path / "src.wav", seconds=0.7, sr=44100), root / "anna" / "memo.m4a")
    (root / "anna" / "memo.txt").write_text("Eine Sprachnotiz.", encoding="utf-8")
    (root / "anna" / "broken.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (root / "anna" / "broken.txt").write_text("Kaputt.", encoding="utf-8")
    result = prepare_folder(root, tmp_path / "out", workers=1)
    (u,) = result.splits["all"]
    assert (u.id, u.text, u.sample_rate, u.duration) == ("anna-memo", "Eine Sprachnotiz.", 44100,
                                                         pytest.approx(0.7, abs=1e-3))
    (bad,) = result.rejected
    assert (bad.id, bad.reason) == ("anna-broken", "unreadable audio") and "ffprobe" in bad.detail


def test_aiff_and_au_files_are_prepared(tmp_path):
    """libsndfile reads AIFF and Sun/NeXT AU: they are audio like WAV, not rejected as an unknown format."""
    import numpy as np
    import soundfile as sf

    from tests.conftest import tone

    root = tmp_path / "corpus" / "bert"
    root.mkdir(parents=True)
    for name, fmt in (("a.aiff", "AIFF"), ("b.aif", "AIFF"), ("c.au", "AU")):
        sf.write(root / name, tone(0.6, 22050), 22050, format=fmt, subtype="PCM_16")
        (root / name).with_suffix(".txt").write_text(f"Datei {name}.", encoding="utf-8")
    result = prepare_folder(tmp_path / "corpus", tmp_path / "out", workers=1)
    got = sorted((u.id, u.text, u.sample_rate, round(u.duration, 3)) for u in result.splits["all"])
    assert got == [("bert-a", "Datei a.aiff.", 22050, 0.6), ("bert-b", "Datei b.aif.", 22050, 0.6),
                   ("bert-c", "Datei c.au.", 22050, 0.6)]
    assert not result.rejected
    assert np.abs(sf.read(root / "c.au")[0] - tone(0.6, 22050)).max() < 1e-4
