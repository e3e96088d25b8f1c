"""Kaldi data directories: import (wav.scp, text, utt2spk, segments) and export, on real audio files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import Utterance, read_manifest
from speech_tl.prepare import export_kaldi, prepare_kaldi
from tests.ffmpeg_tools import requires_ffmpeg
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def rejected(out: Path, name: str = "kaldi_und") -> list[dict]:
    return [json.loads(x) for x in lines(out / f"{name}_rejected.jsonl")]


def assert_c_sorted(path: Path) -> None:
    keys = [x.split(" ", 1)[0] for x in lines(path)]
    assert keys == sorted(keys, key=str.encode), path.name
    assert len(set(keys)) == len(keys), path.name


@pytest.fixture
def plain_dir(tmp_path, make_tone) -> Path:
    """A data dir without segments: absolute, relative, piped, missing and tab-separated wav.scp entries."""
    audio = tmp_path / "audio"
    data = tmp_path / "data" / "train"
    make_tone(audio / "a1.wav", seconds=0.44)
    make_tone(data / "wavs" / "a2.flac", seconds=0.36)  # relative entry, resolved against the data dir
    make_tone(audio / "b5.wav", seconds=0.52, sr=8000)
    make_tone(audio / "b6.wav", seconds=0.3)
    write(data / "wav.scp", [
        f"spkA-utt1 {audio / 'a1.wav'}",                          # 1
        "spkA-utt2 wavs/a2.flac",                                 # 2
        f"spkB-utt3 sox {audio / 'b3.wav'} -t wav -r 16000 - |",  # 3 piped, its input missing: the command fails
        f"spkB-utt4 {audio / 'gone.wav'}",                        # 4 missing file
        f"spkB-utt5\t{audio / 'b5.wav'}",                         # 5 tab-separated (valid Kaldi)
        f"spkB-utt6 {audio / 'b6.wav'}",                          # 6 no line in text
        f"spkA-utt1 {audio / 'b6.wav'}",                          # 7 duplicate key
        "lonely",                                                 # 8 one field
    ])
    write(data / "text", ["spkA-utt1 HALLO WELT", "spkA-utt2 grüße aus   köln, straße!", "spkB-utt3 DREI",
                          "spkB-utt4 VIER", "spkB-utt5\tFÜNF"])
    write(data / "utt2spk", [f"spk{u[3]}-utt{u[-1]} spk{u[3]}" for u in
                             ("spkA-utt1", "spkA-utt2", "spkB-utt3", "spkB-utt4", "spkB-utt5", "spkB-utt6")])
    return data


def test_import_plain(plain_dir, tmp_path):
    out = tmp_path / "out"
    result = prepare_kaldi(plain_dir, out, workers=1)
    utts = {u.id: u for u in read_manifest(out / "kaldi_und_all.jsonl")}
    assert {k: (u.speaker, u.text) for k, u in utts.items()} == {
        "spkA-utt1": ("spkA", "HALLO WELT"),
        "spkA-utt2": ("spkA", "grüße aus   köln, straße!"),  # text kept verbatim
        "spkB-utt5": ("spkB", "FÜNF"),
    }
    assert utts["spkA-utt1"].duration == pytest.approx(0.44, abs=1e-4)
    assert utts["spkA-utt2"].audio_path() == plain_dir / "wavs" / "a2.flac"
    assert utts["spkA-utt2"].duration == pytest.approx(0.36, abs=1e-4)
    assert (utts["spkB-utt5"].sample_rate, utts["spkB-utt5"].duration) == (8000, pytest.approx(0.52, abs=1e-4))
    assert all(u.offset is None for u in utts.values())

    rej = {(r["source"], r["line"]): r for r in rejected(out)}
    assert {k: (r["reason"], r["id"]) for k, r in rej.items()} == {
        ("wav.scp", 3): ("wav.scp command failed", "spkB-utt3"),
        ("wav.scp", 4): ("missing audio file", "spkB-utt4"),
        ("wav.scp", 6): ("no transcript", "spkB-utt6"),
        ("wav.scp", 7): ("duplicate id", "spkA-utt1"),
        ("wav.scp", 8): ("malformed row", "lonely"),
    }
    assert "kaldiio could not read 'sox " in rej[("wav.scp", 3)]["detail"]
    assert "first on line 1" in rej[("wav.scp", 7)]["detail"]
    # every wav.scp line is accounted for
    assert len(utts) + len(rej) == len(lines(plain_dir / "wav.scp"))
    assert re.search(r"1\s+wav.scp command failed", result.summary())


def test_import_without_text_or_utt2spk(tmp_path, make_tone):
    data = tmp_path / "data"
    make_tone(tmp_path / "x.wav", seconds=0.5)
    write(data / "wav.scp", [f"rec1 {tmp_path / 'x.wav'}"])
    result = prepare_kaldi(data, tmp_path / "out", language="de", name="mine", workers=1)
    (u,) = result.splits["all"]
    assert (u.id, u.speaker, u.text, u.language) == ("rec1", "rec1", "", "de")
    assert (tmp_path / "out" / "mine_de_all.jsonl").is_file()
    with pytest.raises(FileNotFoundError, match="no wav.scp"):
        prepare_kaldi(tmp_path / "out", tmp_path / "out2")


@pytest.fixture
def segments_dir(tmp_path, make_tone) -> Path:
    audio = tmp_path / "audio"
    data = tmp_path / "data" / "seg"
    make_tone(audio / "long1.wav", seconds=2.0)
    make_tone(audio / "long2.flac", seconds=1.5)
    write(data / "wav.scp", [f"rec1 {audio / 'long1.wav'}", f"rec2 {audio / 'long2.flac'}",
                             f"rec3 ffmpeg -i {audio / 'x.mp4'} -f wav - |", f"rec4 {audio / 'unused.wav'}"])
    segs = [
        "u1 rec1 0.00 0.80",   # 1
        "u2 rec1 0.80 1.95",   # 2
        "u3 rec2 0.50 1.50",   # 3 ends exactly at the end of the file
        "u4 rec2 1.00 2.50",   # 4 past the end (1.5 s file)
        "u5 rec3 0 1",         # 5 piped recording whose command fails
        "u6 rec9 0 1",         # 6 unknown recording
        "u7 rec1 1.0 1.0",     # 7 empty
        "u8 rec1 a b",         # 8 not numbers
    ]
    write(data / "segments", segs)
    write(data / "text", [f"u{i} SATZ {i}" for i in range(1, 9)])
    write(data / "utt2spk", [f"u{i} {'sA' if i < 3 else 'sB'}" for i in range(1, 9)])
    return data


def test_import_segments(segments_dir, tmp_path):
    out = tmp_path / "out"
    prepare_kaldi(segments_dir, out, workers=1)
    utts = {u.id: u for u in read_manifest(out / "kaldi_und_all.jsonl")}
    assert {k: (u.offset, u.duration, u.speaker, u.text, Path(u.audio).name) for k, u in utts.items()} == {
        "u1": (0.0, pytest.approx(0.8), "sA", "SATZ 1", "long1.wav"),
        "u2": (0.8, pytest.approx(1.15), "sA", "SATZ 2", "long1.wav"),
        "u3": (0.5, pytest.approx(1.0), "sB", "SATZ 3", "long2.flac"),
    }
    rej = {r["id"]: r for r in rejected(out)}
    assert {k: (r["reason"], r["source"], r["line"]) for k, r in rej.items()} == {
        "u4": ("segment outside audio", "segments", 4),
        "u5": ("wav.scp command failed", "segments", 5),
        "u6": ("missing recording", "segments", 6),
        "u7": ("empty segment", "segments", 7),
        "u8": ("malformed row", "segments", 8),
    }
    assert "1.50 s long" in rej["u4"]["detail"]
    assert "rec9" in rej["u6"]["detail"]
    assert len(utts) + len(rej) == len(lines(segments_dir / "segments"))


def test_export_writes_sorted_tables(tmp_path, make_tone):
    a = make_tone(tmp_path / "a.wav", seconds=0.3)
    b = make_tone(tmp_path / "b.flac", seconds=0.4)
    utts = [
        Utterance("a-2", str(a), 0.3, "zwei", "a", "de"),
        Utterance("a-10", str(b), 0.4, "zehn Größe", "a", "de"),
        Utterance("B-1", str(a), 0.3, "eins", "B", "de"),
        Utterance("x7", str(b), 0.4, "ohne Präfix", "a_b", "de"),  # id gets the speaker prefix
    ]
    data = export_kaldi(utts, tmp_path / "kaldi")
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        assert_c_sorted(data / name)
    assert not (data / "segments").exists()
    assert lines(data / "utt2spk") == ["B-1 B", "a-10 a", "a-2 a", "a_b-x7 a_b"]  # C locale: upper case first
    assert lines(data / "text") == ["B-1 eins", "a-10 zehn Größe", "a-2 zwei", "a_b-x7 ohne Präfix"]
    assert lines(data / "spk2utt") == ["B B-1", "a a-10 a-2", "a_b a_b-x7"]
    assert lines(data / "wav.scp")[0] == f"B-1 {a.resolve()}"

    with pytest.raises(ValueError, match="has spaces"):
        export_kaldi([Utterance("u", str(a), 0.3, "t", "two words", "de")], tmp_path / "bad")
    with pytest.raises(ValueError, match="has spaces"):
        export_kaldi([Utterance("u 1", str(a), 0.3, "t", "s", "de")], tmp_path / "bad")


def key(u: Utterance) -> tuple:
    return (u.id, u.text, u.speaker, u.sample_rate)


def same_audio(a: Utterance, b: Utterance) -> None:
    """``b`` (read back from an export) has ``a``'s samples: its file, or the 16 kHz 16-bit WAV converted from it."""
    from speech_tl.audio import load_audio

    if a.audio_path().suffix == ".wav" and a.sample_rate == 16000:
        assert b.audio_path().resolve() == a.audio_path().resolve()  # a mono 16-bit WAV is named as it is
    else:
        assert b.audio_path().parent.name == "wav" and b.sample_rate == 16000
    np.testing.assert_allclose(load_audio(b.audio_path()), load_audio(a.audio_path()), rtol=0, atol=1e-4)


