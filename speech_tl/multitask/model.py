"""The shared encoder with a CTC head and a speaker head, and its export to single-task checkpoints."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..backbones.base import Backbone, mean_pool
from ..speaker.model import AAMSoftmax


class MultitaskModel(nn.Module):
    """``forward`` -> CTC log-probabilities ``(B, T', V)``, frame lengths ``(B,)`` and speaker embeddings ``(B, E)``.

    The speaker branch mean-pools the encoder output over valid frames, projects it to ``E`` dimensions
    and L2-normalises it; ``head`` holds the new modules (``ctc``, ``speaker_project``, ``speaker``), so
    the freeze plan and the training loop treat them as the head.
    """

    def __init__(self, backbone: Backbone, vocab_size: int, num_speakers: int, dropout: float = 0.1,
                 embedding_dim: int = 256, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.ModuleDict({
            "ctc": nn.Linear(backbone.output_dim, vocab_size),
            "speaker_project": nn.Linear(backbone.output_dim, embedding_dim),
            "speaker": AAMSoftmax(embedding_dim, num_speakers, margin, scale),
        })
        self.embedding_dim = embedding_dim

    def forward(self, wave: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, frozen_depth: int | None = None):
        start = frozen_depth if frozen_depth is not None else 0
        if hidden is None:
            with torch.no_grad() if frozen_depth is not None else contextlib.nullcontext():
                hidden, lengths = self.backbone.forward_to(start, wave, lengths)
        feats = self.backbone.forward_from(start, hidden, lengths)
        log_probs = self.head["ctc"](self.dropout(feats)).float().log_softmax(dim=-1)
        emb = nn.functional.normalize(self.head["speaker_project"](mean_pool(feats, lengths)), dim=1)
        return log_probs, lengths, emb

    def embed_utterance(self, wave: torch.Tensor) -> torch.Tensor:
        """Whole utterance ``(T,)`` -> L2-normalised speaker embedding ``(E,)``."""
        return self.forward(wave=wave[None], lengths=torch.tensor([wave.numel()], device=wave.device))[2][0]


class AsrView(nn.Module):
    """The CTC side of a :class:`MultitaskModel` (same parameters), for the ASR decoding helpers."""

    def __init__(self, model: MultitaskModel):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor):
        log_probs, lengths, _ = self.model(wave=wave, lengths=lengths)
        return log_probs, lengths


def asr_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A multitask state dict as a :class:`~speech_tl.asr.model.CtcModel` state dict."""
    out = {k: v for k, v in state.items() if k.startswith("backbone.")}
    out.update({"head." + k[len("head.ctc."):]: v for k, v in state.items() if k.startswith("head.ctc.")})
    return out


def speaker_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A multitask state dict as a :class:`~speech_tl.speaker.model.SpeakerModel` state dict (mean pooling,
    projection)."""
    out = {k: v for k, v in state.items() if k.startswith("backbone.")}
    out.update({"project." + k[len("head.speaker_project."):]: v for k, v in state.items()
                if k.startswith("head.speaker_project.")})
    out["head.weight"] = state["head.speaker.weight"]
    return out
