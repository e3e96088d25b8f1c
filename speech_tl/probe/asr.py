"""ASR layer probe: a small CTC character head on every depth of a frozen backbone.

All heads are trained together on the same batches of cached features (the backbone runs once
per utterance), so the per-depth CERs come from equal budgets. A head is per-dimension
standardisation (statistics of the training features) -> Linear(D, hidden) -> GELU -> Linear(hidden, V):
light enough to measure what a depth already holds, not to learn the task on its own.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from ..asr.decode import greedy_decode
from ..asr.model import ctc_loss
from ..backbones import load_backbone
from ..data import UtteranceDataset
from ..device import resolve_device
from ..logs import info
from ..metrics import error_counts
from ..text import Vocabulary, normalize
from .features import collect, moments
from .recommend import DEFAULT_TOLERANCE
from .result import probe_result, write_probe
from .split import probe_data


class ProbeHead(nn.Module):
    """``(B, T', D)`` features -> ``(B, T', V)`` log-probabilities."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, vocab_size: int, hidden: int = 256):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(nn.Linear(mean.numel(), hidden), nn.GELU(), nn.Linear(hidden, vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).log_softmax(-1)


def pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of ``(T_i, D)`` -> ``(B, T_max, D)`` float32 and lengths ``(B,)``."""
    lengths = torch.tensor([f.shape[0] for f in feats])
    return nn.utils.rnn.pad_sequence([f.float() for f in feats], batch_first=True), lengths


def probe_asr(backbone: str, manifest: str | Path, out: str | Path, eval_manifest: str | Path | None = None,
              steps: int = 600, batch_size: int = 16, lr: float = 2e-3, max_utterances: int = 800,
              max_eval_utterances: int = 200, language: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
              seed: int = 0, log=info, device: str = "cpu", feature_batch_size: int = 16) -> dict:
    """Per-depth CER/WER of CTC probes on ``backbone`` (frozen); writes and returns ``probe.json``'s content.

    ``manifest``: transcribed training utterances (``max_utterances`` drawn, seeded). ``eval_manifest``:
    held-out utterances; without it, held-out speakers of ``manifest`` (see :func:`.split.held_out_split`).
    The backbone and the heads run on ``device``; the backbone sees ``feature_batch_size`` utterances per
    forward pass (``batch_size`` is the heads' training batch).
    """
    started = time.time()
    dev = resolve_device(device)
    train, test, how = probe_data(manifest, eval_manifest, True, max_utterances, max_eval_utterances, seed)
    language = language or Counter(u.language for u in train).most_common(1)[0][0]
    vocab = Vocabulary.build((u.text for u in train), language=language)
    targets = [vocab.encode(u.text)[0] for u in train]
    torch.manual_seed(seed)
    bb = load_backbone(backbone)
    log(f"probe asr {backbone}: {len(bb.layers)} layers; train {len(train)} utterances, "
        f"evaluate {len(test)} ({how}); vocabulary {len(vocab)}")
    train_feats = collect(bb, UtteranceDataset(train), "features (train)", dev, feature_batch_size)
    test_feats = collect(bb, UtteranceDataset(test), "features (eval)", dev, feature_batch_size)
    heads = nn.ModuleList(ProbeHead(*moments(f), len(vocab)) for f in train_feats).to(dev)
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = random.Random(seed)
    order: list[int] = []
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order += rng.sample(range(len(train)), len(train))
        idx, order = order[:batch_size], order[batch_size:]
        loss = sum(ctc_loss(head(x.to(dev)), n, [targets[i] for i in idx])
                   for head, (x, n) in ((h, pad([f[i] for i in idx])) for h, f in zip(heads, train_feats, strict=True)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0:
            log(f"step {step}/{steps}: summed CTC loss over {len(heads)} depths {float(loss.detach()):.3f}")
    refs = [normalize(u.text) for u in test]
    layers = []
    heads.eval()
    with torch.no_grad():
        for k, (head, feats) in enumerate(zip(heads, test_feats, strict=True)):
            hyps = []
            for a in range(0, len(feats), 32):
                x, n = pad(feats[a:a + 32])
                hyps += greedy_decode(head(x.to(dev)), n, vocab)
            c = error_counts(refs, hyps)
            layers.append({"depth": k, "cer": c.chars.rate(), "wer": c.words.rate(), "dim": int(feats[0].shape[1]),
                           "example": {"ref": refs[0], "hyp": hyps[0]}})
            log(f"depth {k}: CER {layers[-1]['cer']:.4f} WER {layers[-1]['wer']:.4f}")
    result = probe_result("asr", backbone, "cer", layers, tolerance, started,
                    {"train_utterances": len(train), "eval_utterances": len(test), "eval": how, "steps": steps,
                     "head": "standardise -> Linear(D, 256) -> GELU -> Linear(256, V), CTC", "language": language})
    write_probe(out, result)
    return result
