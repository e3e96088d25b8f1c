"""The ``speech-tl manifest`` commands through click's CliRunner, on real manifests and audio files; and the
command line's contract (exit statuses, error lines, log on stderr) through real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.manifest import manifest_stats, read_manifest

SPEAKERS = ("anna", "bert", "carl", "dora", "emil", "frau", "gert", "hans", "ida", "jan")
TEXTS = ("Grüße aus Köln.", "Die Straße ist naß.", "Öl und Maß.", "Hallo Welt.", "Guten Morgen.")


def run(*args: str):
    return CliRunner().invoke(main, ["manifest", *args], catch_exceptions=False)


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path, make_tone):
    """A corpus folder: 10 speakers x 3 short real WAV files, and ``all.jsonl`` with relative paths."""
    root = tmp_path / "corpus"
    rows = []
    for s, spk in enumerate(SPEAKERS):
        for k in range(3):
            i = s * 3 + k
            seconds = 0.2 + 0.1 * k
            make_tone(root / "clips" / spk / f"{i}.wav", seconds=seconds, freq=200.0 + 20 * s, seed=i)
            rows.append({"id": f"{spk}-{i:03d}", "audio": f"clips/{spk}/{i}.wav", "duration": round(seconds, 3),
                         "text": TEXTS[i % len(TEXTS)], "speaker": spk, "language": "de"})
    return write_rows(root / "all.jsonl", rows)


def single_error_line(result) -> str:
    """The whole output of a failed command: exactly one line, ``error: ...``."""
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].lower().startswith("error: "), result.output
    return lines[0]


def assert_refused(result, path: Path, before: bytes) -> str:
    """An existing output refused: exit 1, one error line naming it and --overwrite, the file as it was."""
    assert result.exit_code == 1, result.output
    line = single_error_line(result)
    assert str(path) in line and "--overwrite" in line, line
    assert path.read_bytes() == before
    return line


# --------------------------------------------------------------------------- the contract of every command

def speech_tl(*args, patch: str = "") -> subprocess.CompletedProcess:
    """``speech-tl ARGS`` in a fresh process: its real stdout, stderr, exit status and traceback. ``patch``:
    Python run before the command (to plant a bug or log lines in a package function)."""
    code = f"{patch}\nfrom speech_tl.cli import main\nmain(prog_name='speech-tl')"
    env = {k: v for k, v in os.environ.items() if k != "RANK"}  # rank 0 (or no DDP): the whole log
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)


def one_row_manifest(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "m.jsonl", [{"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "hallo",
                                              "speaker": "anna", "language": "de"}])


def test_error_contract_expected_error_is_one_line_and_exit_1(tmp_path):
    r = speech_tl("manifest", "stats", tmp_path / "none.jsonl")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'none.jsonl'}: manifest not found"), r.stderr


def test_error_contract_debug_shows_the_traceback_of_an_expected_error(tmp_path):
    r = speech_tl("--debug", "manifest", "stats", tmp_path / "none.jsonl")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Traceback (most recent call last):"), r.stderr
    assert r.stderr.splitlines()[-1].startswith("speech_tl.manifest.ManifestError: ")


def test_error_contract_usage_error_exits_2(tmp_path):
    r = speech_tl("manifest", "stats", "--no-such-option", one_row_manifest(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("Usage: speech-tl manifest stats") and "No such option" in r.stderr
    assert "--no-such-option" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_error_contract_a_bug_is_not_an_error_line_but_its_traceback(tmp_path, debug):
    bug = "import speech_tl.manifest\nspeech_tl.manifest.manifest_stats = lambda utts: 1 / 0"
    r = speech_tl(*(["--debug"] if debug else []), "manifest", "stats", one_row_manifest(tmp_path), patch=bug)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Traceback (most recent call last):"), r.stderr
    assert r.stderr.splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert not any(line.startswith("error: ") for line in r.stderr.splitlines())


LOG_LINES = """
import logging
import speech_tl.manifest

stats = speech_tl.manifest.manifest_stats

def logged_stats(utts):
    log = logging.getLogger("speech_tl")
    log.debug("debug: counting")
    log.info("info: %d utterance(s)", len(utts))
    log.warning("warning: a note")
    return stats(utts)

