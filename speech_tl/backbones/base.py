"""The one Backbone interface every pretrained source is loaded behind.

A backbone turns a padded batch of 16 kHz waveforms into frame features::

    features, feature_lengths = backbone(wave, lengths)
    # wave (B, T) float32, lengths (B,) samples -> features (B, T', D), feature_lengths (B,)

and exposes its parts so freezing is generic:

- ``frontend``: waveform -> first hidden states (log-mel + conv stem, CNN feature encoder, ...)
- ``layers``: ``nn.ModuleList`` of the blocks, bottom first
- ``forward_from(k, hidden, lengths)``: run ``layers[k:]`` and the final norm, so the output of a
  frozen prefix (frontend + ``layers[:k]``) can be computed once and cached.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, SpeechTlError


class BackboneError(SpeechTlError, ValueError):
    """A backbone source that cannot be loaded; the message names the source string."""


class Backbone(nn.Module):
    """Base class: subclasses set ``frontend``, ``layers``, ``output_dim`` and implement the hooks."""

    sample_rate: int = 16000
    source: str = ""
    output_dim: int
    # the longest input the model accepts (None: no limit); longer audio is cut into overlapping windows by
    # :func:`speech_tl.asr.infer.ctc_posteriors` and their outputs stitched
    max_input_seconds: float | None = None
    # input samples per output frame (None: unknown, estimated from each input's output length)
    frame_samples: int | None = None
    frontend: nn.Module
    layers: nn.ModuleList

    def arch(self) -> dict:
        """What rebuilds this architecture without its source (package, hub, folder): JSON data, saved in a
        checkpoint's ``meta.json`` as ``backbone_arch`` and read by :func:`speech_tl.backbones.build_backbone`."""
        raise NotImplementedError

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frontend: ``(B, T)`` samples -> hidden ``(B, T', D)`` and lengths ``(B,)``."""
        raise NotImplementedError

    def run_layer(self, index: int, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Apply ``layers[index]`` to ``(B, T', D)`` with padding frames masked."""
        raise NotImplementedError

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """What follows the last layer (a final layer norm, or nothing)."""
        return hidden

    def forward_to(self, k: int, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frontend and ``layers[:k]``: the hidden states at the top of a prefix of depth ``k``."""
        hidden, out_lengths = self.embed(wave, lengths)
        for i in range(k):
            hidden = self.run_layer(i, hidden, out_lengths)
        return hidden, out_lengths

    def forward_from(self, k: int, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``layers[k:]`` and :meth:`finish` on hidden states from :meth:`forward_to`."""
        for i in range(k, len(self.layers)):
            hidden = self.run_layer(i, hidden, lengths)
        return self.finish(hidden)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, out_lengths = self.forward_to(0, wave, lengths)
        return self.forward_from(0, hidden, out_lengths), out_lengths


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` bool, True at valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def mean_pool(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T', D)`` frame features -> ``(B, D)``: the mean of each sequence's valid frames."""
    mask = padding_mask(lengths.to(feats.device), feats.shape[1])
    return (feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def set_dropout(backbone: nn.Module, p: float) -> None:
    """Set every dropout probability inside ``backbone.layers`` (``nn.Dropout`` modules and the float
    ``dropout``/``activation_dropout``/``attention_dropout`` attributes transformers layers use)."""
    if not 0 <= p < 1:
        raise InputError(f"dropout must be in [0, 1) (model.backbone_dropout), got {p}")
    for m in backbone.layers.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        for attr in ("dropout", "activation_dropout", "attention_dropout"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, p)
