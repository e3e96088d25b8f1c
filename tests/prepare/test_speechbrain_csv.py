"""SpeechBrain CSV data manifests: placeholders, relative paths, start/stop segments, bad rows; real audio files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare.speechbrain_csv import prepare_speechbrain_csv


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Written the way SpeechBrain's recipes write them: csv.writer, QUOTE_MINIMAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)
    return path


def rejected(out: Path, name: str = "speechbrain_und") -> dict[int, dict]:
    rows = [json.loads(x) for x in (out / f"{name}_rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["line"]: r for r in rows}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def corpus(tmp_path, make_tone) -> Path:
    root = tmp_path / "LibriSpeech"
    make_tone(root / "dev-clean" / "1272" / "a.flac", seconds=0.6)
    make_tone(root / "dev-clean" / "1272" / "b.wav", seconds=0.4, sr=8000)
    make_tone(tmp_path / "csvs" / "local" / "c.wav", seconds=0.5)
    return root


def test_data_root_relative_paths_and_bad_rows(corpus, tmp_path):
    csv_file = write_csv(tmp_path / "csvs" / "dev.csv", ["ID", "duration", "wav", "spk_id", "wrd"], [
        ["1272-a", 0.6, "$data_root/dev-clean/1272/a.flac", "1272", "MISTER QUILTER, IS \"THE\" APOSTLE"],  # 2
        ["1272-b", 0.4, "$data_folder/dev-clean/1272/b.wav", "1272", "ZWEI"],                              # 3
        ["local-c", 0.5, "local/c.wav", "", "GRÜSSE AUS KÖLN"],                                            # 4 relative
        ["gone", 0.5, "$root/dev-clean/gone.wav", "9", "FEHLT"],                                           # 5 missing
        ["other", 0.5, "$other_var/x.wav", "9", "UNBEKANNT"],                                              # 6 unknown
        ["1272-a", 0.6, "$data_root/dev-clean/1272/b.wav", "1272", "DOPPELT"],                              # 7 dup ID
        ["leer", 0.6, str(corpus / "dev-clean" / "1272" / "a.flac"), "1272", ""],                          # 8 no text
        ["", 0.6, "local/c.wav", "1", "OHNE ID"],                                                           # 9 no ID
        ["kurz", 0.6, "local/c.wav"],                                                                        # 10 fields
    ])
    with open(csv_file, "a", encoding="utf-8") as f:
        f.write("\nspaced, 0.5, local/c.wav, 42, MIT LEERZEICHEN\n")  # 11 blank; 12 blanks after commas
    result = prepare_speechbrain_csv(csv_file, tmp_path / "out", language="en", data_root=corpus, workers=1)
    utts = {u.id: u for u in read_manifest(tmp_path / "out" / "speechbrain_en_all.jsonl")}
    assert {k: (u.text, u.speaker, u.language, u.offset, u.duration, u.sample_rate,
                u.audio_path().resolve()) for k, u in utts.items()} == {
        "1272-a": ('MISTER QUILTER, IS "THE" APOSTLE', "1272", "en", None, pytest.approx(0.6), 16000,
                   (corpus / "dev-clean" / "1272" / "a.flac").resolve()),
        "1272-b": ("ZWEI", "1272", "en", None, pytest.approx(0.4), 8000,
                   (corpus / "dev-clean" / "1272" / "b.wav").resolve()),
        "local-c": ("GRÜSSE AUS KÖLN", "local-c", "en", None, pytest.approx(0.5), 16000,
                    (tmp_path / "csvs" / "local" / "c.wav").resolve()),
        "spaced": ("MIT LEERZEICHEN", "42", "en", None, pytest.approx(0.5), 16000,
                   (tmp_path / "csvs" / "local" / "c.wav").resolve()),
    }
    rej = rejected(tmp_path / "out", "speechbrain_en")
    assert {k: (r["reason"], r["source"]) for k, r in rej.items()} == {
        5: ("missing audio file", "dev.csv"), 6: ("unresolved placeholder", "dev.csv"), 7: ("duplicate id", "dev.csv"),
        8: ("empty transcript", "dev.csv"), 9: ("malformed row", "dev.csv"), 10: ("malformed row", "dev.csv"),
    }
    assert "$other_var" in rej[6]["detail"] and "first" not in rej[7]["detail"] and "dev.csv:2" in rej[7]["detail"]
    assert "3 fields, the header has 5" in rej[10]["detail"]
    assert re.search(r"2\s+malformed row", result.summary())

    # without --data-root the placeholders cannot be resolved: those rows say what to give
    prepare_speechbrain_csv(csv_file, tmp_path / "out2", workers=1)
    rej = rejected(tmp_path / "out2")
    assert rej[2]["reason"] == rej[3]["reason"] == "unresolved placeholder"
    assert "--data-root" in rej[2]["detail"]


def test_start_stop_segments_in_samples_and_seconds(tmp_path, make_tone):
    make_tone(tmp_path / "wav" / "id1" / "long.wav", seconds=2.0)            # 16 kHz
    make_tone(tmp_path / "wav" / "id2" / "tel.wav", seconds=1.5, sr=8000)   # 8 kHz
    header = ["ID", "duration", "wav", "start", "stop", "spk_id"]
    rows = [  # the way SpeechBrain's VoxCeleb CSVs cut 3 s chunks: duration is the whole file's, start/stop samples
        ["id1--long_0.0_1.0", 2.0, "$data_root/id1/long.wav", 0, 16000, "id1"],          # 2
        ["id1--long_1.0_2.0", 2.0, "$data_root/id1/long.wav", 16000, 32000, "id1"],      # 3
        ["id2--tel_0.5_1.5", 1.5, "$data_root/id2/tel.wav", 4000, 12000, "id2"],         # 4 8 kHz: 0.5 .. 1.5 s
        ["id2--tel_past", 1.5, "$data_root/id2/tel.wav", 8000, 16000, "id2"],            # 5 past the end
        ["id2--tel_empty", 1.5, "$data_root/id2/tel.wav", 8000, 8000, "id2"],            # 6 empty
        ["id2--tel_nan", 1.5, "$data_root/id2/tel.wav", "a", "b", "id2"],                # 7 not numbers
        ["id2--whole", 1.5, "$data_root/id2/tel.wav", "", "", "id2"],                    # 8 no segment: whole file
    ]
    csv_file = write_csv(tmp_path / "train.csv", header, rows)
    prepare_speechbrain_csv(csv_file, tmp_path / "out", data_root=tmp_path / "wav", workers=1)
    utts = {u.id: u for u in read_manifest(tmp_path / "out" / "speechbrain_und_all.jsonl")}
    assert {k: (u.offset, u.duration, u.speaker, u.text) for k, u in utts.items()} == {
        "id1--long_0.0_1.0": (0.0, pytest.approx(1.0), "id1", ""),   # no transcript column: a speaker corpus
        "id1--long_1.0_2.0": (1.0, pytest.approx(1.0), "id1", ""),
        "id2--tel_0.5_1.5": (0.5, pytest.approx(1.0), "id2", ""),
        "id2--whole": (None, pytest.approx(1.5), "id2", ""),
    }
    rej = rejected(tmp_path / "out")
    assert {k: r["reason"] for k, r in rej.items()} == {5: "segment outside audio", 6: "empty segment",
                                                        7: "malformed row"}
    assert "1.50 s long" in rej[5]["detail"]

    seconds = write_csv(tmp_path / "sec.csv", header + ["wrd"], [
        ["a", 1.0, "wav/id1/long.wav", 0.25, 1.25, "id1", "EINS"],
        ["b", 1.0, "wav/id2/tel.wav", 1.0, 1.5, "id2", "ZWEI"],
    ])
    result = prepare_speechbrain_csv(seconds, tmp_path / "out3", segment_unit="seconds", workers=1)
    assert not result.rejected
    assert sorted((u.id, u.offset, round(u.duration, 4), u.text) for u in result.splits["all"]) == [
        ("a", 0.25, 1.0, "EINS"), ("b", 1.0, 0.5, "ZWEI")]


def test_cli(corpus, tmp_path):
    res = invoke("prepare", "speechbrain-csv", tmp_path / "nope.csv", "--out-dir", tmp_path / "out")
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and "nope.csv" in line and "not found" in line

    bad = write_csv(tmp_path / "bad.csv", ["utt", "path"], [["u", "x.wav"]])
    res = invoke("prepare", "speechbrain-csv", bad, "--out-dir", tmp_path / "out")
    assert res.exit_code == 1
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ") and "bad.csv:1" in line and "'ID'" in line

    good = write_csv(tmp_path / "csvs" / "test.csv", ["ID", "duration", "wav", "spk_id", "words"],
                     [["a", 0.6, "$data_root/dev-clean/1272/a.flac", "1272", "HALLO"]])
    out = tmp_path / "out"
    args = ["prepare", "speechbrain-csv", good, "--out-dir", out, "--data-root", corpus, "--lang", "de",
            "--name", "sb", "--workers", "1"]
    res = invoke(*args)
    assert res.exit_code == 0 and re.search(r"all\s+kept\s+1 utterances", res.output), res.output
    assert [u.text for u in read_manifest(out / "sb_de_all.jsonl")] == ["HALLO"]
    assert "already prepared with the same parameters, reused" in invoke(*args).output
    res = invoke(*args[:-2], "--segment-unit", "seconds")  # other parameters: refused without --overwrite
    assert res.exit_code == 1 and "--overwrite" in res.output
