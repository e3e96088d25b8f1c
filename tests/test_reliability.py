"""Bad input, tried for real through the ``speech-tl`` command, and the README's table of what each gets.

Every row of the README's "Reliability" table comes from a case here: the bad input is made (real files,
real SQLite databases, a real tiny training run), the real command runs in-process through click, and the
exit status and the line it prints are checked. The table in README.md is this module's output:
``python -m tests.test_reliability`` rewrites it, and ``test_the_readme_table_is_what_the_commands_print``
fails when a message changes and the README was not regenerated.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BEGIN, END = "<!-- reliability table: python -m tests.test_reliability -->", "<!-- end of reliability table -->"
SR = 16000


@dataclass
class Case:
    """One bad input: ``bad`` says what it is (Markdown); ``make(tmp)`` writes it and returns the command's
    arguments (or arguments and environment); the command must exit ``status`` with a stderr line holding
    ``expect``."""

    area: str
    bad: str
    make: Callable
    status: int
    expect: str


def tone(path: Path, seconds: float = 0.5, amp: float = 0.3, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * SR)) / SR
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, subtype=subtype, format="WAV")
    return path


def row(uid: str, audio: str, text: str = "hallo", duration: float = 0.5, **extra) -> dict:
    return {"id": uid, "audio": audio, "duration": duration, "text": text, "speaker": "anna", "language": "de",
            **extra}


def manifest(path: Path, rows: list[dict] | str) -> Path:
    text = rows if isinstance(rows, str) else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- manifests and audio files

def not_json(tmp):
    good = json.dumps(row("u1", "a.wav"))
    return ["manifest", "stats", manifest(tmp / "m.jsonl", f"{good}\n{{\"id\": \"u2\", \"audio\": \n")]


def missing_field(tmp):
    r = row("u1", "a.wav")
    del r["language"]
    return ["manifest", "stats", manifest(tmp / "m.jsonl", [r])]


def wrong_type(tmp):
    return ["manifest", "stats", manifest(tmp / "m.jsonl", [row("u1", "a.wav", duration=-2)])]


def missing_audio(tmp):
    return ["manifest", "validate", manifest(tmp / "m.jsonl", [row("u1", "clips/gone.wav")])]


def audio_case(writer):
    def make(tmp):
        writer(tmp / "a.wav")
        return ["manifest", "validate", "--check-audio", manifest(tmp / "m.jsonl", [row("u1", "a.wav")])]
    return make


def nan_wav(path: Path) -> Path:
    x = (0.3 * np.sin(np.arange(SR // 2) / 10)).astype(np.float32)
    x[100:200] = np.nan
    sf.write(path, x, SR, subtype="FLOAT")
    return path


def not_audio(path: Path) -> Path:
    path.write_text("this is not audio\n")
    return path


def long_audio(tmp):
    tone(tmp / "long.wav", seconds=12.0)
    return ["manifest", "validate", "--check-audio",
            manifest(tmp / "m.jsonl", [row("u1", "long.wav", duration=12.0)])], {"SPEECH_TL_MAX_AUDIO_SECONDS": "10"}


def m4a_without_ffmpeg(tmp):
    (tmp / "a.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (tmp / "bin").mkdir()  # $PATH: a folder without ffmpeg
    return (["manifest", "validate", "--check-audio", manifest(tmp / "m.jsonl", [row("u1", "a.m4a")])],
            {"PATH": str(tmp / "bin")})


def filter_into_itself(tmp):
    tone(tmp / "a.wav")
    m = manifest(tmp / "m.jsonl", [row("u1", "a.wav")])
    return ["manifest", "filter", m, "--max-duration", "10", "--out", m, "--overwrite"]


def existing_output(tmp):
    tone(tmp / "a.wav")
    m = manifest(tmp / "m.jsonl", [row("u1", "a.wav")])
    (tmp / "short.jsonl").write_text("")
    return ["manifest", "filter", m, "--max-duration", "10", "--out", tmp / "short.jsonl"]


def kaldi_pipe(tmp):
    tone(tmp / "a.wav|")
    return ["manifest", "to-kaldi", manifest(tmp / "m.jsonl", [row("u1", "a.wav|")]), tmp / "kaldi"]


def kaldi_newline(tmp):
    tone(tmp / "a.wav")
    return ["manifest", "to-kaldi", manifest(tmp / "m.jsonl", [row("u1", "a.wav", text="zwei\nZeilen")]),
            tmp / "kaldi"]


# --------------------------------------------------------------------------- configs and training runs

def tiny_config(tmp, **train):
    """A tiny ASR run: a random 2-block Whisper saved in ``tmp``, spelled-tone "speech"; returns its YAML."""
    from speech_tl.config import dump_config
    from tests.tiny_asr import asr_config, save_tiny_whisper, spell

    corpus = tmp / "corpus"
    corpus.mkdir(exist_ok=True)
    rows = []
    for i, w in enumerate(["ab", "ba", "abc", "cab", "cc", "bca"]):
        sf.write(corpus / f"u{i}.wav", spell(w, seed=i), SR)
        rows.append(row(f"u{i}", f"u{i}.wav", text=w.upper(), duration=0.12 * len(w), language="en"))
    manifest(corpus / "dev.jsonl", rows)
    nan_wav(corpus / "nan.wav")
    tone(corpus / "silent.wav", amp=0.0)
    tone(corpus / "clipped.wav", amp=4.0, subtype="FLOAT")
    not_audio(corpus / "text.wav")
    tone(corpus / "short.wav", seconds=0.2)
    rows += [row("nan", "nan.wav", language="en"), row("silent", "silent.wav", language="en"),
             row("clipped", "clipped.wav", language="en"), row("notaudio", "text.wav", language="en"),
             row("toolong", "short.wav", text="ABCABCABCABCABCABCABCABCABCABCABC", duration=0.2, language="en")]
    manifest(corpus / "train.jsonl", rows)
    backbone = save_tiny_whisper(tmp / "whisper")
    cfg = asr_config(corpus, backbone, tmp / "run", max_steps=4, eval_every=4, checkpoint_every=2, log_every=2,
                     num_workers=0, tensorboard=False, **train)
    dump_config(cfg, tmp / "asr.yaml")
    return tmp / "asr.yaml"


def trained(tmp):
    """The tiny run, trained once (left in ``tmp/run``); the YAML."""
    config = tiny_config(tmp)
    result = invoke(["train", "asr", config])
    assert result.exit_code == 0, result.stderr
    return config


def bad_training_audio(tmp):
    return ["train", "asr", tiny_config(tmp)]


def duplicate_yaml_key(tmp):
    config = tiny_config(tmp)
    text = config.read_text()
    config.write_text(text.replace("train:\n", "train:\n  lr: 0.1\n", 1) if "  lr:" in text else text)
    return ["train", "asr", config]


def nan_lr(tmp):
    return ["train", "asr", tiny_config(tmp), "train.lr=.nan"]


def resume_changed(tmp):
    return ["train", "asr", trained(tmp), "train.lr=0.01"]


def restart_over_a_run(tmp):
    return ["train", "asr", trained(tmp), "train.resume=false"]


def truncated_checkpoint(tmp):
    config = trained(tmp)
    state = tmp / "run" / "checkpoint" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    return ["train", "asr", config, "train.max_steps=6"]


def truncated_model(tmp):
    trained(tmp)
    model = tmp / "run" / "best" / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    return ["transcribe", tmp / "run" / "best", tmp / "corpus" / "u0.wav"]


# --------------------------------------------------------------------------- the speaker database

def foreign_db(tmp):
    db = tmp / "notes.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('owner', 'someone else')")
    con.close()
    return ["speakers", "list", "--db", db]


def not_a_db(tmp):
    (tmp / "speakers.db").write_text("name,score\nanna,1\n")
    return ["speakers", "list", "--db", tmp / "speakers.db"]


def newer_schema_db(tmp):
    from speech_tl.speaker.registry import SpeakerRegistry

    db = tmp / "speakers.db"
    SpeakerRegistry(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    return ["speakers", "list", "--db", db]


def unknown_option(tmp):
    return ["manifest", "stats", "--no-such-option", manifest(tmp / "m.jsonl", [row("u1", "a.wav")])]


CASES = [
    Case("manifest", "a manifest line that is not JSON", not_json, 1, "m.jsonl:2: not valid JSON"),
    Case("manifest", "a manifest line without a required field", missing_field, 1,
         "m.jsonl:1: missing field(s) language"),
    Case("manifest", "a field of the wrong type or range (`duration: -2`)", wrong_type, 1,
         "m.jsonl:1: field 'duration'"),
    Case("manifest", "a manifest naming an audio file that is not there", missing_audio, 1, "gone.wav"),
    Case("audio", "audio with NaN samples", audio_case(nan_wav), 1, "contains NaN or Inf samples"),
    Case("audio", "an all-silent recording", audio_case(lambda p: tone(p, amp=0.0)), 1, "all silence"),
    Case("audio", "a heavily clipped recording", audio_case(lambda p: tone(p, amp=4.0, subtype="FLOAT")), 1,
         "heavily clipped"),
    Case("audio", "a file that is not audio, named `.wav`", audio_case(not_audio), 1, "unreadable or corrupt audio"),
    Case("audio", "m4a/AAC audio on a machine without ffmpeg", m4a_without_ffmpeg, 1, "install ffmpeg"),
    Case("audio", "a file longer than the decode limit (`$SPEECH_TL_MAX_AUDIO_SECONDS`, default 3 h)", long_audio, 1,
         "more than the limit of 10 s"),
    Case("training", "training utterances with NaN, silent, clipped or unreadable audio (one run)", bad_training_audio,
         0, "left out for unusable audio"),
    Case("training", "a transcript too long for its audio (CTC can learn nothing from it)", bad_training_audio, 0,
         "have a transcript too long for their audio"),
    Case("config", "a duplicate key in a YAML config", duplicate_yaml_key, 1, "given twice"),
    Case("config", "a non-finite number (`train.lr=.nan`)", nan_lr, 1, "expected a finite number"),
    Case("config", "resuming a run with changed settings (`train.lr=0.01`)", resume_changed, 1, "train.lr"),
    Case("outputs", "starting over in a folder holding a run (`train.resume=false`)", restart_over_a_run, 1,
         "give --overwrite"),
    Case("outputs", "an existing output file (`manifest filter --out`)", existing_output, 1, "--overwrite"),
    Case("outputs", "an output that is also the input, even with `--overwrite`", filter_into_itself, 1, "m.jsonl"),
    Case("checkpoint", "a truncated checkpoint file when resuming", truncated_checkpoint, 1, "state.pt"),
    Case("checkpoint", "a truncated model file", truncated_model, 1, "model.pt"),
    Case("kaldi", "a path ending in `|` (Kaldi would run it as a command)", kaldi_pipe, 1, "a.wav|"),
    Case("kaldi", "a transcript holding a line break", kaldi_newline, 1, "u1"),
    Case("speakers", "a SQLite file of another program as `--db`", foreign_db, 1, "notes.db"),
    Case("speakers", "a file that is not SQLite as `--db`", not_a_db, 1, "speakers.db"),
    Case("speakers", "a speaker database written by a newer speech-tl", newer_schema_db, 1, "speakers.db"),
    Case("command line", "an unknown option", unknown_option, 2, "No such option"),
]


def invoke(args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False, prog_name="speech-tl")


def run_cases(tmp: Path) -> list[tuple[Case, int, str, str]]:
    """Make each bad input in a folder of ``tmp`` and run its command (once for cases sharing ``make``):
    (case, exit status, the stderr line that says what is wrong, the whole stderr), ``tmp`` written as ``…``."""
    runs: dict = {}
    out = []
    for i, case in enumerate(CASES):
        if case.make not in runs:
            folder = tmp / f"case{i}"
            folder.mkdir(parents=True)
            made = case.make(folder)
            args, env = made if isinstance(made, tuple) else (made, {})
            result = invoke(args, env=env)
            stderr = result.stderr.replace(str(folder.resolve()), "…").replace(str(folder), "…")
            runs[case.make] = result.exit_code, stderr
        status, stderr = runs[case.make]
        lines = [x for x in stderr.splitlines() if case.expect in x]
        errors = [x for x in lines if x.startswith("error: ")]
        out.append((case, status, (errors or lines or [stderr.strip()])[0], stderr))
    return out


def cell(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip()).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(results: list[tuple[Case, int, str, str]]) -> str:
    lines = ["| Area | Bad input | Exit | What it gets (stderr) |", "|---|---|---|---|"]
    for case, status, line, _ in results:
        lines.append(f"| {case.area} | {case.bad} | {status} | {cell(line)} |")
    return "\n".join(lines)


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return ""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_cases(tmp_path_factory.mktemp("bad-input"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.bad[:40] for c in CASES])
def test_bad_input_gets_its_status_and_a_clear_line(outcomes, index):
    case, status, line, stderr = outcomes[index]
    assert status == case.status, (case.bad, status, stderr)
    assert case.expect in line, (case.bad, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [x for x in stderr.splitlines() if x.startswith("error: ")]
    assert errors in ([], [stderr.splitlines()[-1]]), stderr  # at most one error line, the last thing printed


def test_the_readme_table_is_what_the_commands_print(outcomes):
    assert readme_table() == table(outcomes), "README's reliability table is stale: python -m tests.test_reliability"


def write_readme(tmp: Path) -> None:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text:
        raise SystemExit(f"{README}: add the lines {BEGIN} and {END} where the table goes")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    rows = table(run_cases(tmp))
    README.write_text(f"{head}{BEGIN}\n{rows}\n{END}{tail}", encoding="utf-8")
    print(rows)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_readme(Path(d))
    sys.exit(0)