speech_tl.manifest.manifest_stats = logged_stats
"""


@pytest.mark.parametrize("flags, shown", [([], ["info", "warning"]), (["-q"], ["warning"]),
                                          (["-v"], ["debug", "info", "warning"])])
def test_log_contract_levels_on_stderr_and_the_result_alone_on_stdout(tmp_path, flags, shown):
    manifest = one_row_manifest(tmp_path)
    r = speech_tl(*flags, "manifest", "stats", "--json", manifest, patch=LOG_LINES)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[str(manifest)]["utterances"] == 1  # stdout: the JSON result and nothing else
    assert [line.split(":")[0] for line in r.stderr.splitlines()] == shown, r.stderr


# --------------------------------------------------------------------------- stats

def test_stats_text(corpus):
    result = run("stats", str(corpus))
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[0] == str(corpus)
    assert "  utterances  30" in out
    hours = sum(r["duration"] for r in rows_of(corpus)) / 3600
    assert f"  hours       {hours:.3f}" in out
    assert "  speakers    10" in out
    assert "  languages   de (30)" in out
    assert "  duration    min 0.20 s, median 0.30 s, max 0.40 s" in out
    for spk in SPEAKERS:
        assert any(line.split()[:2] == [spk, "3"] for line in out.splitlines()), spk
    assert "ß" in out and "ü" in out and "Ö" in out and "␣" in out


def test_stats_max_speakers_and_several_manifests(corpus, tmp_path):
    other = write_rows(tmp_path / "other.jsonl", rows_of(corpus)[:4])
    result = run("stats", "--max-speakers", "2", str(corpus), str(other))
    assert result.exit_code == 0, result.output
    assert "    ... and 8 more speakers" in result.output
    assert str(other) in result.output and "  utterances  4" in result.output
    blocks = result.output.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [str(corpus), str(other)]


def test_stats_json_parses_and_matches_library(corpus, tmp_path):
    other = write_rows(tmp_path / "other.jsonl", rows_of(corpus)[3:9])
    result = run("stats", "--json", str(corpus), str(other))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == [str(corpus), str(other)]
    assert data[str(corpus)] == json.loads(json.dumps(manifest_stats(read_manifest(corpus))))
    assert data[str(corpus)]["utterances"] == 30 and data[str(corpus)]["speakers"] == 10
    assert data[str(other)]["per_speaker"] == {"bert": {"utterances": 3, "seconds": 0.9},
                                               "carl": {"utterances": 3, "seconds": 0.9}}
    assert "ß" in data[str(corpus)]["characters"]
    assert "ß" in result.output  # not \u-escaped


def test_stats_bad_line_is_one_error_line_with_file_and_line(tmp_path, corpus):
    lines = corpus.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace('"speaker": "bert"', '"speaker": 42')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("stats", str(bad))
    assert result.exit_code == 1
    line = single_error_line(result)
    assert f"{bad}:5:" in line and "'speaker'" in line
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content, expect", [
    ('{"id": "a"\n', ":1: not valid JSON"),
    ('{"id": "a", "audio": "x.wav", "duration": -2, "text": "t", "speaker": "s", "language": "de"}\n',
     ":1: field 'duration'"),
    ('\n{"id": "a", "audio": "x.wav", "duration": 1, "text": "t", "speaker": "s"}\n', ":2: missing field(s) language"),
])
def test_bad_manifest_exit_1_for_every_command(tmp_path, content, expect):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    for args in (["stats", str(bad)], ["validate", str(bad)], ["filter", str(bad), "--out", str(tmp_path / "o.jsonl")],
                 ["split", str(bad), "--out-dir", str(tmp_path / "sp")], ["to-kaldi", str(bad), str(tmp_path / "k")]):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        line = single_error_line(result)
        assert f"{bad}{expect}" in line, (args, line)
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "sp").exists() and not (tmp_path / "k").exists()


def test_missing_manifest_exit_1(tmp_path):
    result = run("stats", str(tmp_path / "none.jsonl"))
    assert result.exit_code == 1
    assert "none.jsonl: manifest not found" in single_error_line(result)


# --------------------------------------------------------------------------- validate

def test_validate_ok(corpus):
    result = run("validate", str(corpus))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{corpus}: 30 utterances, 0 problem(s)"
    result = run("validate", "--check-audio", str(corpus))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{corpus}: 30 utterances, 0 problem(s)"


def test_validate_missing_audio_exits_1(corpus):
    (corpus.parent / "clips" / "carl" / "7.wav").unlink()
    result = run("validate", str(corpus))
    assert result.exit_code == 1
    assert f"carl-007: audio file not found: {corpus.parent / 'clips' / 'carl' / '7.wav'}" in result.stderr
    assert result.stdout.strip() == f"{corpus}: 30 utterances, 1 problem(s)"


def test_validate_check_audio_reports_silent_and_clipped_files(corpus):
    clips = corpus.parent / "clips"
    sf.write(str(clips / "bert" / "4.wav"), np.zeros(4800, dtype=np.float32), 16000, subtype="PCM_16")
    square = np.sign(np.sin(2 * np.pi * 100 * np.arange(4800) / 16000)).astype(np.float32)
    sf.write(str(clips / "ida" / "25.wav"), square, 16000, subtype="PCM_16")
    (clips / "jan" / "27.wav").write_bytes(b"RIFF\x00\x00garbage")
    result = run("validate", "--check-audio", str(corpus))
    assert result.exit_code == 1
    err = result.stderr.splitlines()
    assert len(err) == 3, result.stderr
    assert err[0].startswith("bert-004: ") and str(clips / "bert" / "4.wav") in err[0] and "all silence" in err[0]
    assert err[1].startswith("ida-025: ") and "heavily clipped" in err[1]
    assert err[2].startswith("jan-027: ") and "unreadable or corrupt audio" in err[2]
    assert result.stdout.strip() == f"{corpus}: 30 utterances, 3 problem(s)"
    # without --check-audio the files are only checked for existence
    assert run("validate", str(corpus)).exit_code == 0


def test_validate_check_audio_checks_segments_including_offset_zero(tmp_path):
    """A long file cut into segments: every segment is checked on its own, also the one at offset 0."""
    audio = tmp_path / "long.wav"
    t = np.arange(32000) / 16000
    x = np.where(t < 1.0, 0.0, 0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # 1 s silence, 1 s tone
    sf.write(str(audio), x, 16000, subtype="PCM_16")
    base = {"audio": "long.wav", "text": "x", "speaker": "s", "language": "de"}
    manifest = write_rows(tmp_path / "seg.jsonl", [
        {**base, "id": "s-first", "offset": 0.0, "duration": 1.0},
        {**base, "id": "s-second", "offset": 1.0, "duration": 1.0},
    ])
    result = run("validate", "--check-audio", str(manifest))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("s-first: ")]
    assert "all silence" in result.stderr
    assert result.stdout.strip() == f"{manifest}: 2 utterances, 1 problem(s)"


def test_validate_check_audio_reports_segment_past_end(tmp_path, make_tone):
    make_tone(tmp_path / "a.wav", seconds=0.5)
    manifest = write_rows(tmp_path / "m.jsonl", [{"id": "x", "audio": "a.wav", "offset": 2.0, "duration": 1.0,
                                                   "text": "x", "speaker": "s", "language": "de"}])
    result = run("validate", "--check-audio", str(manifest))
    assert result.exit_code == 1
    assert "x: " in result.stderr and "no samples at offset 2 s" in result.stderr


# --------------------------------------------------------------------------- filter

def test_filter_by_duration_and_vocab(corpus, tmp_path):
    out = tmp_path / "filtered" / "keep.jsonl"
    vocab = "abcdefghijklmnopqrstuvwxyzäöüßABCDEFGHIJKLMNOPQRSTUVWXYZ .,"
    result = run("filter", str(corpus), "--out", str(out), "--min-duration", "0.25", "--max-duration", "0.35",
                 "--vocab", vocab.replace("Ö", ""))
    assert result.exit_code == 0, result.output
    rej = out.with_name("keep.rejected.jsonl")
    kept, rejected = read_manifest(out), rows_of(rej)
    # durations 0.2 / 0.3 / 0.4 per speaker: only the 0.3 s clips pass; 'Öl und Maß.' is out of the vocabulary
    assert all(u.duration == 0.3 for u in kept)
    assert all("Ö" not in u.text for u in kept)
    assert result.output.strip() == f"kept {len(kept)} -> {out}; rejected {len(rejected)} -> {rej}"
    assert len(kept) + len(rejected) == 30
    assert sorted([u.id for u in kept] + [r["id"] for r in rejected]) == sorted(r["id"] for r in rows_of(corpus))
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons["anna-000"] == "shorter than 0.25 s (0.20 s)"
    assert reasons["anna-002"] == "longer than 0.35 s (0.40 s)"
    vocab_rejects = [r for r in rejected if r["duration"] == 0.3]
    assert vocab_rejects and all(r["text"] == "Öl und Maß." for r in vocab_rejects)
    assert all(r["reason"] == "characters outside the vocabulary: 'Ö'" for r in vocab_rejects)
    # the kept manifest lives elsewhere, yet its audio paths still point at the real files
    assert all(u.audio_path().is_file() for u in kept)
    assert all(Path(r["audio"]).is_absolute() for r in rows_of(out))


def test_filter_vocab_from_file_with_space_line(corpus, tmp_path):
    chars = sorted(set("".join(TEXTS)) - {" "})
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(chars) + "\n\n", encoding="utf-8")  # the empty line stands for the space
    out = corpus.parent / "keep.jsonl"
    result = run("filter", str(corpus), "--out", str(out), "--vocab", f"@{vocab_file}")
    assert result.exit_code == 0, result.output
    assert len(read_manifest(out)) == 30 and rows_of(out.with_name("keep.rejected.jsonl")) == []
    assert [r["audio"] for r in rows_of(out)] == [r["audio"] for r in rows_of(corpus)]  # same folder: relative

    vocab_file.write_text("\n".join(chars) + "\n", encoding="utf-8")  # no space allowed now
    result = run("filter", str(corpus), "--out", str(out), "--vocab", f"@{vocab_file}", "--overwrite")
    assert result.exit_code == 0
    assert read_manifest(out) == []
    assert all(r["reason"] == "characters outside the vocabulary: ' '"
               for r in rows_of(out.with_name("keep.rejected.jsonl")))


def test_filter_missing_vocab_file_is_user_error(corpus, tmp_path):
    result = run("filter", str(corpus), "--out", str(tmp_path / "o.jsonl"), "--vocab", f"@{tmp_path / 'no.txt'}")
    assert result.exit_code == 1
    assert "no.txt" in single_error_line(result)


def test_filter_refuses_an_existing_output_unless_overwrite(corpus, tmp_path):
    out = tmp_path / "keep.jsonl"
    rej = tmp_path / "keep.rejected.jsonl"
    out.write_text("mine\n", encoding="utf-8")
    assert_refused(run("filter", str(corpus), "--out", str(out)), out, b"mine\n")
    assert not rej.exists()
    out.unlink()
    rej.write_text("mine too\n", encoding="utf-8")  # the rejected file beside OUT is an output as well
    assert_refused(run("filter", str(corpus), "--out", str(out)), rej, b"mine too\n")
    assert not out.exists()
    out.write_text("mine\n", encoding="utf-8")
    result = run("filter", str(corpus), "--out", str(out), "--max-duration", "0.25", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read_manifest(out)) == 10 and len(rows_of(rej)) == 20


def test_filter_into_its_own_input_is_refused_even_with_overwrite(corpus):
    before = corpus.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = run("filter", str(corpus), "--out", str(corpus), "--max-duration", "0.25", *extra)
        assert result.exit_code == 1, result.output
        line = single_error_line(result)
        assert str(corpus) in line and "also an input" in line
        assert corpus.read_bytes() == before
    assert not corpus.with_name("all.rejected.jsonl").exists()


# --------------------------------------------------------------------------- split

def test_split_by_speaker_writes_disjoint_parts(corpus, tmp_path):
    out_dir = tmp_path / "splits"
    result = run("split", str(corpus), "--out-dir", str(out_dir), "--seed", "1")
    assert result.exit_code == 0, result.output
    parts = {name: read_manifest(out_dir / f"all_{name}.jsonl") for name in ("train", "dev", "test")}
    assert sorted(p.name for p in out_dir.iterdir()) == [".all_split.json", "all_dev.jsonl", "all_test.jsonl",
                                                         "all_train.jsonl"]  # and the list of what it wrote
    speakers = {n: {u.speaker for u in us} for n, us in parts.items()}
    assert {n: len(s) for n, s in speakers.items()} == {"train": 8, "dev": 1, "test": 1}
    assert speakers["train"].isdisjoint(speakers["dev"] | speakers["test"])
    assert speakers["dev"].isdisjoint(speakers["test"])
    assert sorted(u.id for us in parts.values() for u in us) == sorted(r["id"] for r in rows_of(corpus))
    assert all(u.audio_path().is_file() for us in parts.values() for u in us)
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["train", "24", "utterances,", "8", "speakers"]
    assert lines[1].split() == ["dev", "3", "utterances,", "1", "speakers"]

    again = tmp_path / "again"
    assert run("split", str(corpus), "--out-dir", str(again), "--seed", "1").exit_code == 0
    for name in ("train", "dev", "test"):
        assert (again / f"all_{name}.jsonl").read_bytes() == (out_dir / f"all_{name}.jsonl").read_bytes()


def test_split_into_manifest_folder_keeps_relative_paths(corpus):
    result = run("split", str(corpus), "--out-dir", str(corpus.parent), "--fractions", "a=1,b=1", "--by", "text")
    assert result.exit_code == 0, result.output
    a, b = rows_of(corpus.parent / "all_a.jsonl"), rows_of(corpus.parent / "all_b.jsonl")
    assert len(a) + len(b) == 30
    assert {r["text"] for r in a}.isdisjoint({r["text"] for r in b})
    assert all(r["audio"].startswith("clips/") for r in a + b)


def test_split_by_speaker_and_text_writes_rejected(corpus, tmp_path):
    out_dir = tmp_path / "st"
    result = run("split", str(corpus), "--out-dir", str(out_dir), "--by", "speaker+text",
                 "--fractions", "train=0.5,test=0.5", "--seed", "0")
    assert result.exit_code == 0, result.output
    train, test = rows_of(out_dir / "all_train.jsonl"), rows_of(out_dir / "all_test.jsonl")
    rej_path = out_dir / "all_split-rejected.jsonl"
    rejected = rows_of(rej_path)
    assert {r["speaker"] for r in train}.isdisjoint({r["speaker"] for r in test})
    assert {r["text"] for r in train}.isdisjoint({r["text"] for r in test})
    assert rejected and len(train) + len(test) + len(rejected) == 30
    assert all("speaker assigned to" in r["reason"] for r in rejected)
    assert f"not placed: {len(rejected)} utterances" in result.output and str(rej_path) in result.output


def test_split_refuses_existing_parts_unless_overwrite(corpus, tmp_path):
    out_dir = tmp_path / "splits"
    dev = out_dir / "all_dev.jsonl"
    out_dir.mkdir()
    dev.write_text("mine\n", encoding="utf-8")
    assert_refused(run("split", str(corpus), "--out-dir", str(out_dir), "--seed", "1"), dev, b"mine\n")
    assert sorted(p.name for p in out_dir.iterdir()) == ["all_dev.jsonl"]  # no part written
    result = run("split", str(corpus), "--out-dir", str(out_dir), "--seed", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read_manifest(dev)) == 3 and len(read_manifest(out_dir / "all_train.jsonl")) == 24


def test_split_overwrite_leaves_exactly_what_the_new_split_writes(corpus, tmp_path):
    """An earlier split's parts (and its rejected file) that the new one does not write go with --overwrite;
    files of the folder no split wrote stay, even when their names look like parts."""
    out_dir = tmp_path / "splits"
    args = ["split", str(corpus), "--out-dir", str(out_dir), "--seed", "0"]
    result = run(*args, "--by", "speaker+text", "--fractions", "train=0.5,dev=0.25,test=0.25")
    assert result.exit_code == 0, result.output
    first = {"all_train.jsonl", "all_dev.jsonl", "all_test.jsonl", "all_split-rejected.jsonl", ".all_split.json"}
    assert {p.name for p in out_dir.iterdir()} == first
    mine = {"all_notes.jsonl": "mine\n", "other_test.jsonl": "mine\n", ".all_test.jsonl.keep": "mine\n"}
    for name, text in mine.items():
        (out_dir / name).write_text(text)
    assert run(*args, "--fractions", "a=1,b=1").exit_code == 0  # new parts, nothing replaced: the old ones stay
    assert {p.name for p in out_dir.iterdir()} == first | set(mine) | {"all_a.jsonl", "all_b.jsonl"}
    result = run(*args, "--fractions", "train=0.9,dev=0.1", "--overwrite")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out_dir.iterdir()} == {"all_train.jsonl", "all_dev.jsonl", ".all_split.json"} | set(mine)
    assert all((out_dir / n).read_text() == text for n, text in mine.items())
    assert sorted(u.id for n in ("train", "dev") for u in read_manifest(out_dir / f"all_{n}.jsonl")) == \
        sorted(r["id"] for r in rows_of(corpus))
    assert json.loads((out_dir / ".all_split.json").read_text())["files"] == ["all_train.jsonl", "all_dev.jsonl"]
    assert "all_test.jsonl" in result.output and "all_split-rejected.jsonl" in result.output  # said, not silent


@pytest.mark.parametrize("fractions", ["train=0.8,dev", "train=abc", "train=-1,dev=2", "a=0,b=0"])
def test_split_bad_fractions_exit_1(corpus, tmp_path, fractions):
    result = run("split", str(corpus), "--out-dir", str(tmp_path / "x"), "--fractions", fractions)
    assert result.exit_code == 1
    assert "fractions" in single_error_line(result)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- to-kaldi

def test_to_kaldi(corpus, tmp_path):
    data_dir = tmp_path / "kaldi"
    result = run("to-kaldi", str(corpus), str(data_dir))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"30 utterances -> {data_dir}"
    assert sorted(p.name for p in data_dir.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    wav = dict(line.split(" ", 1) for line in (data_dir / "wav.scp").read_text(encoding="utf-8").splitlines())
    assert len(wav) == 30
    assert wav["anna-000"] == str((corpus.parent / "clips" / "anna" / "0.wav").resolve())
    assert all(Path(p).is_file() for p in wav.values())
    text = dict(line.split(" ", 1) for line in (data_dir / "text").read_text(encoding="utf-8").splitlines())
    assert text["bert-004"] == TEXTS[4] and text["anna-002"] == "Öl und Maß."
    utt2spk = (data_dir / "utt2spk").read_text(encoding="utf-8").splitlines()
    assert utt2spk == sorted(utt2spk) and "carl-006 carl" in utt2spk
    spk2utt = (data_dir / "spk2utt").read_text(encoding="utf-8").splitlines()
    assert "anna anna-000 anna-001 anna-002" in spk2utt and len(spk2utt) == 10


def test_to_kaldi_segments_and_speaker_prefix(tmp_path, make_tone):
    make_tone(tmp_path / "long.wav", seconds=2.0)
    base = {"audio": "long.wav", "text": "Grüß Gott", "language": "de"}
    manifest = write_rows(tmp_path / "m.jsonl", [
        {**base, "id": "u1", "speaker": "spk", "offset": 0.0, "duration": 1.0},
        {**base, "id": "u2", "speaker": "spk", "offset": 1.0, "duration": 0.5},
    ])
    data_dir = tmp_path / "k"
    result = run("to-kaldi", str(manifest), str(data_dir))
    assert result.exit_code == 0, result.output
    assert (data_dir / "segments").read_text(encoding="utf-8").splitlines() == [
        "spk-u1 rec000000 0.000 1.000", "spk-u2 rec000000 1.000 1.500"]
    assert (data_dir / "wav.scp").read_text(encoding="utf-8").splitlines() == [
        f"rec000000 {(tmp_path / 'long.wav').resolve()}"]


def test_to_kaldi_refuses_an_existing_data_dir_unless_overwrite(corpus, tmp_path):
    data_dir = tmp_path / "kaldi"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("other files do not matter\n")
    assert run("to-kaldi", str(corpus), str(data_dir)).exit_code == 0
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    (data_dir / "segments").write_text("stale\n")  # from an earlier export
    result = run("to-kaldi", str(corpus), str(data_dir))
    assert_refused(result, data_dir / "wav.scp", before["wav.scp"])
    assert {p.name: p.read_bytes() for p in data_dir.iterdir() if p.name != "segments"} == before
    result = run("to-kaldi", str(corpus), str(data_dir), "--overwrite")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before  # the stale table is gone


def test_to_kaldi_removes_what_a_killed_export_left(corpus, tmp_path):
    """Temporary tables and WAV folders a SIGKILLed export left in DATA_DIR go on the next export; hidden files of
    other names (another file's temporary among them) stay."""
    from tests.killed_write import killed_while_writing

    data_dir = tmp_path / "kaldi"
    assert run("to-kaldi", str(corpus), str(data_dir)).exit_code == 0
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    left = killed_while_writing(data_dir / "wav.scp") + killed_while_writing(data_dir / "text") + \
        killed_while_writing(data_dir / "wav", "dir")
    assert len(left) == 3
    kept = killed_while_writing(data_dir / "notes.txt")
    for name in (".wav.scp.orig", ".wav.tmp-mine", ".text.12345678.tmp.bak"):
        (data_dir / name).write_text("mine")
        kept.append(data_dir / name)
    result = run("to-kaldi", str(corpus), str(data_dir), "--overwrite")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in data_dir.iterdir() if not p.name.startswith(".")} == before
    assert sorted(p for p in data_dir.iterdir() if p.name.startswith(".")) == sorted(kept)


