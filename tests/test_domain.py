"""Domain confusion: gradient reversal, its schedule, labels from manifests, and a real short adaptation."""

from __future__ import annotations

import json

import pytest
import torch

from speech_tl.domain import domain_labels, reversal_weight, reverse_gradient
from speech_tl.manifest import read_manifest
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.task import SpeakerTask, train_speaker
from tests.tiny_speakers import speaker_config


def test_gradient_is_reversed_and_scaled():
    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_weight_rises_from_zero_to_the_configured_value():
    ws = [reversal_weight(p, 2.0) for p in (0.0, 0.1, 0.5, 1.0)]
    assert ws[0] == 0.0 and ws == sorted(ws) and 1.9 < ws[-1] <= 2.0
    assert reversal_weight(3.0, 2.0) == ws[-1]


def _two_languages(root, tmp_path):
    rows = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    for k, r in enumerate(rows):
        r["audio"] = str(root / r["audio"])
        r["language"] = "en" if k % 2 else "de"
    path = tmp_path / "train2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labels_need_two_domains_and_name_the_line(pitch_speakers, tmp_path):
    utts = read_manifest(_two_languages(pitch_speakers, tmp_path))
    names, labels = domain_labels(utts, "language", "m.jsonl")
    assert names == ["de", "en"] and labels.tolist() == [k % 2 for k in range(len(utts))]
    with pytest.raises(ValueError, match="at least two"):
        domain_labels(read_manifest(pitch_speakers / "train.jsonl"), "language", "m.jsonl")
    with pytest.raises(ValueError, match=r"m.jsonl:1: utterance .* has no 'domain'"):
        domain_labels(utts, "domain", "m.jsonl")


def test_adaptation_with_domain_confusion_trains_the_classifier_and_saves_a_plain_model(pitch_speakers, tmp_path):
    cfg = speaker_config(pitch_speakers, tmp_path / "run", max_steps=6)
    cfg.data.train = str(_two_languages(pitch_speakers, tmp_path))
    cfg.domain.field, cfg.domain.weight = "language", 1.0
    task = SpeakerTask(cfg, lambda *a: None)
    assert task.domain is not None and task.domain.names == ["de", "en"]
    before = [p.detach().clone() for p in task.model.domain_classifier.parameters()]
    summary = train_speaker(cfg, lambda *a: None)
    assert summary["steps"] == 6
    state = torch.load(tmp_path / "run" / "checkpoint" / "model.pt", weights_only=True)
    trained = [v for k, v in state.items() if k.startswith("domain_classifier.")]
    assert len(trained) == len(before) and any(not torch.equal(a, b) for a, b in zip(before, trained, strict=True))
    emb = load_embedder(str(tmp_path / "run"))  # the classifier is left out of the usable model
    assert emb.embed_file(pitch_speakers / "s0_5.wav").shape == (256,)


def test_weight_without_field_is_refused(pitch_speakers, tmp_path):
    cfg = speaker_config(pitch_speakers, tmp_path / "r")
    cfg.domain.weight = 1.0
    with pytest.raises(ValueError, match="needs domain.field"):
        SpeakerTask(cfg, lambda *a: None)


def test_asr_domain_confusion_reaches_the_encoder_through_the_prefix_cache(tone_corpus, tiny_whisper, tmp_path):
    from speech_tl.asr.evaluate import evaluate_asr
    from speech_tl.asr.task import AsrTask, train_asr
    from speech_tl.train import Trainer
    from tests.tiny_asr import asr_config

    rows = [json.loads(x) for x in (tone_corpus / "train.jsonl").read_text().splitlines()]
    for k, r in enumerate(rows):
        r["audio"], r["language"] = str(tone_corpus / r["audio"]), ("de", "en")[k % 2]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=6)
    cfg.data.train = str(tmp_path / "mixed.jsonl")
    cfg.domain.field, cfg.domain.weight = "language", 1.0
    task = AsrTask(cfg, lambda *a: None)
    trainer = Trainer(task, cfg.train, cfg.out_dir, cfg.data, lambda *a: None)
    assert trainer.cache is not None  # the frozen bottom layer is cached; the domain loss uses the top
    top = [p.detach().clone() for p in task.model.backbone.layers[1].parameters()]
    trainer.run()
    assert task.domain.last["reversal"] > 0 and 0 <= task.domain.last["domain_acc"] <= 1
    assert any(not torch.equal(a, p) for a, p in zip(top, task.model.backbone.layers[1].parameters(), strict=True))
    summary = train_asr(cfg, lambda *a: None)  # resumes the finished run: nothing more to do
    assert summary["steps"] == 6
    r = evaluate_asr(tmp_path / "run", tone_corpus / "dev.jsonl", tmp_path / "test.json", beam=0, device="cpu")
    assert 0 <= r["cer"]


def test_sim_to_real_confusion_uses_untranscribed_target_audio(tone_corpus, tiny_whisper, tmp_path):
    """Target-domain utterances (no transcripts) join training for the domain loss only, labelled 'real'."""
    from speech_tl.asr.task import AsrTask
    from speech_tl.domain import domain_of
    from speech_tl.train import Trainer
    from tests.tiny_asr import asr_config

    rows = [json.loads(x) for x in (tone_corpus / "dev.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"], r["text"] = str(tone_corpus / r["audio"]), ""
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=6)
    cfg.domain.field, cfg.domain.weight, cfg.domain.target = "target", 1.0, str(tmp_path / "real.jsonl")
    task = AsrTask(cfg, lambda *a: None)
    n_train = len(read_manifest(tone_corpus / "train.jsonl"))
    assert task.domain.names == ["real", "source"] and task.labelled == n_train
    assert len(task.train_set) == n_train + len(rows)
    labels = [domain_of(u, "target") for u in task.train_set.utterances]
    assert labels == ["source"] * n_train + ["real"] * len(rows)
    assert task.domain.labels.tolist() == [1] * n_train + [0] * len(rows)
    # a batch of target audio only: no CTC term, the domain loss still trains the classifier
    trainer = Trainer(task, cfg.train, cfg.out_dir, cfg.data, lambda *a: None)
    loss = trainer.train_step(list(range(n_train, n_train + 4)), 10)
    assert loss > 0 and task.domain.last["domain_acc"] >= 0
    trainer.run()
    assert trainer.cache is not None and trainer.cache.misses == len(task.train_set)


def test_target_domain_needs_its_manifest(tone_corpus, tiny_whisper, tmp_path):
    from speech_tl.asr.task import AsrTask
    from tests.tiny_asr import asr_config

    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run")
    cfg.domain.field, cfg.domain.weight = "target", 1.0
    with pytest.raises(ValueError, match="needs domain.target"):
        AsrTask(cfg, lambda *a: None)
