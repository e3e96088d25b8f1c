"""Hidden states at every depth of a frozen backbone, computed once per utterance."""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from ..backbones.base import Backbone
from ..data import UtteranceDataset, pad_waves


def depth_outputs(backbone: Backbone, wave: torch.Tensor) -> list[torch.Tensor]:
    """``(T,)`` samples -> ``[h_0, ..., h_L]``, each ``(T', D_k)``: ``h_k`` after the bottom ``k`` layers.

    ``h_0`` is the frontend output; ``h_L`` includes the backbone's final step (norm or projection),
    i.e. exactly what a head sees when everything is frozen.
    """
    return [h[0] for h in batch_depth_outputs(backbone, [wave])]


def batch_depth_outputs(backbone: Backbone, waves: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """:func:`depth_outputs` of several utterances in one padded pass (padding masked):
    per depth, per utterance ``(T'_i, D_k)`` float32, on the waves' device."""
    wave, lengths = pad_waves([w.reshape(-1) for w in waves])
    device = waves[0].device
    hidden, out_lengths = backbone.embed(wave.to(device), lengths.to(device))
    outs = [hidden]
    for i in range(len(backbone.layers)):
        hidden = backbone.run_layer(i, hidden, out_lengths)
        outs.append(backbone.finish(hidden) if i == len(backbone.layers) - 1 else hidden)
    ns = [int(n) for n in out_lengths.tolist()]
    return [[h[b, :n].float() for b, n in enumerate(ns)] for h in outs]


def collect(backbone: Backbone, dataset: UtteranceDataset, desc: str, device: torch.device | str = "cpu",
            batch_size: int = 16) -> list[list[torch.Tensor]]:
    """Per depth, per utterance ``(T', D_k)`` float16 features on the CPU (a progress bar on a TTY).

    The backbone runs on ``device``, ``batch_size`` utterances of similar duration per forward pass.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    backbone.eval().to(device)
    n = len(dataset)
    per_depth: list[list[torch.Tensor | None]] = [[None] * n for _ in range(len(backbone.layers) + 1)]
    durations = list(dataset.durations)
    order = sorted(range(n), key=lambda i: -durations[i])
    with torch.no_grad(), tqdm(total=n, desc=desc, unit="utt", disable=not sys.stderr.isatty()) as bar:
        for a in range(0, n, batch_size):
            idx = order[a:a + batch_size]
            outs = batch_depth_outputs(backbone, [dataset[i][0].to(device) for i in idx])
            for k, feats in enumerate(outs):
                for i, h in zip(idx, feats, strict=True):
                    per_depth[k][i] = h.half().cpu()
            bar.update(len(idx))
    return per_depth  # type: ignore[return-value]


def moments(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``(D,)`` over all frames of a list of ``(T', D)`` tensors."""
    total = sum(f.shape[0] for f in feats)
    mean = sum(f.float().sum(0) for f in feats) / total
    var = sum(((f.float() - mean) ** 2).sum(0) for f in feats) / max(1, total - 1)
    return mean, var.sqrt().clamp(min=1e-5)