def test_to_kaldi_speaker_with_space_exit_1(tmp_path):
    manifest = write_rows(tmp_path / "m.jsonl", [{"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "x",
                                                   "speaker": "two words", "language": "de"}])
    result = run("to-kaldi", str(manifest), str(tmp_path / "k"))
    assert result.exit_code == 1
    assert "'two words'" in single_error_line(result)


def test_manifest_merge_rebases_paths_and_refuses_duplicate_ids(tmp_path, make_tone):
    from speech_tl.manifest import read_manifest

    for name in ("a", "b"):
        make_tone(tmp_path / name / "x.wav")
        (tmp_path / name / "m.jsonl").write_text(json.dumps(
            {"id": f"{name}-1", "audio": "x.wav", "duration": 0.5, "text": "t", "speaker": "s", "language": "de"})
            + "\n")
    out = tmp_path / "merged" / "all.jsonl"
    a, b = str(tmp_path / "a" / "m.jsonl"), str(tmp_path / "b" / "m.jsonl")
    res = CliRunner().invoke(main, ["manifest", "merge", a, b, "--out", str(out)])
    assert res.exit_code == 0, res.output
    utts = read_manifest(out)
    assert [u.id for u in utts] == ["a-1", "b-1"] and all(u.audio_path().is_file() for u in utts)
    res = CliRunner().invoke(main, ["manifest", "merge", a, a, "--out", str(tmp_path / "dup.jsonl")])
    assert res.exit_code == 1 and "a/m.jsonl:1: id 'a-1' is also in" in res.output
    res = CliRunner().invoke(main, ["manifest", "merge", str(out), "--out", str(out)])
    assert res.exit_code == 1 and "is one of the inputs" in res.output


def test_manifest_merge_refuses_an_existing_output_unless_overwrite(corpus, tmp_path):
    out = tmp_path / "merged.jsonl"
    out.write_text("mine\n", encoding="utf-8")
    assert_refused(run("merge", str(corpus), "--out", str(out)), out, b"mine\n")
    result = run("merge", str(corpus), "--out", str(out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read_manifest(out)) == 30
    before = corpus.read_bytes()
    result = run("merge", str(corpus), "--out", str(corpus), "--overwrite")  # its own input: never
    assert result.exit_code != 0 and "is one of the inputs" in result.output and corpus.read_bytes() == before
