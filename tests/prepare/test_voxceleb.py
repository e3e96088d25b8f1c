"""VoxCeleb preparer on real WAV files in the ``wav/idNNNNN/<video>/<utt>.wav`` layout, and VoxCeleb2's m4a files
(``aac/idNNNNN/<video>/<utt>.m4a``) encoded by ffmpeg."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare import prepare_voxceleb
from tests.ffmpeg_tools import encode, requires_ffmpeg
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite

# rel path -> (iden split digit or None when not listed, seconds)
GOOD = {
    "id10001/1zcIwhmdeo4/00001.wav": ("1", 0.45),
    "id10001/1zcIwhmdeo4/00002.wav": ("1", 0.31),
    "id10001/7gWzIy6yIIk/00001.wav": ("2", 0.52),
    "id10002/6WO410QOeuo/00001.wav": ("1", 0.27),
    "id10002/C7k7C-PDvAA/00003.wav": ("3", 0.66),
    "id10003/na8-QEFmj44/00001.wav": ("3", 0.38),
}
UNLISTED = "id10003/na8-QEFmj44/00002.wav"
CORRUPT = "id10002/6WO410QOeuo/00002.wav"
M4A = "id10004/aBcDeFgHiJk/00001.m4a"  # not really AAC: with ffmpeg unreadable, without it not even probed


def vox_id(rel: str) -> str:
    return rel.rsplit(".", 1)[0].replace("/", "-")


def build(root: Path, make_tone, with_split: bool = True) -> Path:
    wav = root / "wav"
    for i, (rel, (_, sec)) in enumerate(GOOD.items()):
        make_tone(wav / rel, seconds=sec, freq=180 + 20 * i)
    make_tone(wav / UNLISTED, seconds=0.2)
    (wav / CORRUPT).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (wav / M4A).parent.mkdir(parents=True)
    (wav / M4A).write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00")
    (wav / "id10001" / "1zcIwhmdeo4" / "notes.txt").write_text("not audio")
    if with_split:
        lines = [f"{d} {rel}" for rel, (d, _) in GOOD.items()] + [f"1 {CORRUPT}", "3 id10009/gone/00001.wav"]
        (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return root


def rejected(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "voxceleb_mul_rejected.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows)
    return by_id


def test_iden_split_gives_train_dev_test(tmp_path, make_tone, no_ffmpeg):
    root = build(tmp_path / "voxceleb1", make_tone)
    out = tmp_path / "out"
    result = prepare_voxceleb(root, out, workers=1)

    names = {"1": "train", "2": "dev", "3": "test"}
    for split in ("train", "dev", "test"):
        utts = read_manifest(out / f"voxceleb_mul_{split}.jsonl")
        want = {vox_id(rel): sec for rel, (d, sec) in GOOD.items() if names[d] == split}
        assert {u.id: u.duration for u in utts} == pytest.approx(want, abs=1e-4)
        for u in utts:
            assert u.speaker == Path(u.audio).parent.parent.name == u.id[:7]
            assert u.extra["video"] == Path(u.audio).parent.name
            assert (u.text, u.language, u.sample_rate) == ("", "mul", 16000)
            assert u.audio_path().is_file()
    # C7k7C-PDvAA has a dash in the video id; the speaker still comes from the folder
    test = {u.id: u for u in read_manifest(out / "voxceleb_mul_test.jsonl")}
    assert test["id10002-C7k7C-PDvAA-00003"].speaker == "id10002"
    assert test["id10002-C7k7C-PDvAA-00003"].extra["video"] == "C7k7C-PDvAA"

    rej = rejected(out)
    assert sorted(rej) == sorted(vox_id(p) for p in (UNLISTED, CORRUPT, M4A, "id10009/gone/00001.wav"))
    gone = rej[vox_id("id10009/gone/00001.wav")]
    assert gone["reason"] == "missing audio file" and "split file" in gone["detail"]
    assert rej[vox_id(UNLISTED)]["reason"] == "not in split file"
    assert "iden_split.txt" in rej[vox_id(UNLISTED)]["detail"]
    assert rej[vox_id(CORRUPT)]["reason"] == "unreadable audio"
    assert rej[vox_id(CORRUPT)]["source"] == CORRUPT
    m4a = rej[vox_id(M4A)]
    assert m4a["reason"] == "ffmpeg not installed"
    assert "install ffmpeg (apt install ffmpeg)" in m4a["detail"] and "convert" in m4a["detail"]
    assert m4a["source"] == M4A and m4a["audio"].endswith(".m4a")
    # every audio file is either kept or rejected, and so is every split-file line without a file
    n_audio = sum(1 for p in (root / "wav").rglob("*") if p.suffix in (".wav", ".m4a"))
    assert sum(len(v) for v in result.splits.values()) + len(result.rejected) == n_audio + 1
    summary = result.summary()
    assert re.search(r"train\s+kept\s+3 utterances", summary)
    assert "ffmpeg not installed" in summary and "not in split file" in summary


def test_without_split_file_everything_goes_to_all(tmp_path, make_tone, no_ffmpeg):
    root = build(tmp_path / "vox", make_tone, with_split=False)
    out = tmp_path / "out"
    result = prepare_voxceleb(root, out, workers=1)
    assert list(result.splits) == ["all"]
    utts = read_manifest(out / "voxceleb_mul_all.jsonl")
    assert sorted(u.id for u in utts) == sorted(vox_id(r) for r in [*GOOD, UNLISTED])
    assert {u.speaker for u in utts} == {"id10001", "id10002", "id10003"}
    assert sorted(r["reason"] for r in rejected(out).values()) == ["ffmpeg not installed", "unreadable audio"]


def test_explicit_split_file_and_bad_split_line(tmp_path, make_tone, no_ffmpeg):
    root = build(tmp_path / "vox", make_tone, with_split=False)
    split = tmp_path / "my_split.txt"
    split.write_text("".join(f"{d} {rel}\n" for rel, (d, _) in GOOD.items()) + f"2 {UNLISTED}\n")
    out = tmp_path / "out"
    result = prepare_voxceleb(root, out, split_file=split, workers=1)
    assert vox_id(UNLISTED) in {u.id for u in result.splits["dev"]}
    assert set(rejected(out)) == {vox_id(CORRUPT), vox_id(M4A)}

    split.write_text(f"1 {UNLISTED}\n\n4 id10001/x/00001.wav\n")
    with pytest.raises(ValueError, match=r"my_split\.txt:3: expected"):
        prepare_voxceleb(root, out, split_file=split, force=True)


VOX2 = {"id00012/21Uxsk56VDQ/00001.m4a": 0.8, "id00012/21Uxsk56VDQ/00002.m4a": 0.6,
        "id00015/0fijmz4vTVU/00001.m4a": 1.1}


def build_vox2(root: Path, make_tone) -> Path:
    """VoxCeleb2's dev set as it ships: dev/aac/idNNNNN/<video>/<utt>.m4a (AAC in MP4, 16 kHz mono), plus one
    m4a that is not AAC at all."""
    for i, (rel, seconds) in enumerate(VOX2.items()):
        wav = make_tone(root / "src" / f"{i}.wav", seconds=seconds, freq=200 + 40 * i)
        encode(wav, root / "dev" / "aac" / rel)
    (root / "dev" / "aac" / "id00015" / "0fijmz4vTVU" / "00002.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    return root


@requires_ffmpeg
def test_voxceleb2_m4a_prepared_through_ffmpeg(tmp_path, make_tone):
    root = build_vox2(tmp_path / "vox2", make_tone)
    out = tmp_path / "out"
    result = prepare_voxceleb(root, out, workers=1)
    utts = {u.id: u for u in read_manifest(out / "voxceleb_mul_all.jsonl")}
    assert {k: (u.speaker, u.duration, u.sample_rate) for k, u in utts.items()} == {
        vox_id(rel): (rel[:7], pytest.approx(seconds, abs=1e-3), 16000) for rel, seconds in VOX2.items()}
    assert all(u.audio.endswith(".m4a") for u in utts.values())
    (bad,) = result.rejected
    assert (bad.id, bad.reason) == ("id00015-0fijmz4vTVU-00002", "unreadable audio")
    assert bad.detail.startswith("unreadable or corrupt audio (ffprobe: ")
    # the manifest's clips load like any others (mono, 16 kHz)
    from speech_tl.audio import load_checked

    u = utts[vox_id("id00015/0fijmz4vTVU/00001.m4a")]
    assert load_checked(u.audio_path()).shape == (int(round(u.duration * 16000)),)


def test_voxceleb2_m4a_without_ffmpeg(tmp_path, no_ffmpeg):
    root = tmp_path / "vox2"
    for rel in VOX2:
        (root / "dev" / "aac" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "dev" / "aac" / rel).write_bytes(b"\x00")
    out = tmp_path / "out"
    result = prepare_voxceleb(root, out, workers=1)
    assert result.splits == {"all": []}
    assert [r.reason for r in result.rejected] == ["ffmpeg not installed"] * 3
    assert all("install ffmpeg (apt install ffmpeg)" in r.detail for r in result.rejected)
    assert re.search(r"3\s+ffmpeg not installed", result.summary())


def test_speaker_folders_directly_and_not_voxceleb(tmp_path, make_tone):
    make_tone(tmp_path / "flat" / "id10001" / "vid" / "00001.wav", seconds=0.3)
    result = prepare_voxceleb(tmp_path / "flat", tmp_path / "out", workers=1)
    assert [u.id for u in result.splits["all"]] == ["id10001-vid-00001"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no VoxCeleb layout"):
        prepare_voxceleb(tmp_path / "empty", tmp_path / "out2")


def test_skip_and_cli(tmp_path, make_tone, no_ffmpeg):
    root = build(tmp_path / "vox", make_tone)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "voxceleb", str(root), "--out-dir", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "voxceleb (mul):" in res.output and "apt install" not in res.output  # the summary lists reasons only
    assert "ffmpeg not installed" in res.output
    res = runner.invoke(main, ["prepare", "voxceleb", str(root), "--out-dir", str(out)])
    assert res.exit_code == 0 and "already prepared with the same parameters, reused" in res.output
    assert len(read_manifest(out / "voxceleb_mul_train.jsonl")) == 3
    other = tmp_path / "copy"  # the same corpus from another place: other parameters
    shutil.copytree(root, other)
    assert_other_parameters_refused_unless_overwrite(["prepare", "voxceleb", str(other), "--out-dir", str(out),
                                                      "--workers", "1"], out, out / "voxceleb_mul_train.jsonl")
