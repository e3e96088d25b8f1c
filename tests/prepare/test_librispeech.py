"""LibriSpeech preparer on real FLAC files in the ``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` layout."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare import prepare_librispeech
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite


def make_chapter(subset: Path, spk: str, chapter: str, utts: dict[str, tuple[str, float | None]], make_tone,
                 extra_flacs: dict[str, float] | None = None) -> Path:
    """Write ``<spk>-<chapter>.trans.txt`` (one line per utt) and a flac per utt whose duration is not None."""
    folder = subset / spk / chapter
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for utt, (text, seconds) in utts.items():
        uid = f"{spk}-{chapter}-{utt}"
        lines.append(f"{uid} {text}".rstrip())
        if seconds is not None:
            make_tone(folder / f"{uid}.flac", seconds=seconds, freq=200 + int(utt))
    for utt, seconds in (extra_flacs or {}).items():
        make_tone(folder / f"{spk}-{chapter}-{utt}.flac", seconds=seconds)
    (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def build_dev_clean(subset: Path, make_tone) -> dict[str, tuple[str, float]]:
    """dev-clean with two speakers; returns the utterances that must be kept: id -> (text, seconds)."""
    make_chapter(subset, "84", "121123", {
        "0000": ("GO DO YOU HEAR", 0.61),
        "0001": ("BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED BENEATH AN EXTRAORDINARY WEIGHT", 0.47),
        "0002": ("AT THIS MOMENT THE WHOLE SOUL OF THE OLD MAN SEEMED CENTRED IN HIS EYES", None),  # flac missing
        "0003": ("", 0.3),  # line with an id and no text
    }, make_tone, extra_flacs={"0009": 0.4})  # flac that no transcript mentions
    make_chapter(subset, "174", "50561", {
        "0000": ("FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE", 0.52),
        "0001": ("WORST OF ALL HE'S ANOTHER MAN'S", 0.33),
    }, make_tone)
    make_chapter(subset, "174", "84280", {"0007": ("HOW WE MUST SIMPLIFY", 0.25)}, make_tone)
    return {"84-121123-0000": ("GO DO YOU HEAR", 0.61),
            "84-121123-0001": ("BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED BENEATH AN EXTRAORDINARY "
                               "WEIGHT", 0.47),
            "174-50561-0000": ("FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE", 0.52),
            "174-50561-0001": ("WORST OF ALL HE'S ANOTHER MAN'S", 0.33),
            "174-84280-0007": ("HOW WE MUST SIMPLIFY", 0.25)}


def rejected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "librispeech_en_rejected.jsonl").read_text("utf-8").splitlines()]


def test_single_subset(tmp_path, make_tone):
    subset = tmp_path / "LibriSpeech" / "dev-clean"
    expected = build_dev_clean(subset, make_tone)
    out = tmp_path / "out"
    result = prepare_librispeech(subset, out, workers=1)

    assert sorted(p.name for p in out.glob("*.jsonl")) == ["librispeech_en_dev-clean.jsonl",
                                                          "librispeech_en_rejected.jsonl"]
    utts = read_manifest(out / "librispeech_en_dev-clean.jsonl")
    assert [u.id for u in utts] == sorted(expected)  # written sorted by id
    for u in utts:
        text, seconds = expected[u.id]
        spk, chapter, _ = u.id.split("-")
        assert u.text == text
        assert (u.speaker, u.extra["chapter"], u.language) == (spk, chapter, "en")
        assert u.audio_path() == subset / spk / chapter / f"{u.id}.flac"
        assert u.duration == pytest.approx(seconds, abs=1e-4)  # FLAC: exact sample count
        assert u.sample_rate == 16000

    rej = {r["id"]: r for r in rejected(out)}
    assert sorted(rej) == ["84-121123-0002", "84-121123-0003", "84-121123-0009"]
    assert rej["84-121123-0002"]["reason"] == "missing audio file"
    assert rej["84-121123-0002"]["source"] == "dev-clean/84/121123/84-121123.trans.txt"
    assert rej["84-121123-0002"]["line"] == 3
    assert rej["84-121123-0003"]["reason"] == "empty transcript"
    assert rej["84-121123-0003"]["line"] == 4
    assert rej["84-121123-0009"]["reason"] == "no transcript"
    assert rej["84-121123-0009"]["source"] == "dev-clean/84/121123/84-121123-0009.flac"
    assert rej["84-121123-0009"]["audio"].endswith("84-121123-0009.flac")
    # every transcript line and every flac is accounted for
    n_lines = sum(len(p.read_text().splitlines()) for p in subset.rglob("*.trans.txt"))
    unlisted = 1
    assert len(utts) + len(result.rejected) == n_lines + unlisted
    summary = result.summary()
    assert re.search(r"dev-clean\s+kept\s+5 utterances", summary)
    assert re.search(r"rejected\s+3 rows", summary)
    for reason in ("missing audio file", "empty transcript", "no transcript"):
        assert reason in summary


def test_folder_of_subsets(tmp_path, make_tone):
    root = tmp_path / "LibriSpeech"
    dev = build_dev_clean(root / "dev-clean", make_tone)
    make_chapter(root / "test-clean", "1089", "134686", {
        "0000": ("HE HOPED THERE WOULD BE STEW FOR DINNER", 0.44),
        "0001": ("STUFF IT INTO YOU HIS BELLY COUNSELLED HIM", 0.36),
    }, make_tone)
    make_chapter(root / "test-clean", "1188", "133604", {"0000": ("YOU WILL FIND ME CONTINUALLY SPEAKING", 0.29)},
                 make_tone, extra_flacs={"0042": 0.2})
    (root / "README.TXT").write_text("LibriSpeech ASR corpus\n")
    (root / "not-a-subset").mkdir()
    out = tmp_path / "out"
    result = prepare_librispeech(root, out, workers=1)

    assert set(result.splits) == {"dev-clean", "test-clean"}
    assert sorted(u.id for u in read_manifest(out / "librispeech_en_dev-clean.jsonl")) == sorted(dev)
    test = read_manifest(out / "librispeech_en_test-clean.jsonl")
    assert [u.id for u in test] == ["1089-134686-0000", "1089-134686-0001", "1188-133604-0000"]
    assert {u.speaker for u in test} == {"1089", "1188"}
    assert next(u for u in test if u.id == "1089-134686-0000").duration == pytest.approx(0.44, abs=1e-4)

    rej = {r["id"]: r for r in rejected(out)}
    assert sorted(rej) == ["1188-133604-0042", "84-121123-0002", "84-121123-0003", "84-121123-0009"]
    assert rej["1188-133604-0042"]["reason"] == "no transcript"
    # sources name the subset, so two subsets' rejections cannot be confused
    assert rej["1188-133604-0042"]["source"] == "test-clean/1188/133604/1188-133604-0042.flac"
    assert rej["84-121123-0009"]["source"] == "dev-clean/84/121123/84-121123-0009.flac"
    assert rej["84-121123-0002"]["source"] == "dev-clean/84/121123/84-121123.trans.txt"


def test_duplicate_id_across_subsets_keeps_the_first_in_its_own_subset(tmp_path, make_tone):
    root = tmp_path / "LibriSpeech"
    make_chapter(root / "a-subset", "19", "198", {"0001": ("NORTHANGER ABBEY", 0.3)}, make_tone)
    make_chapter(root / "b-subset", "19", "198", {"0001": ("NORTHANGER ABBEY AGAIN", 0.4),
                                                  "0002": ("CHAPTER ONE", 0.2)}, make_tone)
    out = tmp_path / "out"
    prepare_librispeech(root, out, workers=1)
    a = read_manifest(out / "librispeech_en_a-subset.jsonl")
    b = read_manifest(out / "librispeech_en_b-subset.jsonl")
    assert [(u.id, u.text) for u in a] == [("19-198-0001", "NORTHANGER ABBEY")]
    assert a[0].audio_path().parent.parent.parent.name == "a-subset"
    assert [u.id for u in b] == ["19-198-0002"]
    (dup,) = rejected(out)
    assert (dup["reason"], dup["source"], dup["line"]) == ("duplicate id", "b-subset/19/198/19-198.trans.txt", 1)


def test_second_run_skipped_and_force_redoes(tmp_path, make_tone):
    subset = tmp_path / "dev-clean"
    build_dev_clean(subset, make_tone)
    out = tmp_path / "out"
    prepare_librispeech(subset, out, workers=1)
    (subset / "174" / "84280" / "174-84280-0007.flac").unlink()
    again = prepare_librispeech(subset, out, workers=1)
    assert again.skipped and len(again.splits["dev-clean"]) == 5 and len(again.rejected) == 3
    forced = prepare_librispeech(subset, out, workers=1, force=True)
    assert not forced.skipped and len(forced.splits["dev-clean"]) == 4
    assert {r["id"]: r["reason"] for r in rejected(out)}["174-84280-0007"] == "missing audio file"


def test_not_librispeech(tmp_path, make_tone):
    make_tone(tmp_path / "corpus" / "a.flac")
    with pytest.raises(FileNotFoundError, match="no LibriSpeech layout"):
        prepare_librispeech(tmp_path / "corpus", tmp_path / "out")
    res = CliRunner().invoke(main, ["prepare", "librispeech", str(tmp_path / "corpus"), "--out-dir",
                                    str(tmp_path / "out")])
    assert res.exit_code == 1 and "no LibriSpeech layout" in res.output


def test_cli(tmp_path, make_tone):
    subset = tmp_path / "dev-clean"
    build_dev_clean(subset, make_tone)
    res = CliRunner().invoke(main, ["prepare", "librispeech", str(subset), "--out-dir", str(tmp_path / "out"),
                                    "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert re.search(r"dev-clean\s+kept\s+5 utterances", res.output)
    assert "no transcript" in res.output
    other = tmp_path / "copy" / "dev-clean"  # the same subset from another place: other parameters
    shutil.copytree(subset, other)
    out = tmp_path / "out"
    assert_other_parameters_refused_unless_overwrite(["prepare", "librispeech", str(other), "--out-dir", str(out),
                                                      "--workers", "1"], out, out / "librispeech_en_dev-clean.jsonl")
