"""Hidden states at every depth of a frozen backbone, computed once per utterance."""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from ..backbones.base import Backbone
from ..data import UtteranceDataset


def depth_outputs(backbone: Backbone, wave: torch.Tensor) -> list[torch.Tensor]:
    """``(T,)`` samples -> ``[h_0, ..., h_L]``, each ``(T', D_k)``: ``h_k`` after the bottom ``k`` layers.

    ``h_0`` is the frontend output; ``h_L`` includes the backbone's final step (norm or projection),
    i.e. exactly what a head sees when everything is frozen.
    """
    lengths = torch.tensor([wave.numel()])
    hidden, out_lengths = backbone.embed(wave[None], lengths)
    outs = [hidden]
    for i in range(len(backbone.layers)):
        hidden = backbone.run_layer(i, hidden, out_lengths)
        outs.append(backbone.finish(hidden) if i == len(backbone.layers) - 1 else hidden)
    n = int(out_lengths[0])
    return [h[0, :n].float() for h in outs]


def collect(backbone: Backbone, dataset: UtteranceDataset, desc: str) -> list[list[torch.Tensor]]:
    """Per depth, per utterance ``(T', D_k)`` float16 features (a progress bar on a TTY)."""
    backbone.eval()
    per_depth: list[list[torch.Tensor]] = [[] for _ in range(len(backbone.layers) + 1)]
    with torch.no_grad():
        for i in tqdm(range(len(dataset)), desc=desc, unit="utt", disable=not sys.stderr.isatty()):
            for k, h in enumerate(depth_outputs(backbone, dataset[i][0])):
                per_depth[k].append(h.half())
    return per_depth


def moments(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``(D,)`` over all frames of a list of ``(T', D)`` tensors."""
    total = sum(f.shape[0] for f in feats)
    mean = sum(f.float().sum(0) for f in feats) / total
    var = sum(((f.float() - mean) ** 2).sum(0) for f in feats) / max(1, total - 1)
    return mean, var.sqrt().clamp(min=1e-5)
