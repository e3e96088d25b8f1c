"""M-AILABS preparer on real WAVs: ``by_book/<female|male|mix>/<speaker>/<book>/metadata.csv`` + ``wavs/``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare import prepare_mailabs
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite


def write_book(book: Path, rows: list[tuple[str, str, str, float | None]], make_tone, newline: str = "\n",
               raw_lines: tuple[str, ...] = ()) -> None:
    """metadata.csv with ``id|text|normalised`` per row; a wav per row whose seconds is not None."""
    book.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (utt, text, norm, seconds) in enumerate(rows):
        lines.append(f"{utt}|{text}|{norm}")
        if seconds is not None:
            make_tone(book / "wavs" / f"{utt}.wav", seconds=seconds, freq=170 + 15 * i)
    lines += raw_lines
    (book / "metadata.csv").write_bytes((newline.join(lines) + newline).encode("utf-8"))


QUOTE = "„Ach“, sagte er; 1848 – ja! Größer & süßer?"


def build(root: Path, make_tone) -> dict[str, tuple[str, str, float]]:
    """de_DE/by_book/...; returns kept id -> (speaker, text, seconds)."""
    bb = root / "by_book"
    write_book(bb / "female" / "eva_k" / "grune_haus", [
        ("grune_haus_01_f000001", "Das grüne Haus.", "Das grüne Haus.", 0.41),
        ("grune_haus_01_f000002", "Erstes Kapitel.", "Erstes Kapitel.", 0.33),
        ("grune_haus_01_f000003", "Diese Datei fehlt.", "Diese Datei fehlt.", None),   # line 3
        ("grune_haus_01_f000004", "", "", 0.2),                                         # line 4: empty text
    ], make_tone, raw_lines=("grune_haus_01_f000005 ohne Trennzeichen",))               # line 5: no pipe
    write_book(bb / "male" / "karlsson" / "hampels_fluch", [
        ("hampels_fluch_01_f000001", QUOTE, "„Ach“, sagte er; achtzehnhundertachtundvierzig – ja!", 0.52),
        ("hampels_fluch_01_f000002", "Zweiter Satz.", "Zweiter Satz.", 0.27),
    ], make_tone, newline="\r\n")
    write_book(bb / "mix" / "koenigsgaukler", [
        ("koenigsgaukler_01_f000001", "Der Königsgaukler.", "Der Königsgaukler.", 0.36),
        ("koenigsgaukler_01_f000002", "Ein Roman.", "Ein Roman.", 0.29),
    ], make_tone)
    return {
        "eva_k-grune_haus-grune_haus_01_f000001": ("eva_k", "Das grüne Haus.", 0.41),
        "eva_k-grune_haus-grune_haus_01_f000002": ("eva_k", "Erstes Kapitel.", 0.33),
        "karlsson-hampels_fluch-hampels_fluch_01_f000001": ("karlsson", QUOTE, 0.52),
        "karlsson-hampels_fluch-hampels_fluch_01_f000002": ("karlsson", "Zweiter Satz.", 0.27),
        "mix-koenigsgaukler-koenigsgaukler-koenigsgaukler_01_f000001": ("mix-koenigsgaukler", "Der Königsgaukler.",
                                                                        0.36),
        "mix-koenigsgaukler-koenigsgaukler-koenigsgaukler_01_f000002": ("mix-koenigsgaukler", "Ein Roman.", 0.29),
    }


def test_by_book_layout(tmp_path, make_tone):
    root = tmp_path / "de_DE"
    expected = build(root, make_tone)
    out = tmp_path / "out"
    result = prepare_mailabs(root, out, "de", workers=1)

    assert sorted(p.name for p in out.glob("*.jsonl")) == ["mailabs_de_all.jsonl", "mailabs_de_rejected.jsonl"]
    utts = {u.id: u for u in read_manifest(out / "mailabs_de_all.jsonl")}
    assert set(utts) == set(expected)
    for uid, (speaker, text, seconds) in expected.items():
        u = utts[uid]
        assert (u.speaker, u.text, u.language, u.sample_rate) == (speaker, text, "de", 16000)
        assert u.duration == pytest.approx(seconds, abs=1e-4)
        assert u.audio_path().is_file() and u.audio_path().parent.name == "wavs"
    # the original text (column 2) is kept, not the normalised one; no \r from CRLF files
    assert utts["karlsson-hampels_fluch-hampels_fluch_01_f000001"].text == QUOTE
    assert "Größer & süßer?" in (out / "mailabs_de_all.jsonl").read_text(encoding="utf-8")
    assert utts["eva_k-grune_haus-grune_haus_01_f000001"].extra == {"gender": "female", "book": "grune_haus"}
    assert utts["karlsson-hampels_fluch-hampels_fluch_01_f000002"].extra["gender"] == "male"
    mix = utts["mix-koenigsgaukler-koenigsgaukler-koenigsgaukler_01_f000001"]
    assert mix.extra == {"speaker_known": False, "book": "koenigsgaukler"}

    rej = [json.loads(line) for line in (out / "mailabs_de_rejected.jsonl").read_text("utf-8").splitlines()]
    assert sorted((r["line"], r["reason"]) for r in rej) == [(3, "missing audio file"), (4, "empty transcript"),
                                                             (5, "malformed row")]
    assert {r["source"] for r in rej} == {"female/eva_k/grune_haus/metadata.csv"}
    assert next(r for r in rej if r["line"] == 3)["id"] == "eva_k-grune_haus-grune_haus_01_f000003"
    # every metadata line is accounted for
    n_lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("metadata.csv"))
    assert len(utts) + len(rej) == n_lines == 9
    summary = result.summary()
    assert re.search(r"all\s+kept\s+6 utterances", summary) and re.search(r"rejected\s+3 rows", summary)
    assert "malformed row" in summary and "missing audio file" in summary


def test_by_book_folder_given_directly_gives_same_result(tmp_path, make_tone):
    root = tmp_path / "de_DE"
    expected = build(root, make_tone)
    result = prepare_mailabs(root / "by_book", tmp_path / "out", "de", workers=1)
    assert {u.id: u.speaker for u in result.splits["all"]} == {k: v[0] for k, v in expected.items()}


@pytest.mark.parametrize("sub", ["female", "female/eva_k", "female/eva_k/grune_haus"])
def test_gender_or_speaker_folder_keeps_the_speaker(tmp_path, make_tone, sub):
    """Pointing at by_book/female (or one speaker or book folder) must not turn named readers into 'mix' books."""
    root = tmp_path / "de_DE"
    build(root, make_tone)
    result = prepare_mailabs(root / "by_book" / sub, tmp_path / "out", "de", workers=1)
    utts = result.splits["all"]
    assert sorted(u.id for u in utts) == ["eva_k-grune_haus-grune_haus_01_f000001",
                                          "eva_k-grune_haus-grune_haus_01_f000002"]
    assert all(u.speaker == "eva_k" and u.extra["gender"] == "female" for u in utts)
    assert all("speaker_known" not in u.extra for u in utts)


def test_errors_skip_and_cli(tmp_path, make_tone):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no metadata.csv"):
        prepare_mailabs(tmp_path / "nothing", tmp_path / "out")
    root = tmp_path / "de_DE"
    build(root, make_tone)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "mailabs", str(root), "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "mailabs (de):" in res.output and re.search(r"all\s+kept\s+6 utterances", res.output)
    res = runner.invoke(main, ["prepare", "mailabs", str(root), "--out-dir", str(out)])
    assert res.exit_code == 0 and "already prepared with the same parameters, reused" in res.output
    other = tmp_path / "copy" / "de_DE"  # the same corpus from another place: other parameters
    shutil.copytree(root, other)
    assert_other_parameters_refused_unless_overwrite(["prepare", "mailabs", str(other), "--out-dir", str(out),
                                                      "--workers", "1"], out, out / "mailabs_de_all.jsonl")
    res = runner.invoke(main, ["prepare", "mailabs", str(tmp_path / "nothing"), "--out-dir", str(out)])
    assert res.exit_code == 1 and "no metadata.csv" in res.output
