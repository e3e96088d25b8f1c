"""Speaker layer probe: statistics pooling and LDA per depth of a frozen backbone, cosine EER on held-out speakers.

Per depth ``k`` each utterance becomes the mean and standard deviation of its standardised frames
``(2 D_k,)``; an LDA projection (shrinkage-regularised, fitted on the training speakers) is the
light head; the EER of cosine scores over all pairs of the held-out speakers' utterances is the
probe's error. The EER of the pooled statistics without LDA is reported beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from ..backbones import load_backbone
from ..data import UtteranceDataset
from ..device import resolve_device
from ..errors import InputError
from ..logs import info
from ..metrics import eer
from .features import collect, moments
from .recommend import DEFAULT_TOLERANCE
from .result import probe_result, write_probe
from .split import probe_data


def pooled(feats: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Statistics pooling of standardised ``(T', D)`` frames -> ``(N, 2D)`` float64."""
    rows = []
    for f in feats:
        z = (f.float() - mean) / std
        rows.append(torch.cat([z.mean(0), z.std(0, unbiased=False)]))
    return torch.stack(rows).double().numpy()


def fit_lda(x: np.ndarray, labels: np.ndarray, dims: int = 128, shrinkage: float = 0.1) -> np.ndarray:
    """LDA projection ``(d, m)``, ``m = min(dims, classes - 1, d)``, of rows ``x`` ``(N, d)``.

    Within-class scatter is shrunk towards a scaled identity, so it stays invertible when there
    are fewer utterances than dimensions.
    """
    classes = np.unique(labels)
    mu = x.mean(0)
    sw = np.zeros((x.shape[1], x.shape[1]))
    sb = np.zeros_like(sw)
    for c in classes:
        xc = x[labels == c]
        mc = xc.mean(0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mu, mc - mu)
    sw /= len(x)
    sb /= len(x)
    sw = (1 - shrinkage) * sw + shrinkage * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
    m = min(dims, len(classes) - 1, x.shape[1])
    _, vecs = scipy.linalg.eigh(sb, sw, subset_by_index=[x.shape[1] - m, x.shape[1] - 1])
    return vecs[:, ::-1]


def pair_eer(emb: np.ndarray, speakers: np.ndarray) -> float:
    """EER of cosine scores over all pairs of rows of ``emb`` ``(N, d)``."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    iu = np.triu_indices(len(e), k=1)
    labels = (speakers[iu[0]] == speakers[iu[1]]).astype(np.int64)
    if labels.sum() == 0 or labels.sum() == labels.size:
        raise InputError("the held-out utterances need at least two speakers and one speaker with two utterances; "
                         "give --eval a manifest of several speakers with 2+ utterances each")
    return float(eer((e @ e.T)[iu], labels)[0])


def probe_speaker(backbone: str, manifest: str | Path, out: str | Path, eval_manifest: str | Path | None = None,
                  max_utterances: int = 1500, max_eval_utterances: int = 400, tolerance: float = DEFAULT_TOLERANCE,
                  seed: int = 0, log=info, device: str = "cpu", batch_size: int = 16) -> dict:
    """Per-depth LDA-cosine EER of ``backbone`` (frozen); writes and returns ``probe.json``'s content.

    ``manifest``: speaker-labelled training utterances (LDA). ``eval_manifest``: other speakers; without
    it, held-out speakers of ``manifest``. The backbone runs on ``device``, ``batch_size`` utterances per pass.
    """
    started = time.time()
    dev = resolve_device(device)
    train, test, how = probe_data(manifest, eval_manifest, False, max_utterances, max_eval_utterances, seed)
    overlap = {u.speaker for u in train} & {u.speaker for u in test}
    if overlap and eval_manifest is None:
        raise InputError(f"{manifest}: fewer than 4 speakers, so none can be held out; give --eval with the "
                         "utterances of other speakers")
    if overlap:
        raise InputError(f"{eval_manifest}: speakers {sorted(overlap)[:5]} are also in {manifest}; a speaker probe "
                         "is evaluated on speakers it was not fitted on")
    train_spk = np.array([u.speaker for u in train])
    if len(set(train_spk)) < 2:
        raise InputError(f"{manifest}: a speaker probe needs at least 2 training speakers")
    test_spk = np.array([u.speaker for u in test])
    torch.manual_seed(seed)
    bb = load_backbone(backbone)
    log(f"probe speaker {backbone}: {len(bb.layers)} layers; LDA on {len(train)} utterances of "
        f"{len(set(train_spk))} speakers, EER on {len(test)} of {len(set(test_spk))} ({how})")
    train_feats = collect(bb, UtteranceDataset(train), "features (train)", dev, batch_size)
    test_feats = collect(bb, UtteranceDataset(test), "features (eval)", dev, batch_size)
    layers = []
    for k, (tr, te) in enumerate(zip(train_feats, test_feats, strict=True)):
        mean, std = moments(tr)
        xtr, xte = pooled(tr, mean, std), pooled(te, mean, std)
        centre, scale = xtr.mean(0), xtr.std(0).clip(1e-6)
        xtr, xte = (xtr - centre) / scale, (xte - centre) / scale
        proj = fit_lda(xtr, train_spk)
        layers.append({"depth": k, "eer": pair_eer(xte @ proj, test_spk), "eer_no_lda": pair_eer(xte, test_spk),
                       "dim": int(tr[0].shape[1]), "lda_dim": int(proj.shape[1])})
        log(f"depth {k}: EER {layers[-1]['eer']:.4f} (without LDA {layers[-1]['eer_no_lda']:.4f})")
    result = probe_result("speaker", backbone, "eer", layers, tolerance, started,
                          {"train_utterances": len(train), "train_speakers": len(set(train_spk)),
                           "eval_utterances": len(test), "eval_speakers": len(set(test_spk)), "eval": how,
                           "head": "statistics pooling of standardised frames -> LDA (shrinkage 0.1) -> cosine"})
    write_probe(out, result)
    return result
