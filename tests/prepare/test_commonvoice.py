"""Common Voice preparer on a small real layout: TSVs beside clips/*.mp3 written with soundfile.

MP3 durations: libsndfile (1.2.x) writes a LAME/Xing header that stores the encoder delay and
padding, and mpg123 uses it, so the header reports the exact number of samples written (we
measured 0 samples of error). The tests still allow 2 ms between the written length and the
manifest, which would not hide a missing gapless header (that would be off by ~1000+ samples).
The manifest itself must match what soundfile reports for the file to 0.1 ms (4 decimals).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare import prepare_commonvoice

HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"
          "\tvariant\tlocale\tsegment")
N_COLS = len(HEADER.split("\t"))

UMLAUT = "Größe, Maß & Übermut: „Straße“ – süß?! (Öl/Äpfel) 1,5 €"
LEADING_QUOTE = '"Zitat" sagte er, "und das ist alles."'
UNBALANCED = 'Er sagte "Hallo und ging nach Hause.'
MP3_TOL = 0.002


def cv_line(spk: str, clip: str, sentence: str, age: str = "twenties", gender: str = "female_feminine",
            accents: str = "") -> str:
    fields = [spk, clip, f"sid-{clip}", sentence, "", "2", "0", age, gender, accents, "", "de", ""]
    assert len(fields) == N_COLS
    return "\t".join(fields)


def write_tsv(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.write_bytes((newline.join([HEADER, *lines]) + newline).encode("utf-8"))


def build_corpus(root: Path, make_tone) -> dict:
    """A German CV folder; returns the expected good clips and their written durations per split."""
    clips = root / "clips"
    clips.mkdir(parents=True)
    durations = {}

    def clip(name: str, seconds: float, sr: int = 48000) -> str:
        make_tone(clips / f"{name}.mp3", seconds=seconds, sr=sr, freq=150 + 10 * len(durations))
        durations[name] = seconds
        return f"{name}.mp3"

    train_ok = {
        "common_voice_de_1": ("spk1", UMLAUT, 0.42),
        "common_voice_de_2": ("spk2", LEADING_QUOTE, 0.61),
        "common_voice_de_3": ("spk1", UNBALANCED, 0.35),
    }
    for name, (_, _, sec) in train_ok.items():
        clip(name, sec, sr=48000 if name != "common_voice_de_3" else 32000)
    clip("common_voice_de_empty", 0.3)
    (clips / "common_voice_de_corrupt.mp3").write_bytes(np.random.default_rng(1).bytes(3000))
    write_tsv(root / "train.tsv", [
        cv_line("spk1", "common_voice_de_1.mp3", UMLAUT, accents="Deutschland Deutsch"),   # line 2
        cv_line("spk2", "common_voice_de_2.mp3", LEADING_QUOTE, age="", gender=""),          # line 3
        cv_line("spk1", "common_voice_de_3.mp3", UNBALANCED),                                 # line 4
        cv_line("spk3", "common_voice_de_missing.mp3", "Diese Datei fehlt."),                # line 5
        cv_line("spk3", "common_voice_de_corrupt.mp3", "Diese Datei ist kaputt."),           # line 6
        cv_line("spk2", "common_voice_de_empty.mp3", "   "),                                  # line 7
        "\t".join(["spk2", "common_voice_de_short.mp3", "nur drei Felder"]),                 # line 8
    ])
    dev_ok = {"common_voice_de_dev1": ("spk4", "Wie geht's dir heute?", 0.5),
              "common_voice_de_dev2": ("spk5", "Ja — natürlich; gern.", 0.73)}
    for name, (_, _, sec) in dev_ok.items():
        clip(name, sec)
    write_tsv(root / "dev.tsv", [
        cv_line("spk4", "common_voice_de_dev1.mp3", dev_ok["common_voice_de_dev1"][1]),      # line 2
        cv_line("spk5", "common_voice_de_dev2.mp3", dev_ok["common_voice_de_dev2"][1]),      # line 3
        cv_line("spk5", "common_voice_de_dev3.mp3", "Ein Tab\tzu viel.") ,                   # line 4
    ], newline="\r\n")  # Windows line endings must not leak into the text
    test_ok = {"common_voice_de_test1": ("spk6", "Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich.", 0.8)}
    clip("common_voice_de_test1", 0.8)
    write_tsv(root / "test.tsv", [
        cv_line("spk6", "common_voice_de_test1.mp3", test_ok["common_voice_de_test1"][1]),   # line 2
        cv_line("spk6", "common_voice_de_test1.mp3", "Noch einmal dieselbe Datei."),         # line 3
    ])
    # validated.tsv: train rows, dev/test clips, dev/test speakers with new clips, one new speaker
    for name, sec in (("common_voice_de_v1", 0.4), ("common_voice_de_v2", 0.45), ("common_voice_de_v3", 0.55)):
        clip(name, sec)
    write_tsv(root / "validated.tsv", [
        cv_line("spk1", "common_voice_de_1.mp3", UMLAUT),                          # 2 kept
        cv_line("spk2", "common_voice_de_2.mp3", LEADING_QUOTE),                   # 3 kept
        cv_line("spk4", "common_voice_de_dev1.mp3", "Wie geht's dir heute?"),      # 4 clip in dev
        cv_line("spk4", "common_voice_de_v1.mp3", "Sprecher aus dev."),           # 5 speaker in dev
        cv_line("spk6", "common_voice_de_v2.mp3", "Sprecher aus test."),          # 6 speaker in test
        cv_line("spk7", "common_voice_de_v3.mp3", "Neuer Sprecher, neue Stimme."),  # 7 kept
        cv_line("spk9", "common_voice_de_test1.mp3", "Clip aus test."),           # 8 clip in test
    ])
    return {"train": train_ok, "dev": dev_ok, "test": test_ok, "durations": durations}


def data_rows(*tsvs: Path) -> int:
    return sum(len([ln for ln in p.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]) for p in tsvs)


def read_rejected(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def corpus(tmp_path, make_tone):
    root = tmp_path / "cv-corpus" / "de"
    return root, build_corpus(root, make_tone)


def test_manifests_hold_exactly_the_good_rows(corpus, tmp_path):
    root, expected = corpus
    out = tmp_path / "out"
    result = prepare_commonvoice(root, out, "de", workers=1)

    assert not result.skipped
    assert sorted(p.name for p in out.glob("*.jsonl")) == [
        "commonvoice_de_dev.jsonl", "commonvoice_de_rejected.jsonl", "commonvoice_de_test.jsonl",
        "commonvoice_de_train.jsonl"]
    for split in ("train", "dev", "test"):
        utts = read_manifest(out / f"commonvoice_de_{split}.jsonl")
        assert {u.id: (u.speaker, u.text) for u in utts} == \
            {k: (spk, text) for k, (spk, text, _) in expected[split].items()}, split
        for u in utts:
            assert u.language == "de"
            assert u.audio_path().resolve() == (root / "clips" / f"{u.id}.mp3").resolve()
            written = sf.info(str(u.audio_path()))
            assert u.sample_rate == written.samplerate
            assert u.duration == pytest.approx(written.frames / written.samplerate, abs=1e-4)
            assert u.duration == pytest.approx(expected["durations"][u.id], abs=MP3_TOL)
    train = {u.id: u for u in read_manifest(out / "commonvoice_de_train.jsonl")}
    assert train["common_voice_de_3"].sample_rate == 32000
    # CV metadata columns are carried along when not empty
    assert train["common_voice_de_1"].extra == {"gender": "female_feminine", "age": "twenties",
                                                "accents": "Deutschland Deutsch", "locale": "de",
                                                "sentence_id": "sid-common_voice_de_1.mp3"}
    assert "gender" not in train["common_voice_de_2"].extra and "age" not in train["common_voice_de_2"].extra
    # text is verbatim, and written as UTF-8 (not \\u escapes)
    raw = (out / "commonvoice_de_train.jsonl").read_text(encoding="utf-8")
    assert UMLAUT in json.loads([ln for ln in raw.splitlines() if "common_voice_de_1" in ln][0])["text"]
    assert "Größe" in raw and "„Straße“" in raw
    assert train["common_voice_de_2"].text.startswith('"Zitat"')
    assert train["common_voice_de_3"].text == UNBALANCED
    assert not any("\r" in u.text for u in read_manifest(out / "commonvoice_de_dev.jsonl"))


def test_every_bad_row_is_rejected_once_with_reason_and_place(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    result = prepare_commonvoice(root, out, "de", workers=1)
    rej = read_rejected(out / "commonvoice_de_rejected.jsonl")
    got = sorted((r["source"], r["line"], r["reason"]) for r in rej)
    assert got == [
        ("dev.tsv", 4, "malformed row"),
        ("test.tsv", 3, "duplicate id"),
        ("train.tsv", 5, "missing audio file"),
        ("train.tsv", 6, "unreadable audio"),
        ("train.tsv", 7, "empty transcript"),
        ("train.tsv", 8, "malformed row"),
    ]
    by_place = {(r["source"], r["line"]): r for r in rej}
    assert by_place[("train.tsv", 5)]["id"] == "common_voice_de_missing"
    assert by_place[("train.tsv", 5)]["audio"].endswith("clips/common_voice_de_missing.mp3")
    assert by_place[("train.tsv", 6)]["id"] == "common_voice_de_corrupt"
    assert "corrupt" in by_place[("train.tsv", 6)]["detail"]
    assert "3 tab-separated fields" in by_place[("train.tsv", 8)]["detail"]
    assert f"header has {N_COLS}" in by_place[("train.tsv", 8)]["detail"]
    assert "14 tab-separated fields" in by_place[("dev.tsv", 4)]["detail"]
    assert "test.tsv:2" in by_place[("test.tsv", 3)]["detail"]

    # nothing dropped silently: kept + rejected == data rows of the TSVs that were read
    kept = sum(len(v) for v in result.splits.values())
    assert kept == 6
    assert kept + len(rej) == data_rows(root / "train.tsv", root / "dev.tsv", root / "test.tsv") == 12
    assert len(result.rejected) == len(rej)

    summary = result.summary()
    assert summary.startswith("commonvoice (de):")
    assert re.search(r"train\s+kept\s+3 utterances", summary)
    assert re.search(r"dev\s+kept\s+2 utterances", summary)
    assert re.search(r"test\s+kept\s+1 utterances", summary)
    assert re.search(r"rejected\s+6 rows\s+-> .*commonvoice_de_rejected\.jsonl", summary)
    assert re.search(r"\b2\s+malformed row", summary)
    for reason in ("missing audio file", "unreadable audio", "empty transcript", "duplicate id"):
        assert re.search(rf"\b1\s+{reason}", summary), reason


def test_second_run_is_skipped_unless_forced(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    first = prepare_commonvoice(root, out, "de", workers=1)
    manifest = out / "commonvoice_de_train.jsonl"
    before = manifest.read_bytes()
    (root / "clips" / "common_voice_de_2.mp3").unlink()

    again = prepare_commonvoice(root, out, "de", workers=1)
    assert again.skipped
    assert "already prepared with the same parameters, reused" in again.summary()
    assert manifest.read_bytes() == before  # the corpus was not read again
    assert {k: [u.id for u in v] for k, v in again.splits.items()} == \
        {k: sorted(u.id for u in v) for k, v in first.splits.items()}
    assert [(r.source, r.line, r.reason) for r in again.rejected] == \
        [(r.source, r.line, r.reason) for r in first.rejected]

    forced = prepare_commonvoice(root, out, "de", workers=1, force=True)
    assert not forced.skipped
    assert "common_voice_de_2" not in {u.id for u in read_manifest(manifest)}
    rej = read_rejected(out / "commonvoice_de_rejected.jsonl")
    assert ("train.tsv", 3, "missing audio file") in {(r["source"], r["line"], r["reason"]) for r in rej}
    assert len(rej) == 7


def test_use_validated_keeps_dev_and_test_out_of_train(corpus, tmp_path):
    root, expected = corpus
    out = tmp_path / "out"
    result = prepare_commonvoice(root, out, "de", use_validated=True, workers=1)
    train = read_manifest(out / "commonvoice_de_train.jsonl")
    dev = read_manifest(out / "commonvoice_de_dev.jsonl")
    test = read_manifest(out / "commonvoice_de_test.jsonl")
    assert sorted(u.id for u in train) == ["common_voice_de_1", "common_voice_de_2", "common_voice_de_v3"]
    assert {u.id for u in dev} == set(expected["dev"]) and {u.id for u in test} == set(expected["test"])
    held_speakers = {u.speaker for u in dev + test}
    assert not {u.speaker for u in train} & held_speakers
    assert not {u.id for u in train} & {u.id for u in dev + test}
    assert next(u for u in train if u.id == "common_voice_de_v3").duration == pytest.approx(0.55, abs=MP3_TOL)

    rej = read_rejected(out / "commonvoice_de_rejected.jsonl")
    overlaps = {r["line"]: r for r in rej if r["reason"] == "overlaps dev/test"}
    assert sorted(overlaps) == [4, 5, 6, 8]
    assert all(r["source"] == "validated.tsv" for r in overlaps.values())
    assert "clip" in overlaps[4]["detail"] and "clip" in overlaps[8]["detail"]
    assert "speaker" in overlaps[5]["detail"] and "speaker" in overlaps[6]["detail"]
    assert overlaps[5]["id"] == "common_voice_de_v1"
    others = sorted((r["source"], r["line"], r["reason"]) for r in rej if r["reason"] != "overlaps dev/test")
    assert others == [("dev.tsv", 4, "malformed row"), ("test.tsv", 3, "duplicate id")]
    # train.tsv is not read with --use-validated; validated.tsv replaces it
    kept = sum(len(v) for v in result.splits.values())
    assert kept + len(rej) == data_rows(root / "validated.tsv", root / "dev.tsv", root / "test.tsv")
    assert "overlaps dev/test" in result.summary()


def test_use_validated_needs_validated_tsv(corpus, tmp_path):
    root, _ = corpus
    (root / "validated.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="validated.tsv"):
        prepare_commonvoice(root, tmp_path / "out", use_validated=True)


def test_missing_split_file_is_reported_and_others_prepared(corpus, tmp_path, caplog):
    root, _ = corpus
    (root / "test.tsv").unlink()
    with caplog.at_level("WARNING", logger="speech_tl"):
        result = prepare_commonvoice(root, tmp_path / "out", workers=1)
    assert set(result.splits) == {"train", "dev"}
    assert any("test.tsv not found" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert not (tmp_path / "out" / "commonvoice_de_test.jsonl").exists()


def test_not_a_commonvoice_folder(tmp_path, make_tone):
    with pytest.raises(FileNotFoundError, match="no 'clips' folder"):
        prepare_commonvoice(tmp_path, tmp_path / "out")
    (tmp_path / "clips").mkdir()
    with pytest.raises(FileNotFoundError, match="none of train.tsv"):
        prepare_commonvoice(tmp_path, tmp_path / "out")
    (tmp_path / "train.tsv").write_text("id\tfile\ttext\n1\ta.mp3\thallo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv:1: header has no 'client_id' column"):
        prepare_commonvoice(tmp_path, tmp_path / "out")


def test_cli_prepares_and_prints_summary(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "cli-out"
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "commonvoice", str(root), "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "commonvoice (de):" in res.output
    assert re.search(r"train\s+kept\s+3 utterances", res.output)
    assert re.search(r"rejected\s+6 rows", res.output)
    for reason in ("malformed row", "missing audio file", "unreadable audio", "empty transcript", "duplicate id"):
        assert reason in res.output
    assert len(read_manifest(out / "commonvoice_de_train.jsonl")) == 3

    res = runner.invoke(main, ["prepare", "commonvoice", str(root), "--out-dir", str(out)])
    assert res.exit_code == 0 and "already prepared with the same parameters, reused" in res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = runner.invoke(main, ["prepare", "commonvoice", str(root), "--out-dir", str(out), "--use-validated"])
    assert res.exit_code == 1 and str(out / "commonvoice_de_train.jsonl") in res.output, res.output
    assert "--overwrite" in res.output and "use_validated: False -> True" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = runner.invoke(main, ["prepare", "commonvoice", str(root), "--out-dir", str(out), "--force",
                               "--use-validated", "--workers", "1"])
    assert res.exit_code == 0 and "already prepared" not in res.output
    assert "overlaps dev/test" in res.output

    res = runner.invoke(main, ["prepare", "commonvoice", str(tmp_path), "--out-dir", str(out)])
    assert res.exit_code == 1
    assert "error:" in res.output.lower() and "no 'clips' folder" in res.output


def test_cli_with_relative_paths_writes_usable_manifests(corpus, tmp_path, monkeypatch):
    """Manifest audio paths resolve against the manifest's folder, so relative corpus paths must not leak."""
    root, _ = corpus
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["prepare", "commonvoice", str(root.relative_to(tmp_path)),
                                    "--out-dir", "manifests/cv", "--workers", "1"])
    assert res.exit_code == 0, res.output
    for split in ("train", "dev", "test"):
        utts = read_manifest(tmp_path / "manifests" / "cv" / f"commonvoice_de_{split}.jsonl")
        assert utts
        for u in utts:
            assert u.audio_path().is_file(), u.audio
            assert u.audio_path().resolve() == (root / "clips" / f"{u.id}.mp3").resolve()


