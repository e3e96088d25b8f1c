"""train asr / evaluate asr / transcribe through the CLI, and the bad inputs they must refuse clearly."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from speech_tl.cli import main


@pytest.fixture(scope="module")
def trained(tone_corpus, tiny_whisper, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "asr"
    conf = out.parent / "conf.yaml"
    conf.write_text(
        f"out_dir: {out}\nlanguage: en\n"
        f"data:\n  train: {tone_corpus / 'train.jsonl'}\n  dev: {tone_corpus / 'dev.jsonl'}\n"
        "  batch_seconds: 4\n  min_duration: 0.1\n  max_duration: 4\n"
        f"model:\n  backbone: {tiny_whisper}\nfreeze:\n  bottom_layers: 1\n"
        "train:\n  lr: 0.01\n  max_steps: 30\n  eval_every: 15\n  log_every: 10\n"
        "decode:\n  lm_order: 2\n  lm_unit: char\n")
    result = CliRunner().invoke(main, ["train", "asr", str(conf), "train.warmup_steps=5"])
    assert result.exit_code == 0, result.output
    return out


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
    hyps = [json.loads(x) for x in out.with_name("results.hypotheses.jsonl").read_text().splitlines()]
    assert len(hyps) == 8 and all(h["ref"] == h["ref"].lower() for h in hyps)


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
    assert result.exit_code == 2
    assert f"{manifest}:2: audio file not found" in result.output
    assert f"{manifest}:3: empty transcript" in result.output


def test_unknown_config_key_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = CliRunner().invoke(main, ["train", "asr", str(empty), "data.train=x.jsonl", "train.lrr=1"])
    assert result.exit_code == 2 and "train.lrr: no such key" in result.output


def test_checkpoint_of_another_task_is_refused(trained, tone_corpus, tmp_path):
    meta = json.loads((trained / "best" / "meta.json").read_text())
    other = tmp_path / "spk"
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({**meta, "task": "speaker"}))
    result = CliRunner().invoke(main, ["evaluate", "asr", str(other), str(tone_corpus / "dev.jsonl"),
                                       "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "'speaker' checkpoint, not 'asr'" in result.output
    result = CliRunner().invoke(main, ["evaluate", "asr", str(tmp_path), str(tone_corpus / "dev.jsonl"),
                                       "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "no checkpoint here" in result.output


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