def test_round_trip_plain(plain_dir, tmp_path):
    first = prepare_kaldi(plain_dir, tmp_path / "m1", workers=1).splits["all"]
    manifest = read_manifest(tmp_path / "m1" / "kaldi_und_all.jsonl")
    export_kaldi(manifest, tmp_path / "exported")
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        assert_c_sorted(tmp_path / "exported" / name)
    # the FLAC is converted (Kaldi reads only WAV), and the 8 kHz WAV (one rate in a data dir: 16 kHz); the 16 kHz
    # WAVs are named where they are
    assert sorted(p.name for p in (tmp_path / "exported" / "wav").iterdir()) == ["a2.wav", "b5.wav"]
    again = prepare_kaldi(tmp_path / "exported", tmp_path / "m2", workers=1)
    assert not again.rejected
    assert {u.sample_rate for u in manifest} == {8000, 16000}
    assert {u.sample_rate for u in again.splits["all"]} == {16000}
    assert sorted(map(key, manifest)) == sorted(map(key, first))
    assert sorted(map(key, again.splits["all"])) == sorted((*key(u)[:3], 16000) for u in manifest)
    assert {u.id: u.duration for u in again.splits["all"]} == {u.id: u.duration for u in manifest}
    back = {u.id: u for u in again.splits["all"]}
    for u in manifest:
        same_audio(u, back[u.id])