def test_validated_sample_as_a_dev_set(corpus, tmp_path):
    """A sample of validated clips (../shared/data/commonvoice/de) becomes a dev manifest, nothing else."""
    root, _ = corpus
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", "commonvoice", str(root), "--use-validated", "--validated-split", "dev",
                                    "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert not (out / "commonvoice_de_train.jsonl").exists() and not (out / "commonvoice_de_test.jsonl").exists()
    dev = read_manifest(out / "commonvoice_de_dev.jsonl")
    rej = read_rejected(out / "commonvoice_de_rejected.jsonl")
    assert len(dev) + len(rej) == data_rows(root / "validated.tsv")
    assert all(r["source"] == "validated.tsv" for r in rej) and "overlaps dev/test" not in {r["reason"] for r in rej}
    with pytest.raises(ValueError, match="needs --use-validated"):
        prepare_commonvoice(root, tmp_path / "o2", validated_split="dev")


REAL_CV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "commonvoice"


@pytest.mark.skipif(not (REAL_CV / "de").is_dir(),
                    reason="../shared/data/commonvoice not here (a clone without shared/)")
def test_real_common_voice_german_dev_set(tmp_path):
    """The project's real dev set: 54 validated Common Voice German clips of 46 speakers, all usable."""
    prepare_commonvoice(REAL_CV / "de", tmp_path, "de", use_validated=True, validated_split="dev")
    dev = read_manifest(tmp_path / "commonvoice_de_dev.jsonl")
    assert len(dev) == 54 and len({u.speaker for u in dev}) == 46
    assert all(u.sample_rate == 48000 and 1.0 < u.duration < 15.0 and u.text for u in dev)
