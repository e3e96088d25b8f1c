"""Turn audio into speaker embeddings with a backbone source string or an adapted checkpoint.

``load_embedder("ge2e:resemblyzer")`` or ``load_embedder("exp/speaker_id/bottom2")`` gives an
:class:`Embedder`: ``embed(wave (T,) at 16 kHz) -> (D,)`` L2-normalised, plus ``source`` and a
``fingerprint`` of the exact weights, so that embeddings of different models are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio import load_checked
from ..checkpoint import fingerprint


@dataclass
class Embedder:
    """A model that maps a waveform to an L2-normalised speaker embedding ``(D,)``."""

    source: str
    fingerprint: str
    dim: int
    _embed: object  # callable: (T,) float tensor -> (D,) tensor

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            e = self._embed(wave.float())
        return e / e.norm().clamp(min=1e-12)

    def embed_file(self, path: str | Path) -> torch.Tensor:
        """Load (any format/rate), check (too short, silent, clipped, unreadable) and embed one file."""
        return self.embed(load_checked(path))


def load_embedder(model: str) -> Embedder:
    """A backbone source string (unadapted) or a speaker checkpoint folder (adapted)."""
    path = Path(model)
    if path.is_dir():
        from .model import load_speaker_model

        net, meta = load_speaker_model(path)
        return Embedder(str(path.resolve()), meta.get("fingerprint") or fingerprint(net), net.embedding_dim,
                        net.embed_utterance)
    from ..backbones import load_backbone

    backbone = load_backbone(model).eval()
    if model.startswith("ge2e:"):
        from ..backbones.ge2e import embed_utterance

        return Embedder(model, fingerprint(backbone), backbone.output_dim,
                        lambda w: embed_utterance(backbone, w))

    def mean_pool(wave: torch.Tensor) -> torch.Tensor:
        feats, lengths = backbone(wave[None], torch.tensor([wave.numel()]))
        if hasattr(backbone, "pool"):  # ECAPA: its own attentive statistics pooling
            return backbone.pool(feats, lengths)[0]
        return feats[0].mean(0)

    return Embedder(model, fingerprint(backbone), backbone.output_dim, mean_pool)
