"""The training loop on a tiny task: it learns, resumes exactly, caches the frozen prefix, runs under DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speech_tl.asr.task import AsrTask, train_asr
from speech_tl.checkpoint import load_tensors
from speech_tl.train import Trainer, lr_factor
from tests.tiny_asr import asr_config


def quiet(*_a, **_k):
    pass


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 0.0, 10, 0.05) == pytest.approx(0.1)
    assert lr_factor(9, 0.1, 10, 0.05) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(0.1 * math.pi)))
    assert lr_factor(50, 0.5, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 1.0, 10, 0.05) == pytest.approx(0.05)


def test_training_lowers_the_loss_and_keeps_the_best(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=40, eval_every=20, lr=1e-2)
    summary = train_asr(cfg, log=quiet)
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert summary["steps"] == 40 and summary["best_step"] in (20, 40)
    for name in ("best", "checkpoint"):
        meta = json.loads((tmp_path / "run" / name / "meta.json").read_text())
        assert meta["task"] == "asr" and meta["backbone"] == tiny_whisper
    assert (tmp_path / "run" / "checkpoint" / "optimizer.pt").is_file()
    assert not (tmp_path / "run" / "best" / "optimizer.pt").exists()
    assert all({"step", "loss", "lr", "utt_per_s", "memory_mb"} <= set(r) for r in log if "loss" in r)
    assert any("dev_wer" in r for r in log)


@pytest.mark.parametrize("cache", ["memory", "off"])
def test_resume_after_a_kill_is_exact(tone_corpus, tiny_whisper, tmp_path, cache):
    straight = asr_config(tone_corpus, tiny_whisper, tmp_path / "straight", prefix_cache=cache)
    Trainer(AsrTask(straight, quiet), straight.train, straight.out_dir, straight.data, quiet).run()
    killed = asr_config(tone_corpus, tiny_whisper, tmp_path / "killed", prefix_cache=cache)
    Trainer(AsrTask(killed, quiet), killed.train, killed.out_dir, killed.data, quiet).run(stop_at_step=7)
    state = load_tensors(tmp_path / "killed" / "checkpoint" / "state.pt")
    assert state["step"] == 7
    logs = []
    resumed = Trainer(AsrTask(killed, quiet), killed.train, killed.out_dir, killed.data, logs.append)
    resumed.run()
    assert any("resuming from step 7" in m for m in logs)
    a = load_tensors(tmp_path / "straight" / "checkpoint" / "model.pt")
    b = load_tensors(tmp_path / "killed" / "checkpoint" / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"


def test_prefix_cache_is_used_and_switched_off_by_augmentation(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "c", max_steps=8)
    trainer = Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)
    trainer.run()
    assert trainer.cache is not None and trainer.cache.hits > 0
    assert trainer.cache.misses == len(trainer.task.train_set)  # each utterance's prefix computed once
    aug = asr_config(tone_corpus, tiny_whisper, tmp_path / "a", max_steps=2)
    aug.data.speed_perturb = [0.9, 1.0, 1.1]
    trainer = Trainer(AsrTask(aug, quiet), aug.train, aug.out_dir, aug.data, quiet)
    assert trainer.cache is None and "speed perturbation" in trainer.cache_reason
    full = asr_config(tone_corpus, tiny_whisper, tmp_path / "f", max_steps=2)
    full.freeze.mode = "full"
    full.freeze.bottom_layers = 0
    trainer = Trainer(AsrTask(full, quiet), full.train, full.out_dir, full.data, quiet)
    assert trainer.cache is None and "nothing is frozen" in trainer.cache_reason


def test_cached_and_uncached_steps_agree(tone_corpus, tiny_whisper, tmp_path):
    losses = {}
    for cache in ("memory", "off"):
        cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / cache, prefix_cache=cache, max_steps=3)
        cfg.model.dropout = 0.0
        trainer = Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)
        torch.manual_seed(0)
        losses[cache] = trainer.train_step([0, 1, 2, 3], 10)
    assert losses["memory"] == pytest.approx(losses["off"], rel=2e-3)  # float16 cache


def test_spec_augment_trains(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "s", max_steps=3)
    cfg.data.spec_augment = True
    trainer = Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)
    assert trainer.cache is None and "SpecAugment" in trainer.cache_reason
    assert trainer.run()["steps"] == 3


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from tests.tiny_asr import asr_config
from speech_tl.asr.task import AsrTask
from speech_tl.train import Trainer
from pathlib import Path
cfg = asr_config(Path({corpus!r}), {backbone!r}, Path({out!r}), max_steps=4, eval_every=4)
t = Trainer(AsrTask(cfg, lambda *a: None), cfg.train, cfg.out_dir, cfg.data, lambda *a: None)
seen = []
loss = t.task.loss
t.task.loss = lambda output, indices: (seen.append(indices.tolist()), loss(output, indices))[1]
t.run()
(Path({out!r}) / f"indices{{t.dist.rank}}.json").write_text(__import__("json").dumps(seen))
w = torch.cat([p.detach().flatten() for p in t.model.parameters()])
torch.save(w, Path({out!r}) / f"weights{{t.dist.rank}}.pt")
print("rank", t.dist.rank, "world", t.dist.world_size, "step", t.step)
"""


