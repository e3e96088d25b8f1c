"""Multitask training on the tone-spelling corpus (CTC) and the tone 'voices' (speaker), with a tiny Whisper."""

from __future__ import annotations

import json

import pytest
import torch

from speech_tl.asr.evaluate import evaluate_asr
from speech_tl.config import build
from speech_tl.multitask.model import asr_state, speaker_state
from speech_tl.multitask.task import MultitaskConfig, MultitaskTask, train_multitask
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.evaluate import evaluate_speaker


def mt_config(tone_corpus, pitch_speakers, backbone, out, **loss):
    return build(MultitaskConfig, {
        "out_dir": str(out), "language": "en",
        "data": {"train": str(tone_corpus / "train.jsonl"), "dev": str(tone_corpus / "dev.jsonl"),
                 "speaker_train": str(pitch_speakers / "train.jsonl"), "speaker_dev": str(pitch_speakers / "dev.jsonl"),
                 "batch_seconds": 8.0, "min_duration": 0.1, "max_duration": 4.0},
        "model": {"backbone": backbone, "embedding_dim": 16},
        "freeze": {"mode": "bottom", "bottom_layers": 1},
        "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 8, "eval_every": 4, "checkpoint_every": 4,
                  "log_every": 2},
        "loss": loss or {"asr": 1.0, "speaker": 1.0}})


def test_batches_mix_both_tasks_and_both_heads_learn(tone_corpus, pitch_speakers, tiny_whisper, tmp_path):
    cfg = mt_config(tone_corpus, pitch_speakers, tiny_whisper, tmp_path / "mt")
    task = MultitaskTask(cfg, lambda *a: None)
    assert task.num_asr == 24 and len(task.train_set) == 24 + 16 and task.primary_metric == "error"
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    summary = train_multitask(cfg, lambda *a: None)
    assert summary["steps"] == 8 and summary["best_dev_error"] is not None
    state = torch.load(tmp_path / "mt" / "checkpoint" / "model.pt", weights_only=True)
    keys = ("head.ctc.weight", "head.speaker_project.weight", "head.speaker.weight", "backbone.layers.1.fc1.weight")
    for key in keys:
        matches = [k for k in state if k.startswith(key.rsplit(".", 1)[0])]
        assert matches and any(not torch.equal(state[k], before[k]) for k in matches), key
    frozen = [k for k in state if k.startswith("backbone.layers.0.")]
    assert frozen and all(torch.equal(state[k], before[k]) for k in frozen)
    log = [json.loads(x) for x in (tmp_path / "mt" / "train_log.jsonl").read_text().splitlines()]
    assert any({"dev_cer", "dev_eer", "dev_error"} <= set(r) for r in log)
    # the exported views are ordinary checkpoints of each task
    r = evaluate_asr(tmp_path / "mt" / "asr", tone_corpus / "dev.jsonl", tmp_path / "asr.json", device="cpu")
    assert 0 <= r["cer"] and r["num_utterances"] == 8
    emb = load_embedder(str(tmp_path / "mt" / "speaker"))
    assert emb.dim == 16 and emb.embed_file(pitch_speakers / "s1_4.wav").shape == (16,)
    s = evaluate_speaker(str(tmp_path / "mt" / "speaker"), pitch_speakers / "dev.jsonl", tmp_path / "spk.json",
                         enroll_per_speaker=1)
    assert 0 <= s["eer"] <= 1


def test_views_share_the_encoder_weights():
    state = {"backbone.a": torch.ones(2), "head.ctc.weight": torch.zeros(3, 2), "head.speaker_project.weight":
             torch.ones(4, 2), "head.speaker_project.bias": torch.ones(4), "head.speaker.weight": torch.ones(5, 4)}
    assert set(asr_state(state)) == {"backbone.a", "head.weight"}
    assert set(speaker_state(state)) == {"backbone.a", "project.weight", "project.bias", "head.weight"}
    assert speaker_state(state)["head.weight"].shape == (5, 4)


def test_bad_weights_and_missing_speaker_data_are_refused(tone_corpus, pitch_speakers, tiny_whisper, tmp_path):
    with pytest.raises(ValueError, match="not both 0"):
        MultitaskTask(mt_config(tone_corpus, pitch_speakers, tiny_whisper, tmp_path / "a", asr=0.0, speaker=0.0),
                      lambda *a: None)
    cfg = mt_config(tone_corpus, pitch_speakers, tiny_whisper, tmp_path / "b")
    cfg.data.speaker_train = ""
    with pytest.raises(ValueError, match="speaker_train: required"):
        cfg.data.check()


def test_set_up_is_the_asr_tasks(tone_corpus, pitch_speakers, tiny_whisper, tmp_path):
    """The same set-up as ASR training: dev characters the head cannot spell are reported, and the LM is
    trained on the target language's transcripts only."""
    rows = [json.loads(x) for x in (tone_corpus / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tone_corpus / r["audio"])
    rows[0]["language"] = rows[1]["language"] = "nl"  # source-language data in the mix
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dev = [json.loads(x) for x in (tone_corpus / "dev.jsonl").read_text().splitlines()]
    for r in dev:
        r["audio"] = str(tone_corpus / r["audio"])
    dev[0]["text"] = "ab 7é"
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dev))
    cfg = mt_config(tone_corpus, pitch_speakers, tiny_whisper, tmp_path / "mt")
    cfg.data.train, cfg.data.dev = str(tmp_path / "train.jsonl"), str(tmp_path / "dev.jsonl")
    cfg.decode.lm_order = 2
    logs = []
    task = MultitaskTask(cfg, logs.append)
    assert any("dev transcripts hold characters outside the vocabulary" in m and "'é': 1" in m and "'7': 1" in m
               for m in logs), logs
    assert any(f"{len(rows) - 2} training transcripts" in m and "LM" in m for m in logs), logs
    assert task.lm_path is not None and task.lm_path.is_file()