def test_round_trip_segments(segments_dir, tmp_path):
    prepare_kaldi(segments_dir, tmp_path / "m1", workers=1)
    manifest = read_manifest(tmp_path / "m1" / "kaldi_und_all.jsonl")
    data = export_kaldi(manifest, tmp_path / "exported")
    assert_c_sorted(data / "segments")
    assert_c_sorted(data / "wav.scp")
    # speaker-prefixed ids, two recordings
    assert [x.split()[0] for x in lines(data / "segments")] == ["sA-u1", "sA-u2", "sB-u3"]
    assert len(lines(data / "wav.scp")) == 2
    again = {u.id: u for u in prepare_kaldi(data, tmp_path / "m2", workers=1).splits["all"]}
    assert set(again) == {f"{u.speaker}-{u.id}" for u in manifest}
    for u in manifest:
        v = again[f"{u.speaker}-{u.id}"]
        assert (v.text, v.speaker) == (u.text, u.speaker)
        assert v.offset == pytest.approx(u.offset, abs=1e-3)
        assert v.duration == pytest.approx(u.duration, abs=1e-3)
        same_audio(u, v)


def test_round_trip_speaker_corpus_without_text(tmp_path, make_tone):
    """Speaker-ID manifests have no transcripts; exporting them must not make re-import reject everything."""
    a = make_tone(tmp_path / "a.wav", seconds=0.3)
    b = make_tone(tmp_path / "b.wav", seconds=0.4)
    utts = [Utterance("id10001-v-1", str(a), 0.3, "", "id10001", "mul"),
            Utterance("id10002-v-1", str(b), 0.4, "", "id10002", "mul")]
    data = export_kaldi(utts, tmp_path / "exported")
    assert not (data / "text").exists()
    assert lines(data / "utt2spk") == ["id10001-v-1 id10001", "id10002-v-1 id10002"]
    again = prepare_kaldi(data, tmp_path / "m", language="mul", workers=1)
    assert not again.rejected
    assert sorted((u.id, u.speaker, u.text) for u in again.splits["all"]) == \
        [("id10001-v-1", "id10001", ""), ("id10002-v-1", "id10002", "")]


