"""Training audio through DataLoader workers: the same batches and losses with 0 or 2 workers."""

from __future__ import annotations

import json

import torch

from speech_tl.asr.task import AsrTask
from speech_tl.checkpoint import load_tensors
from speech_tl.data import UtteranceDataset
from speech_tl.loader import BatchPlan, TrainingItems, make_loader
from speech_tl.manifest import read_manifest
from speech_tl.train import Trainer
from tests.tiny_asr import asr_config


def quiet(*_a, **_k):
    pass


def test_batches_and_losses_are_identical_for_0_and_2_workers(tone_corpus, tiny_whisper, tmp_path):
    runs = {}
    for workers in (0, 2):
        cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / f"w{workers}", prefix_cache="off", max_steps=10,
                         num_workers=workers, log_every=1)
        cfg.data.speed_perturb = [0.9, 1.0, 1.1]  # random draws per utterance, not per worker
        seen = []
        task = AsrTask(cfg, quiet)
        loss = task.loss
        task.loss = lambda output, indices, loss=loss, seen=seen: (seen.append(indices.tolist()), loss(output,
                                                                                                      indices))[1]
        Trainer(task, cfg.train, cfg.out_dir, cfg.data, quiet).run()
        log = [json.loads(x) for x in (tmp_path / f"w{workers}" / "train_log.jsonl").read_text().splitlines()]
        runs[workers] = (seen, [r["loss"] for r in log if "loss" in r],
                         load_tensors(tmp_path / f"w{workers}" / "checkpoint" / "model.pt"))
    (seen0, loss0, w0), (seen2, loss2, w2) = runs[0], runs[2]
    assert len(seen0) == 10 and seen0 == seen2
    assert loss0 == loss2
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


def test_the_plan_leaves_out_cached_utterances_and_keys_carry_the_epoch(tone_corpus):
    utts = read_manifest(tone_corpus / "train.jsonl")
    items = TrainingItems(UtteranceDataset(utts), seed=0, speed_factors=[0.9, 1.1])
    plan = BatchPlan()
    plan.set([[0, 1, 2], [3, 4], [5]], epoch=3, needs_audio=lambda i: i not in {1, 3, 4})
    batches = list(make_loader(items, plan, num_workers=0, pin_memory=False))
    assert [b["index"].tolist() for b in batches] == [[0, 2], [], [5]]
    assert batches[1]["wave"].shape == (0, 0)
    again = items[(0, 3)][0]
    assert torch.equal(batches[0]["wave"][0, : again.numel()], again)
    other_epochs = {items[(0, e)][0].numel() for e in range(8)}
    assert len(other_epochs) == 2  # the speed factor is drawn per (epoch, utterance)


def test_a_clipped_recording_is_left_out_unless_its_line_says_the_clipping_is_intended(tmp_path):
    """A simulated overdriven phone call (``"clipping": "intended"``, written by ``prepare channel``) is training
    data; the same samples on a line without that mark are a damaged recording and are left out, with the reason."""
    import numpy as np
    import soundfile as sf

    from speech_tl.manifest import Utterance

    t = np.arange(16000) / 16000
    wave = np.clip(3.0 * np.sin(2 * np.pi * 220 * t), -1.0, 1.0).astype(np.float32)  # ~60% of samples clipped
    sf.write(str(tmp_path / "call.wav"), wave, 16000, subtype="PCM_16")
    utts = [Utterance(id=i, audio=str(tmp_path / "call.wav"), duration=1.0, text="a", speaker="s", language="de",
                      extra=extra) for i, extra in (("damaged", {}), ("call", {"clipping": "intended"}))]
    items = TrainingItems(UtteranceDataset(utts), seed=0)
    damaged, call = items[(0, 0)], items[(1, 0)]
    assert damaged[0].numel() == 0 and "heavily clipped" in damaged[2]
    assert call[2] is None and call[0].numel() == 16000
