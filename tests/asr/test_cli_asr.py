"""train asr / evaluate asr / transcribe through the CLI, and the bad inputs they must refuse clearly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.config import dump_config
from tests.tiny_asr import asr_config, train_tone_asr
from tests.tiny_speakers import speaker_config


@pytest.fixture(scope="module")
def trained(tone_corpus, tiny_whisper, tmp_path_factory):
    return train_tone_asr(tone_corpus, tmp_path_factory.mktemp("run") / "asr", {"backbone": tiny_whisper},
                          {"bottom_layers": 1}, {"lr": 0.01, "max_steps": 30, "eval_every": 15, "log_every": 10},
                          {"lm_order": 2, "lm_unit": "char"}, overrides=("train.warmup_steps=5",))


def test_train_writes_a_self_contained_run(trained):
    for name in ("config.yaml", "summary.json", "train_log.jsonl", "best/model.pt", "best/vocab.json",
                 "best/lm.arpa", "checkpoint/state.pt"):
        assert (trained / name).is_file(), name
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["trainable_parameters"] < summary["total_parameters"]


@pytest.mark.parametrize("beam", [0, 4])
def test_evaluate_writes_results(trained, tone_corpus, tmp_path, beam):
    out = tmp_path / "results.json"
    result = CliRunner().invoke(main, ["evaluate", "asr", str(trained), str(tone_corpus / "dev.jsonl"),
                                       "--out", str(out), "--beam", str(beam)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert 0 <= r["cer"] <= r["wer"] + 1e-9 or r["wer"] >= 0
    assert r["num_utterances"] == 8 and set(r["per_speaker"]) == {"s0"}
    assert r["wer_ci95"][0] <= r["wer"] <= r["wer_ci95"][1]
    assert r["decoding"] == ("greedy" if beam == 0 else "beam 4 + LM (weight 0.5, word score 0)")
    # the manifest's content, so that a recipe tells a result of a manifest drawn again since (stage 9)
    assert r["manifest_sha1"] == hashlib.sha1((tone_corpus / "dev.jsonl").read_bytes()).hexdigest()
    summary = json.loads((trained / "summary.json").read_text())  # the run's own record of its training manifest
    assert summary["train_manifest_sha1"] == hashlib.sha1((tone_corpus / "train.jsonl").read_bytes()).hexdigest()
    hyps = [json.loads(x) for x in out.with_name("results.hypotheses.jsonl").read_text().splitlines()]
    assert len(hyps) == 8 and all(h["ref"] == h["ref"].lower() for h in hyps)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: "), line
    return line


def test_evaluate_refuses_existing_results_unless_overwrite(trained, tone_corpus, tmp_path):
    out = tmp_path / "results.json"
    hyps = tmp_path / "results.hypotheses.jsonl"
    args = ["evaluate", "asr", str(trained), str(tone_corpus / "dev.jsonl"), "--out", str(out), "--beam", "0"]
    for existing in (out, hyps):  # the hypotheses beside OUT are an output as well
        existing.write_text("mine\n")
        line = one_error_line(CliRunner().invoke(main, args))
        assert str(existing) in line and "--overwrite" in line
        assert snapshot(tmp_path) == {existing.name: b"mine\n"}
        existing.unlink()
    out.write_text("mine\n")
    result = CliRunner().invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["num_utterances"] == 8 and len(hyps.read_text().splitlines()) == 8
    manifest = tone_corpus / "dev.jsonl"
    before = manifest.read_bytes()
    line = one_error_line(CliRunner().invoke(main, [*args[:4], "--out", str(manifest), "--overwrite"]))
    assert "also an input" in line and manifest.read_bytes() == before


def test_train_resumes_or_refuses_to_start_over_a_previous_run(tone_corpus, tiny_whisper, tmp_path):
    """A finished run in out_dir: train.resume=false is refused unless --overwrite, which starts over (and leaves
    nothing of the old run); the default resume goes on from its checkpoint without asking."""
    out = tmp_path / "run"
    conf = tmp_path / "conf.yaml"
    dump_config(asr_config(tone_corpus, tiny_whisper, out, max_steps=4, eval_every=2, checkpoint_every=2), conf)
    assert CliRunner().invoke(main, ["train", "asr", str(conf)]).exit_code == 0
    before = snapshot(out)
    assert "best/model.pt" in before and "checkpoint/state.pt" in before
    line = one_error_line(CliRunner().invoke(main, ["train", "asr", str(conf), "train.resume=false"]))
    assert str(out) in line and "--overwrite" in line and "train.resume=false" in line
    assert snapshot(out) == before
    (out / "best" / "stale.txt").write_text("of the previous run")
    result = CliRunner().invoke(main, ["train", "asr", str(conf), "train.resume=false", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "best" / "stale.txt").exists() and (out / "best" / "model.pt").is_file()
    def steps(log: str) -> list[int]:
        return [json.loads(x)["step"] for x in log.splitlines()]

    # a new log from the start, not the old one continued
    assert steps((out / "train_log.jsonl").read_text()) == steps(before["train_log.jsonl"].decode())
    result = CliRunner().invoke(main, ["train", "asr", str(conf), "train.max_steps=6"])  # resumes: no question
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


@pytest.mark.parametrize("task", ["asr", "speaker", "multitask"])
def test_train_with_nothing_to_resume_refuses_a_previous_run_unless_overwrite(task, tone_corpus, pitch_speakers,
                                                                                tiny_whisper, tmp_path, monkeypatch):
    from tests.test_multitask import mt_config

    out = tmp_path / "run"
    conf = tmp_path / "conf.yaml"
    dump_config({"asr": lambda: asr_config(tone_corpus, tiny_whisper, out),
                 "speaker": lambda: speaker_config(pitch_speakers, out),
                 "multitask": lambda: mt_config(tone_corpus, pitch_speakers, tiny_whisper, out)}[task](), conf)
    for name in ("best/model.pt", "train_log.jsonl", "summary.json", "tensorboard/events", "checkpoint/meta.json",
                 "keep/notes.txt", "config.yaml") + (("asr/best/model.pt", "speaker/best/model.pt")
                                                     if task == "multitask" else ()):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"previous {name}\n")
    before = snapshot(out)
    calls = []

    def started(cfg, before_start=None):  # what the trainer does first: --overwrite's removal, then the run
        calls.append(cfg)
        if before_start is not None:
            before_start()
        return {"steps": 0}

    monkeypatch.setattr(f"speech_tl.{task}.task.train_{task}", started)
    # resume=false starts over; so does the default when there is no complete checkpoint (no state.pt) to resume
    for resume in ("false", "true"):
        line = one_error_line(CliRunner().invoke(main, ["train", task, str(conf), f"train.resume={resume}"]))
        assert str(out) in line and "--overwrite" in line and "train_log.jsonl" in line and "best" in line
        assert snapshot(out) == before and not calls
    result = CliRunner().invoke(main, ["train", task, str(conf), "train.resume=false", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert sorted(snapshot(out)) == ["config.yaml", "keep/notes.txt"]  # what is not a run's output stays


@pytest.mark.parametrize("task", ["asr", "speaker", "multitask"])
def test_train_overwrite_keeps_the_previous_run_when_the_new_one_cannot_start(task, tone_corpus, pitch_speakers,
                                                                              tiny_whisper, tmp_path):
    """--overwrite removes the previous run only once the new one has read its data: a config naming a missing
    manifest fails with one error line naming it, and the old run is there as it was."""
    from tests.test_multitask import mt_config

    out = tmp_path / "run"
    conf = tmp_path / "conf.yaml"
    dump_config({"asr": lambda: asr_config(tone_corpus, tiny_whisper, out),
                 "speaker": lambda: speaker_config(pitch_speakers, out),
                 "multitask": lambda: mt_config(tone_corpus, pitch_speakers, tiny_whisper, out)}[task](), conf)
    for name in ("best/model.pt", "train_log.jsonl", "summary.json", "checkpoint/meta.json", "keep/notes.txt"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"previous {name}\n")
    before = snapshot(out)
    missing = tmp_path / "gone" / "train.jsonl"
    for resume in ("false", "true"):  # true: nothing to resume (no state.pt), so it would start over as well
        line = one_error_line(CliRunner().invoke(main, ["train", task, str(conf), f"train.resume={resume}",
                                                        f"data.train={missing}", "--overwrite"]))
        assert str(missing) in line
        assert snapshot(out) == before


def test_transcribe_prints_one_line_per_file(trained, tone_corpus):
    files = sorted(tone_corpus.glob("dev-*.wav"))[:2]
    result = CliRunner().invoke(main, ["transcribe", str(trained), *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]


def test_missing_audio_and_empty_transcripts_are_named(tone_corpus, tiny_whisper, tmp_path):
    lines = (tone_corpus / "train.jsonl").read_text().splitlines()
    bad = [json.loads(x) for x in lines[:4]]
    for row in bad:
        row["audio"] = str(tone_corpus / row["audio"])
    bad[1]["audio"] = str(tmp_path / "gone.wav")
    bad[2]["text"] = "  "
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in bad))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = CliRunner().invoke(main, ["train", "asr", str(empty), f"data.train={manifest}",
                                       f"model.backbone={tiny_whisper}", f"out_dir={tmp_path / 'o'}",
                                       "train.max_steps=1"])
    assert result.exit_code == 1
    assert f"{manifest}:2: audio file not found" in result.output
    assert f"{manifest}:3: empty transcript" in result.output


def test_unknown_config_key_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = CliRunner().invoke(main, ["train", "asr", str(empty), "data.train=x.jsonl", "train.lrr=1"])
    assert result.exit_code == 1 and "train.lrr: no such key" in result.output


def test_checkpoint_of_another_task_is_refused(trained, tone_corpus, tmp_path):
    meta = json.loads((trained / "best" / "meta.json").read_text())
    other = tmp_path / "spk"
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({**meta, "task": "speaker"}))
    result = CliRunner().invoke(main, ["evaluate", "asr", str(other), str(tone_corpus / "dev.jsonl"),
                                       "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "'speaker' checkpoint, not 'asr'" in result.output
    result = CliRunner().invoke(main, ["evaluate", "asr", str(tmp_path), str(tone_corpus / "dev.jsonl"),
                                       "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "no checkpoint here" in result.output


def test_reference_characters_outside_the_vocabulary_are_reported_not_dropped(trained, tone_corpus, tmp_path):
    rows = [json.loads(x) for x in (tone_corpus / "dev.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tone_corpus / r["audio"])
    rows[0]["text"] = "abé"  # "é" is not in the trained English vocabulary
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["evaluate", "asr", str(trained), str(dev), "--out", str(out),
                                       "--beam", "0"])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["characters_outside_vocabulary"] == {"é": 1} and r["num_utterances"] == len(rows)
    assert "é" in result.stderr and "cannot output" in result.stderr
    hyp = json.loads(out.with_name("r.hypotheses.jsonl").read_text().splitlines()[0])
    assert hyp["ref"] == "abé"  # scored against the whole reference
