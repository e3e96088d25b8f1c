"""Speaker model: a pretrained backbone, pooling to one embedding, and an AAM-softmax head for training.

Training sees fixed-length random crops ``(B, T)`` -> embeddings ``(B, D)`` (L2-normalised);
the head turns them into class scores with an additive angular margin (Deng et al. 2019).
The embedding used for verification and enrollment is the pre-head output:
:meth:`SpeakerModel.embed_utterance` (whole utterance ``(T,)`` -> ``(D,)``; GE2E backbones
average 1.6 s partial windows exactly as they were pretrained).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
import yaml
from torch import nn

from ..backbones import checkpoint_backbone
from ..backbones.base import Backbone, mean_pool
from ..checkpoint import load_tensors, read_meta, resolve_checkpoint
from ..config import ConfigError
from ..domain import strip_training_modules


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax: ``s * cos(theta + m)`` for the true class, ``s * cos(theta)`` otherwise."""

    def __init__(self, dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.margin, self.scale = margin, scale

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``(B, C)`` of normalised embeddings ``(B, D)`` to the class centres."""
        return nn.functional.normalize(emb, dim=1) @ nn.functional.normalize(self.weight, dim=1).T

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (mean cross-entropy) and top-1 accuracy of ``labels`` ``(B,)``."""
        cos = self.logits(emb).float().clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos)
        target = torch.cos(theta + self.margin)
        # keep the function monotonic past pi - m (the usual "easy margin" fallback)
        target = torch.where(theta < math.pi - self.margin, target, cos - self.margin * math.sin(self.margin))
        onehot = nn.functional.one_hot(labels, cos.shape[1]).bool()
        logits = self.scale * torch.where(onehot, target, cos)
        loss = nn.functional.cross_entropy(logits, labels)
        acc = (cos.argmax(1) == labels).float().mean()
        return loss, acc


class SpeakerModel(nn.Module):
    """Backbone + pooling (+ projection) -> embedding; ``head`` is used only in training."""

    def __init__(self, backbone: Backbone, num_speakers: int, pooling: str = "auto", embedding_dim: int | None = None,
                 margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.backbone = backbone
        is_ge2e = backbone.source.startswith("ge2e:")
        if pooling == "auto":  # the pooling the backbone was pretrained with
            pooling = "backbone" if hasattr(backbone, "pool") else "last" if is_ge2e else "mean"
        self.pooling = pooling
        known = ("last", "mean", "backbone") if hasattr(backbone, "pool") else ("last", "mean")
        if self.pooling not in known:
            raise ConfigError(f"model.pooling must be auto, last, mean (or backbone for ECAPA), got {pooling!r}")
        self.project = nn.Linear(backbone.output_dim, embedding_dim) if embedding_dim else nn.Identity()
        self.embedding_dim = embedding_dim or backbone.output_dim
        self.head = AAMSoftmax(self.embedding_dim, num_speakers, margin, scale)

    def pool(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T', D)`` frame features -> ``(B, D)``: the last valid frame, or the mean of the valid ones."""
        if self.pooling == "backbone":
            return self.backbone.pool(feats, lengths)
        if self.pooling == "last":
            idx = (lengths - 1).clamp(min=0).to(feats.device)
            return feats[torch.arange(feats.shape[0], device=feats.device), idx]
        return mean_pool(feats, lengths)

    def forward(self, wave: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, frozen_depth: int | None = None) -> torch.Tensor:
        start = frozen_depth if frozen_depth is not None else 0
        if hidden is None:
            with torch.no_grad() if frozen_depth is not None else contextlib.nullcontext():
                hidden, lengths = self.backbone.forward_to(start, wave, lengths)
        feats = self.backbone.forward_from(start, hidden, lengths)
        return nn.functional.normalize(self.project(self.pool(feats, lengths)), dim=1)

    def embed_utterance(self, wave: torch.Tensor) -> torch.Tensor:
        """Whole utterance ``(T,)`` at 16 kHz -> L2-normalised embedding ``(D,)``."""
        return self.embed_batch([wave])[0]

    def embed_batch(self, waves: list[torch.Tensor]) -> torch.Tensor:
        """Whole utterances ``[(T_i,)]`` at 16 kHz (on the model's device) -> L2-normalised embeddings ``(B, D)``.

        GE2E with last-frame pooling: every utterance's 1.6 s partial windows, all in one pass (they have one
        length, so nothing is padded), averaged per utterance. Otherwise one padded batch, padding masked.
        """
        if self.pooling == "last" and self.backbone.source.startswith("ge2e:"):
            from ..backbones.ge2e import PARTIAL_FRAMES

            windows = [ge2e_windows(self.backbone.frontend, w) for w in waves]
            stacked = torch.cat(windows)
            lengths = torch.full((stacked.shape[0],), PARTIAL_FRAMES, dtype=torch.long)
            emb = self.forward(hidden=stacked, lengths=lengths, frozen_depth=0)
            return average_windows(emb, [w.shape[0] for w in windows])
        from ..data import pad_waves

        wave, lengths = pad_waves([w.reshape(-1) for w in waves])
        device = waves[0].device
        return self.forward(wave=wave.to(device), lengths=lengths.to(device))


def ge2e_windows(frontend: nn.Module, wave: torch.Tensor) -> torch.Tensor:
    """GE2E's partial windows of one utterance ``(T,)``: mel frames ``(W, 160, 40)``, as resemblyzer cuts them
    (see :func:`speech_tl.backbones.ge2e.embed_utterance`)."""
    from ..backbones.ge2e import partial_slices

    slices = partial_slices(wave.numel())
    need = slices[-1][1] * 160
    if need >= wave.numel():
        wave = nn.functional.pad(wave, (0, need - wave.numel()))
    mel, _ = frontend(wave[None], torch.tensor([wave.numel()], device=wave.device))
    return torch.stack([mel[0, a:b] for a, b in slices])


def average_windows(emb: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """L2-normalised mean of each utterance's window embeddings: ``(sum(counts), D)`` -> ``(len(counts), D)``."""
    means = torch.stack([e.mean(0) for e in emb.split(counts)])
    return means / means.norm(dim=1, keepdim=True).clamp(min=1e-12)


def load_speaker_model(folder: str | Path) -> tuple[SpeakerModel, dict]:
    """Rebuild the speaker model of a checkpoint (a run folder's ``best/``, or a checkpoint folder)."""
    found = resolve_checkpoint(folder)
    meta = read_meta(found, task="speaker")
    cfg = yaml.safe_load((found / "config.yaml").read_text(encoding="utf-8"))
    speakers = json.loads((found / "speakers.json").read_text(encoding="utf-8"))["speakers"]
    m = cfg.get("model", {})
    backbone = checkpoint_backbone(meta)
    model = SpeakerModel(backbone, len(speakers), m.get("pooling", "auto"), m.get("embedding_dim"),
                         m.get("margin", 0.2), m.get("scale", 30.0))
    model.load_state_dict(strip_training_modules(load_tensors(found / "model.pt")))
    return model.eval(), {**meta, "config": cfg, "speakers": speakers}