def test_cli_import_and_export(plain_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(main, ["prepare", "kaldi", str(plain_dir), "--out-dir", str(out), "--name", "train",
                               "--lang", "de", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "train (de):" in res.output and re.search(r"all\s+kept\s+3 utterances", res.output)
    assert "wav.scp command failed" in res.output
    res = runner.invoke(main, ["prepare", "kaldi", str(plain_dir), "--out-dir", str(out), "--name", "train",
                               "--lang", "de"])
    assert "already prepared with the same parameters, reused" in res.output
    other = tmp_path / "other"  # another data dir under the same name: it would replace the manifests
    shutil.copytree(plain_dir, other)
    assert_other_parameters_refused_unless_overwrite(["prepare", "kaldi", str(other), "--out-dir", str(out), "--name",
                                                      "train", "--lang", "de", "--workers", "1"],
                                                     out, out / "train_de_all.jsonl")
    res = runner.invoke(main, ["prepare", "kaldi", str(plain_dir), "--out-dir", str(out), "--name", "train",
                               "--lang", "de", "--force", "--workers", "1"])  # --force redoes with any parameters
    assert res.exit_code == 0 and "already prepared" not in res.output
    res = runner.invoke(main, ["manifest", "to-kaldi", str(out / "train_de_all.jsonl"), str(tmp_path / "k")])
    assert res.exit_code == 0 and "3 utterances" in res.output
    assert [x.split()[0] for x in lines(tmp_path / "k" / "utt2spk")] == ["spkA-utt1", "spkA-utt2", "spkB-utt5"]


def test_export_refuses_paths_kaldi_would_run_or_split_and_drops_stale_tables(tmp_path, make_tone):
    piped = make_tone(tmp_path / "x.wav", seconds=0.3).rename(tmp_path / "x.wav|")
    spaced = make_tone(tmp_path / "with space.wav", seconds=0.3)
    plain = make_tone(tmp_path / "plain.wav", seconds=0.3)
    for audio, why in ((piped, "ends in '|'"), (spaced, "whitespace")):
        with pytest.raises(ValueError, match=re.escape(why)):
            export_kaldi([Utterance("u", str(audio), 0.3, "t", "s", "de")], tmp_path / "bad")
    with pytest.raises(ValueError, match="line break"):
        export_kaldi([Utterance("u", str(plain), 0.3, "zwei\nZeilen", "s", "de")], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing written before the checks pass
    data = tmp_path / "kaldi"
    export_kaldi([Utterance("u", str(plain), 0.3, "mit Text", "s", "de", offset=0.0)], data)
    assert (data / "text").is_file() and (data / "segments").is_file()
    export_kaldi([Utterance("u", str(plain), 0.3, "", "s", "de")], data)  # a speaker corpus, whole files
    assert not (data / "text").exists() and not (data / "segments").exists()
    assert lines(data / "wav.scp") == [f"s-u {plain.resolve()}"]


def test_piped_and_archived_entries_are_read_through_kaldiio(tmp_path, make_tone):
    """A pipe (sox decoding a FLAC) and a WAV inside an .ark archive written by kaldiio: read once, written as
    WAV files beside the manifests, segments cut from them; the audio is what the commands give."""
    import kaldiio
    import numpy as np
    import soundfile as sf

    data = tmp_path / "data"
    flac = make_tone(tmp_path / "src" / "talk.flac", seconds=1.2)
    x = (0.25 * np.sin(np.arange(8000) / 7.0) * 32767).astype(np.int16)
    data.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{data / 'wav.ark'},{tmp_path / 'ark.scp'}", write_function="soundfile") as w:
        w("arch", (16000, x))
    archived = (tmp_path / "ark.scp").read_text().split()[1]
    write(data / "wav.scp", [f"piped sox {flac} -t wav - |", f"arch {archived}", "broken false |"])
    write(data / "segments", ["p1 piped 0.0 0.6", "p2 piped 0.6 1.2", "a1 arch 0 0.5", "b1 broken 0 1"])
    write(data / "utt2spk", ["p1 s1", "p2 s1", "a1 s2", "b1 s3"])
    out = tmp_path / "out"
    prepare_kaldi(data, out, workers=1)
    utts = {u.id: u for u in read_manifest(out / "kaldi_und_all.jsonl")}
    assert sorted(utts) == ["a1", "p1", "p2"]
    assert utts["p1"].audio_path() == out / "kaldi_und_audio" / "piped.wav" == utts["p2"].audio_path()
    assert (utts["p2"].offset, utts["p2"].duration) == (0.6, pytest.approx(0.6))
    piped, sr = sf.read(out / "kaldi_und_audio" / "piped.wav", dtype="float32")
    source, _ = sf.read(flac, dtype="float32")
    assert sr == 16000 and np.abs(piped - source).max() < 1e-3  # sox's 16-bit WAV of the FLAC
    stored, _ = sf.read(out / "kaldi_und_audio" / "arch.wav", dtype="float32")
    assert np.abs(stored - x / 32768.0).max() < 1e-6
    (bad,) = rejected(out)
    assert (bad["reason"], bad["id"], bad["source"]) == ("wav.scp command failed", "b1", "segments")


def snr_db(reference, decoded) -> float:
    reference, decoded = np.asarray(reference, np.float64), np.asarray(decoded, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - decoded) ** 2)))


@pytest.fixture
def compressed(tmp_path):
    """Audio Kaldi cannot read, written by soundfile (MP3 at 16 kHz, MP3 at 44.1 kHz stereo, FLAC, float WAV), a
    16-bit WAV at 8 kHz it reads but not at the data dir's rate, a 16-bit WAV at 16 kHz, and a manifest of them (two
    segments of one MP3). Returns the manifest and each utterance's signal before encoding, mono at 16 kHz
    (``(samples,)``)."""
    import soundfile as sf
    import torch

    from speech_tl.audio import resample
    from tests.tiny_asr import spell

    audio = tmp_path / "clips"
    audio.mkdir()
    signals, utts = {}, []
    for name, sr, channels, fmt, subtype in (("cv1.mp3", 16000, 1, "MP3", "MPEG_LAYER_III"),
                                              ("cv2.mp3", 44100, 2, "MP3", "MPEG_LAYER_III"),
                                              ("book.flac", 22050, 1, "FLAC", "PCM_16"),
                                              ("float.wav", 16000, 1, "WAV", "FLOAT"),
                                              ("phone.wav", 8000, 1, "WAV", "PCM_16"),  # Kaldi reads it, at 8 kHz
                                              ("plain.wav", 16000, 1, "WAV", "PCM_16")):
        x = spell("abcab cba", sr=sr, seed=len(signals))
        data = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
        sf.write(audio / name, data, sr, format=fmt, subtype=subtype)
        mono = torch.from_numpy(data.mean(axis=1) if channels == 2 else data)
        uid = name.split(".")[0]
        signals[uid] = resample(mono, sr, 16000).numpy() if name != "plain.wav" else x
        utts.append(Utterance(uid, str(audio / name), round(x.size / sr, 4), f"Satz {uid}", "spk", "de"))
    utts += [Utterance("seg1", str(audio / "cv1.mp3"), 0.5, "erster Teil", "spk", "de", offset=0.1),
             Utterance("seg2", str(audio / "cv1.mp3"), 0.4, "zweiter Teil", "spk", "de", offset=0.6)]
    return utts, signals


@pytest.mark.parametrize("mode", ["convert", pytest.param("pipe", marks=requires_ffmpeg)])
def test_compressed_audio_is_read_back_by_kaldiio(tmp_path, compressed, mode):
    """Kaldi reads only integer-PCM WAV, at one rate in a data dir: MP3, FLAC, float WAV and the 8 kHz WAV become
    converted WAVs or ffmpeg pipes, which kaldiio (Kaldi's formats in Python; it runs the pipes) reads back as the
    original audio at 16 kHz within MP3's tolerance; the 16 kHz 16-bit WAV is named as it is."""
    import kaldiio

    utts, signals = compressed
    whole = [u for u in utts if u.offset is None]
    data = export_kaldi(whole, tmp_path / "kaldi", audio=mode, workers=1)
    scp = dict(line.split(" ", 1) for line in lines(data / "wav.scp"))
    assert scp["spk-plain"] == str((tmp_path / "clips" / "plain.wav").resolve())
    for uid in ("cv1", "cv2", "book", "float", "phone"):
        if mode == "convert":
            assert scp[f"spk-{uid}"] == str((data / "wav" / f"{uid}.wav").resolve())
        else:
            assert scp[f"spk-{uid}"].startswith("ffmpeg -nostdin -v error -i file:") and scp[f"spk-{uid}"].endswith("|")
    read = kaldiio.load_scp(str(data / "wav.scp"))
    for u in whole:
        rate, samples = read[f"spk-{u.id}"]
        assert samples.dtype == np.int16 and samples.ndim == 1
        expected = signals[u.id]
        assert rate == 16000  # one rate for Kaldi's feature extraction
        assert abs(samples.size - expected.size) <= 2, u.id
        n = min(samples.size, expected.size)
        floor = {"cv1": 25, "cv2": 20}.get(u.id, 40)  # MP3 at its default bit rate; lossless ones near exact
        assert snr_db(expected[:n], samples[:n] / 32768.0) > floor, u.id

    # segments of an MP3: one recording, cut by kaldiio from what the pipe or the converted WAV gives
    segs = export_kaldi([u for u in utts if u.offset is not None], tmp_path / "seg", audio=mode, workers=1)
    assert len(lines(segs / "wav.scp")) == 1
    read = kaldiio.load_scp(str(segs / "wav.scp"), segments=str(segs / "segments"))
    for uid, (start, seconds) in {"seg1": (0.1, 0.5), "seg2": (0.6, 0.4)}.items():
        rate, samples = read[f"spk-{uid}"]
        expected = signals["cv1"][int(start * 16000):int((start + seconds) * 16000)]
        assert rate == 16000 and samples.size == expected.size
        assert snr_db(expected, samples / 32768.0) > 25


def test_export_audio_modes_on_the_command_line(tmp_path, compressed, no_ffmpeg):
    from speech_tl.manifest import write_manifest

    utts, _ = compressed
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [u for u in utts if u.offset is None])
    data = tmp_path / "k"
    res = CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"6 utterances -> {data}; 5 file(s) converted to 16 kHz WAV in {data / 'wav'}" in res.output
    assert sorted(p.name for p in (data / "wav").iterdir()) == ["book.wav", "cv1.wav", "cv2.wav", "float.wav",
                                                                "phone.wav"]
    for table in ("wav.scp", "text", "utt2spk", "spk2utt"):  # the converted WAVs alone are an output that is there
        (data / table).unlink()
    res = CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data)])
    assert res.exit_code == 1 and f"{data / 'wav'}: folder of converted WAVs already exists" in res.output
    res = CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data), "--audio", "pipe", "--overwrite"])
    assert res.exit_code == 0 and "5 file(s) decoded by ffmpeg pipes in wav.scp" in res.output
    assert "note: ffmpeg is not installed here" in res.stderr  # PATH has no ffmpeg in this test
    res = CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data), "--audio", "path", "--overwrite"])
    assert res.exit_code == 0
    assert sorted(v.split(" ", 1)[1].rsplit("/", 1)[1] for v in lines(data / "wav.scp")) == \
        ["book.flac", "cv1.mp3", "cv2.mp3", "float.wav", "phone.wav", "plain.wav"]  # the files as they are


