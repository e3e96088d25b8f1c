"""CTC model: a pretrained backbone with a new linear character head.

``forward(wave=(B, T), lengths=(B,))`` -> log-probabilities ``(B, T', V)`` and frame
lengths ``(B,)``. With ``frozen_depth=k`` the frontend and ``layers[:k]`` run under
``no_grad``; with ``hidden=`` (from the prefix cache) they are skipped altogether.
With domain confusion on (a ``domain_classifier`` attached by the task), ``forward`` also keeps
the mean-pooled encoder output ``(B, D)`` as ``pooled`` for the domain loss.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..backbones.base import Backbone, mean_pool


class CtcModel(nn.Module):
    def __init__(self, backbone: Backbone, vocab_size: int, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.output_dim, vocab_size)

    def forward(self, wave: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, frozen_depth: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        start = frozen_depth if frozen_depth is not None else 0
        if hidden is None:
            frozen = frozen_depth is not None
            with torch.no_grad() if frozen else contextlib.nullcontext():
                hidden, lengths = self.backbone.forward_to(start, wave, lengths)
        feats = self.backbone.forward_from(start, hidden, lengths)
        if hasattr(self, "domain_classifier"):  # domain confusion reads the utterance-level encoder output
            self.pooled = mean_pool(feats, lengths)
        logits = self.head(self.dropout(feats))
        return logits.float().log_softmax(dim=-1), lengths


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Mean CTC loss per target character. ``log_probs`` ``(B, T, V)``; blank is index 0."""
    flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, lengths.cpu(), target_lengths, blank=0,
                                  reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp(min=1)


def ctc_impossible(lengths: torch.Tensor, targets: list[list[int]]) -> list[int]:
    """Positions ``b`` whose target cannot be aligned in ``lengths[b]`` frames (CTC needs one frame per character
    plus one blank between repeated characters); ``zero_infinity`` zeroes their loss, so they teach nothing."""
    need = [len(t) + sum(1 for a, b in zip(t, t[1:], strict=False) if a == b) for t in targets]
    return [b for b, n in enumerate(need) if int(lengths[b]) < n]
