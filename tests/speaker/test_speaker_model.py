"""AAM-softmax, speaker pooling and adaptation through the shared training loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech_tl.backbones import load_backbone
from speech_tl.backbones.ge2e import embed_utterance
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.model import AAMSoftmax, SpeakerModel
from speech_tl.speaker.task import SpeakerTask, train_speaker
from speech_tl.train import Trainer
from tests.tiny_speakers import speaker_config as config


def test_aam_margin_penalises_the_true_class():
    torch.manual_seed(0)
    head = AAMSoftmax(8, 4, margin=0.3, scale=10.0)
    emb = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    labels = torch.randint(0, 4, (16,))
    loss_margin, acc = head(emb, labels)
    head.margin = 0.0
    loss_plain, acc_plain = head(emb, labels)
    assert loss_margin > loss_plain and acc == acc_plain
    head.weight.data = emb[:4].clone()  # centres at the first four embeddings
    _, acc = head(emb[:4], torch.arange(4))
    assert acc == 1.0


def test_untrained_model_embeds_like_the_pretrained_ge2e():
    """With GE2E, the speaker model's embedding before training is GE2E's own (no projection)."""
    bb = load_backbone("ge2e:resemblyzer").eval()
    model = SpeakerModel(bb, num_speakers=3).eval()
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.05)
    with torch.no_grad():
        assert torch.allclose(model.embed_utterance(wave), embed_utterance(bb, wave), atol=1e-6)
    assert model.pooling == "last" and model.embedding_dim == 256


def test_adaptation_trains_only_the_top_and_saves_a_usable_model(pitch_speakers, tmp_path):
    cfg = config(pitch_speakers, tmp_path / "run")
    task = SpeakerTask(cfg, lambda *a: None)
    before = {n: p.detach().clone() for n, p in task.model.backbone.named_parameters()}
    trainer = Trainer(task, cfg.train, cfg.out_dir, cfg.data, lambda *a: None)
    assert trainer.cache is None and "random crops" in trainer.cache_reason
    summary = trainer.run()
    assert summary["steps"] == 12 and summary["best_dev_eer"] is not None
    for n, p in task.model.backbone.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n.startswith("layers.2") or n.startswith("linear")), n
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]
    emb = load_embedder(str(tmp_path / "run"))
    e = emb.embed_file(pitch_speakers / "s0_5.wav")
    assert e.shape == (256,) and abs(float(e.norm()) - 1) < 1e-5
    assert emb.fingerprint != load_embedder("ge2e:resemblyzer").fingerprint


def test_crops_change_with_the_epoch_but_not_between_runs(pitch_speakers, tmp_path):
    task = SpeakerTask(config(pitch_speakers, tmp_path / "c"), lambda *a: None)
    a0 = task.train_set.load(0, 0)[0]
    a1 = task.train_set.load(0, 1)[0]
    assert torch.equal(task.train_set.load(0, 0)[0], a0) and not torch.equal(a0, a1)
    assert torch.equal(task.train_set[0][0], a0)
    assert a0.numel() == int(1.6 * 16000)


def test_one_speaker_is_refused(pitch_speakers, tmp_path):
    rows = [json.loads(x) for x in (pitch_speakers / "train.jsonl").read_text().splitlines()[:3]]
    for r in rows:
        r["audio"] = str(pitch_speakers / r["audio"])
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(pitch_speakers, tmp_path / "o")
    cfg.data.train = str(tmp_path / "one.jsonl")
    with pytest.raises(ValueError, match="needs at least 2"):
        train_speaker(cfg, lambda *a: None)


def test_short_crops_hold_less_speech_and_are_padded_to_the_window(pitch_speakers, tmp_path):
    cfg = config(pitch_speakers, tmp_path / "m")
    cfg.data.min_crop_seconds = 0.3
    task = SpeakerTask(cfg, lambda *a: None)
    speech = []
    for epoch in range(8):
        wave = task.train_set.load(0, epoch)[0]
        assert wave.numel() == int(1.6 * 16000)
        nonzero = int(torch.nonzero(wave).max()) + 1
        assert torch.all(wave[nonzero:] == 0)
        speech.append(nonzero / 16000)
    assert min(speech) >= 0.3 - 1e-3 and max(speech) <= 1.6 and max(speech) - min(speech) > 0.3
    cfg.data.min_crop_seconds = 2.0
    with pytest.raises(ValueError, match="min_crop_seconds must be in"):
        cfg.data.check()