def test_export_refuses_audio_it_cannot_convert(tmp_path, make_tone):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3 not really an mp3")
    with pytest.raises(ValueError, match=r"utterance 'u' \(manifest line 3\): cannot convert its audio for Kaldi: .*"
                                         r"broken.mp3: unreadable or corrupt audio"):
        export_kaldi([Utterance("u", str(bad), 0.3, "t", "s", "de", line=3)], tmp_path / "k")
    with pytest.raises(ValueError, match="gone.mp3 not found; the pipe in wav.scp would fail"):
        export_kaldi([Utterance("u", str(tmp_path / "gone.mp3"), 0.3, "t", "s", "de")], tmp_path / "k", audio="pipe")
    spaced = make_tone(tmp_path / "with space.flac", seconds=0.3)  # converted: the copy has a plain name
    data = export_kaldi([Utterance("u", str(spaced), 0.3, "t", "s", "de")], tmp_path / "k")
    assert lines(data / "wav.scp") == [f"s-u {(data / 'wav' / 'with_space.wav').resolve()}"]
    data = export_kaldi([Utterance("u", str(spaced), 0.3, "t", "s", "de")], tmp_path / "k2", audio="pipe")
    assert lines(data / "wav.scp") == [f"s-u ffmpeg -nostdin -v error -i 'file:{spaced.resolve()}' -f wav -acodec "
                                       "pcm_s16le -ac 1 -ar 16000 - |"]