def test_ddp_two_cpu_processes_stay_in_sync(tone_corpus, tiny_whisper, tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(repo=repo, corpus=str(tone_corpus), backbone=tiny_whisper,
                                        out=str(tmp_path / "ddp")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(script)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2 step 4" in proc.stdout
    w0, w1 = (torch.load(tmp_path / "ddp" / f"weights{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(w0, w1)
    assert (tmp_path / "ddp" / "checkpoint" / "model.pt").is_file()
    seen = [json.loads((tmp_path / "ddp" / f"indices{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 4  # each rank its own share of the batches, step for step
    for a, b in zip(*seen, strict=True):  # at every step the two ranks train on different utterances
        assert a and b and not set(a) & set(b), (a, b)


def test_hidden_masks_change_only_valid_frames_and_are_seeded():
    from speech_tl.data import DataConfig, hidden_augment

    cfg = DataConfig(train="x", hidden_time_masks=2, hidden_time_width=0.3, hidden_channel_masks=2,
                     hidden_channel_width=4, hidden_noise=0.1)
    hidden = torch.randn(2, 20, 8)
    lengths = torch.tensor([20, 12])
    a = hidden_augment(hidden, lengths, cfg, torch.Generator().manual_seed(1))
    b = hidden_augment(hidden, lengths, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, hidden)
    assert torch.equal(a[1, 12:], hidden[1, 12:])  # padding untouched
    c = hidden_augment(hidden, lengths, cfg, torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)
    masks_only = DataConfig(train="x", hidden_time_masks=1, hidden_time_width=1.0)
    m = hidden_augment(hidden, lengths, masks_only, torch.Generator().manual_seed(0))
    changed = (m[0] != hidden[0]).any(dim=1)
    assert changed.any() and torch.allclose(m[0, changed], hidden[0].mean(0).expand(int(changed.sum()), 8))


def test_hidden_masking_keeps_the_prefix_cache_and_resumes_exactly(tone_corpus, tiny_whisper, tmp_path):
    def masked(name):
        cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / name, prefix_cache="memory")
        cfg.data.hidden_time_masks, cfg.data.hidden_channel_masks, cfg.data.hidden_noise = 2, 2, 0.05
        return cfg

    cfg = masked("straight")
    trainer = Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)
    assert trainer.cache is not None
    trainer.run()
    assert trainer.cache.misses == len(trainer.task.train_set) and trainer.cache.hits > 0
    killed = masked("killed")
    Trainer(AsrTask(killed, quiet), killed.train, killed.out_dir, killed.data, quiet).run(stop_at_step=7)
    Trainer(AsrTask(killed, quiet), killed.train, killed.out_dir, killed.data, quiet).run()
    a = load_tensors(tmp_path / "straight" / "checkpoint" / "model.pt")
    b = load_tensors(tmp_path / "killed" / "checkpoint" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = asr_config(tone_corpus, tiny_whisper, tmp_path / "plain", prefix_cache="memory")
    Trainer(AsrTask(plain, quiet), plain.train, plain.out_dir, plain.data, quiet).run()
    c = load_tensors(tmp_path / "plain" / "checkpoint" / "model.pt")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the masks did change training


def test_hidden_masking_needs_a_frozen_prefix(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "full", max_steps=1)
    cfg.freeze.mode, cfg.freeze.bottom_layers = "full", 0
    cfg.data.hidden_time_masks = 1
    trainer = Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)
    with pytest.raises(ValueError, match="nothing is frozen"):
        trainer.run()


def test_gradient_accumulation_averages_the_batches_gradients(tone_corpus, tiny_whisper, tmp_path):
    def trainer(name, **train):
        cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / name, prefix_cache="off", grad_clip=0.0, **train)
        cfg.model.dropout = 0.0
        return Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet)

    a, b = [0, 1, 2, 3], [8, 9, 10]
    acc = trainer("acc", accumulate=2)
    acc.train_step([a, b], 10)
    manual = trainer("manual")
    manual.model.train()
    manual.plan.restore_eval()
    manual.optimizer.zero_grad()
    for batch in (a, b):
        (manual.task.loss(manual._batch_output(manual.model, batch, 0), torch.tensor(batch)) / 2).backward()
    for (name, p), q in zip(acc.model.named_parameters(), manual.model.parameters(), strict=True):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    run = trainer("epoch", accumulate=3, max_steps=None, max_epochs=1)
    summary = run.run()
    n_batches = len(run._epoch_batches(0))
    assert summary["steps"] == math.ceil(n_batches / 3) and summary["epochs"] == 1


def test_no_time_limit_unless_one_is_set():
    from speech_tl.train import TrainConfig

    assert TrainConfig().max_minutes is None
    with pytest.raises(ValueError, match="give at least one limit"):
        TrainConfig().check()
    TrainConfig(max_epochs=3).check()
    with pytest.raises(ValueError, match="accumulate"):
        TrainConfig(max_steps=1, accumulate=0).check()


def test_tensorboard_events_and_structured_freeze_state(tone_corpus, tiny_whisper, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the dev extra; a bare install skips this")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "tb", max_steps=6, eval_every=3, log_every=2)
    summary = train_asr(cfg, log=quiet)
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "dev/wer", "dev/cer"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
    state = summary["freeze_state"]
    assert state["mode"] == "bottom" and state["frozen_layers"] == 1 and state["layers"] == 2
    assert state["frontend_frozen"] and 0 < state["trainable_parameters"] < state["total_parameters"]
    assert json.loads((tmp_path / "tb" / "best" / "meta.json").read_text())["freeze_state"] == state


def test_resume_refuses_changed_settings_and_keeps_the_config(tone_corpus, tiny_whisper, tmp_path):
    import yaml

    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run")
    Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet).run(stop_at_step=3)
    written = (tmp_path / "run" / "config.yaml").read_text()
    changed = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", lr=0.1)
    changed.freeze.bottom_layers = 0
    with pytest.raises(ValueError, match=r"other settings \(freeze.bottom_layers: 1 -> 0; train.lr: 0.003 -> 0.1\)"):
        Trainer(AsrTask(changed, quiet), changed.train, changed.out_dir, changed.data, quiet).run()
    assert (tmp_path / "run" / "config.yaml").read_text() == written  # not overwritten before deciding
    longer = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=14, eval_every=7)  # limits may change
    logs = []
    Trainer(AsrTask(longer, logs.append), longer.train, longer.out_dir, longer.data, logs.append).run()
    assert any("resuming from step 3" in m for m in logs)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["max_steps"] == 14
    forced = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", lr=0.1, max_steps=16, resume="force")
    logs = []
    Trainer(AsrTask(forced, logs.append), forced.train, forced.out_dir, forced.data, logs.append).run()
    assert any("train.resume=force" in m and "train.lr: 0.003 -> 0.1" in m for m in logs)
    assert any("resuming from step 14" in m for m in logs)


def test_resume_refuses_a_training_manifest_prepared_again(tone_corpus, tiny_whisper, tmp_path):
    """The manifest's bytes are a resume setting: the same path with other lines (a twin drawn again, packs cut
    again) would put other utterances behind the stored batch positions; the run's summary records them."""
    import shutil

    from speech_tl.digest import file_sha1

    corpus = tmp_path / "corpus"
    shutil.copytree(tone_corpus, corpus)
    first = file_sha1(corpus / "train.jsonl")
    cfg = asr_config(corpus, tiny_whisper, tmp_path / "run", max_steps=6)
    Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet).run(stop_at_step=3)
    lines = (corpus / "train.jsonl").read_text().splitlines(keepends=True)
    (corpus / "train.jsonl").write_text("".join(reversed(lines)))  # the same utterances, another order
    again = asr_config(corpus, tiny_whisper, tmp_path / "run", max_steps=6)
    with pytest.raises(ValueError, match=r"another training manifest: the content of .*train.jsonl differs"):
        Trainer(AsrTask(again, quiet), again.train, again.out_dir, again.data, quiet).run()
    (corpus / "train.jsonl").write_text("".join(lines))  # back as it was
    # a checkpoint written before a setting existed: a fingerprint or a default is no change, another value is
    stored = tmp_path / "run" / "checkpoint" / "settings.json"
    settings = json.loads(stored.read_text())
    stored.write_text(json.dumps({k: v for k, v in settings.items() if k != "train.lr"}))
    with pytest.raises(ValueError, match=r"train.lr: '\(unset\)' -> 0.003"):
        Trainer(AsrTask(again, quiet), again.train, again.out_dir, again.data, quiet).run()
    assert settings["model.dropout"] == 0.1  # AsrConfig's default
    stored.write_text(json.dumps({k: v for k, v in settings.items() if k not in ("data.train_sha1", "model.dropout")}))
    logs = []
    summary = Trainer(AsrTask(again, logs.append), again.train, again.out_dir, again.data, logs.append).run()
    assert any("resuming from step 3" in m for m in logs)
    assert summary["train_manifest_sha1"] == first
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["train_manifest_sha1"] == first
    settings = json.loads((tmp_path / "run" / "checkpoint" / "settings.json").read_text())
    assert settings["data.train_sha1"] == first


def test_non_finite_losses_skip_their_step_and_are_counted(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "nan", max_steps=6)
    task = AsrTask(cfg, quiet)
    loss = task.loss
    calls = []

    def poisoned(output, indices):
        calls.append(1)
        value = loss(output, indices)
        return value * float("nan") if len(calls) == 3 else value

    task.loss = poisoned
    logs = []
    summary = Trainer(task, cfg.train, cfg.out_dir, cfg.data, logs.append).run()
    assert summary["steps"] == 6 and summary["nonfinite_steps"] == 1
    assert any("step 3: non-finite loss" in m for m in logs)
    weights = load_tensors(tmp_path / "nan" / "checkpoint" / "model.pt")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_utterances_ctc_cannot_align_are_counted(tone_corpus, tiny_whisper, tmp_path):
    rows = [json.loads(x) for x in (tone_corpus / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tone_corpus / r["audio"])
    rows[0]["text"] = "abc" * 40  # 120 characters for well under a second of audio
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "long", max_steps=12)
    cfg.data.train = str(tmp_path / "train.jsonl")
    logs = []
    summary = train_asr(cfg, log=logs.append)
    assert summary["ctc_zeroed_utterances"] == 1 and summary["ctc_zeroed_ids"] == [rows[0]["id"]]
    assert any("transcript too long for their audio" in m for m in logs)


@pytest.mark.parametrize("workers", [0, 2])
def test_utterances_with_unusable_audio_are_left_out_listed_once_and_not_fatal(tone_corpus, tiny_whisper, tmp_path,
                                                                                workers):
    import numpy as np
    import soundfile as sf

    rows = [json.loads(x) for x in (tone_corpus / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tone_corpus / r["audio"])
    n = 16000
    bad = {"nan": np.full(n, np.nan, dtype=np.float32), "silent": np.zeros(n, dtype=np.float32),
           "clipped": np.sign(np.sin(np.arange(n) / 5.0)).astype(np.float32)}
    for name, x in bad.items():
        sf.write(tmp_path / f"{name}.wav", x, 16000, subtype="FLOAT")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    for name in [*bad, "broken"]:
        rows.append({**rows[0], "id": f"bad-{name}", "audio": str(tmp_path / f"{name}.wav"), "duration": 1.0})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=40, num_workers=workers)
    cfg.data.train = str(tmp_path / "train.jsonl")
    cfg.data.max_batch_size = 1  # each bad utterance is a batch of its own: its step is skipped, not fatal
    logs = []
    summary = train_asr(cfg, log=logs.append)
    assert summary["steps"] == 40 and summary["rejected_audio"] == 4
    assert summary["empty_steps"] >= 4  # 40 steps over 28 one-utterance batches: every bad one met at least once
    listed = [json.loads(x) for x in (tmp_path / "run" / "rejected_train_audio.jsonl").read_text().splitlines()]
    reasons = {r["id"]: r["reason"] for r in listed}
    assert len(listed) == 4, "each utterance is listed once, however many epochs meet it"
    assert "NaN or Inf" in reasons["bad-nan"] and "silence" in reasons["bad-silent"]
    assert "clipped" in reasons["bad-clipped"] and str(tmp_path / "broken.wav") in reasons["bad-broken"]
    warned = [m for m in logs if m.startswith("warning: left out of training")]
    assert len(warned) == 4 and all(str(tmp_path) in m for m in warned)


def test_bf16_on_a_cpu_only_when_asked_for_and_native(monkeypatch):
    """``train.amp=bf16`` turns bfloat16 autocast on for a CPU with native bf16 (AVX512-BF16 / AMX); ``auto`` keeps
    a CPU in float32, and a CPU without native bf16 (emulated: slower) stays in float32 even when asked."""
    from speech_tl.train import distributed

    cpu = torch.device("cpu")
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: True)
    assert distributed.amp_settings("bf16", cpu) == (True, torch.bfloat16, False)
    assert distributed.amp_settings("auto", cpu) == (False, None, False)
    assert distributed.amp_settings("off", cpu) == (False, None, False)
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)
    assert distributed.amp_settings("bf16", cpu) == (False, None, False)


def test_training_in_bf16_on_a_cpu_lowers_the_loss(tone_corpus, tiny_whisper, tmp_path, monkeypatch):
    """The one loop under CPU bf16 autocast (prefix cache included) trains: the loss falls, and the log says AMP."""
    from speech_tl.train import distributed

    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: True)
    lines = []
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=40, eval_every=20, lr=1e-2, amp="bf16")
    summary = train_asr(cfg, log=lines.append)
    assert any("AMP torch.bfloat16" in line for line in lines)
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert summary["nonfinite_steps"] == 0 and losses[-1] < 0.7 * losses[0]