def test_convert_replaces_the_wav_folder_as_a_whole(tmp_path, make_tone):
    """The WAVs are converted into a temporary folder and swapped in before the tables are written: a file that
    cannot be converted leaves no partial DATA_DIR/wav/ (so a retry needs no --overwrite), a failing --overwrite
    leaves the earlier export as it was (tables and WAVs), and a successful one leaves no WAV the new tables do not
    name."""
    from speech_tl.manifest import write_manifest

    clips = tmp_path / "clips"
    good = [make_tone(clips / f"good{i}.flac", seconds=0.3 + 0.1 * i) for i in range(3)]
    bad = clips / "broken.mp3"
    bad.write_bytes(b"ID3 not really an mp3")
    manifest = tmp_path / "m.jsonl"
    data = tmp_path / "k"

    def export(*paths: Path, overwrite: bool = False):
        write_manifest(manifest, [Utterance(p.stem, str(p), 0.3, "t", "s", "de") for p in paths])
        return CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data), "--workers", "1",
                                         *(["--overwrite"] if overwrite else [])])

    def state() -> dict[str, bytes]:
        return {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                if p.is_file() and data in p.parents}

    res = export(good[0], bad)  # good0 is converted first, then broken.mp3 fails
    assert res.exit_code == 1 and "utterance 'broken' (manifest line 2): cannot convert its audio" in res.output
    assert not data.exists()  # no partial wav/, no temporary folder, no empty data dir
    res = export(good[0], good[1])  # the retry needs no --overwrite
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (data / "wav").iterdir()) == ["good0.wav", "good1.wav"]
    before = state()

    res = export(good[2], bad, overwrite=True)  # fails: the earlier export stays whole
    assert res.exit_code == 1 and "broken" in res.output
    assert state() == before and sorted(p.name for p in data.iterdir()) == ["spk2utt", "text", "utt2spk", "wav",
                                                                            "wav.scp"]
    res = export(good[2], overwrite=True)  # good0 and good1 are no longer named: their WAVs go
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (data / "wav").iterdir()) == ["good2.wav"]
    assert lines(data / "wav.scp") == [f"s-good2 {(data / 'wav' / 'good2.wav').resolve()}"]
    assert sorted(p.name for p in data.iterdir()) == ["spk2utt", "text", "utt2spk", "wav", "wav.scp"]

    # a 16 kHz WAV, named as it is: no WAV is converted, and the earlier export's wav/ goes
    plain = make_tone(clips / "plain.wav", seconds=0.3)
    assert export(plain, overwrite=True).exit_code == 0
    assert not (data / "wav").exists() and lines(data / "wav.scp") == [f"s-plain {plain.resolve()}"]

    # audio inside DATA_DIR/wav/, which the export replaces as a whole: refused before anything is touched
    inside = make_tone(data / "wav" / "mine.wav", seconds=0.3)
    kept = state()
    res = export(inside, good[0], overwrite=True)
    assert res.exit_code == 1 and f"lies in {data / 'wav'}, the folder of converted WAVs this export replaces" \
        in res.output, res.output
    assert state() == kept

    # pipe/path leave wav/ alone, and say so where wav.scp names nothing in it
    for names, note in (([inside, good[0]], False), ([good[0]], True)):
        write_manifest(manifest, [Utterance(p.stem, str(p), 0.3, "t", "s", "de") for p in names])
        res = CliRunner().invoke(main, ["manifest", "to-kaldi", str(manifest), str(data), "--audio", "path",
                                        "--overwrite"])
        assert res.exit_code == 0 and inside.is_file()
        assert (f"note: {data / 'wav'} is left as it was; wav.scp names nothing in it now" in res.stderr) == note
