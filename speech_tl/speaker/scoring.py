"""Scoring verification trials: cosine, adaptive s-norm, and what a results file shows about the scores.

* :func:`cosine_scores`: cosine similarity of ``(enroll, test)`` index pairs into an embedding matrix ``(N, D)``,
  batched (blocks of the Gram matrix, or blocked row-wise dot products when trials are few for ``N``).
* :func:`asnorm_scores`: adaptive symmetric score normalisation (AS-Norm, Matějka et al., "Analysis of score
  normalization in multilingual speaker recognition", Interspeech 2017). Each utterance ``x`` is scored against
  a cohort of ``M`` other speakers' embeddings; ``mu(x)`` and ``sigma(x)`` are the mean and (unbiased) standard
  deviation of its ``top_k`` highest cohort scores. A trial's cosine ``s(e, t)`` becomes
  ``((s - mu(e)) / sigma(e) + (s - mu(t)) / sigma(t)) / 2``. The cohort statistics are computed once per
  utterance (a matrix product and a top-k), then applied to all trials at once.
* :func:`bootstrap_eer_ci`, :func:`calibration_curve`, :func:`score_histogram`: a confidence interval of the
  EER, the error rates at (at most ~1000) thresholds for choosing an operating point, and histograms to plot.

Conventions follow :mod:`speech_tl.metrics`: label 1 = target, accept when ``score > threshold``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import _operating_points

__all__ = ["asnorm_scores", "bootstrap_eer_ci", "calibration_curve", "cohort_stats", "cosine_scores",
           "l2_normalize", "score_histogram"]

_GRAM_MAX_ENTRIES = 1 << 24  # always read trials from the Gram matrix up to 16 M entries
_BLOCK_ENTRIES = 1 << 24  # entries per block of Gram or cohort scores (64 MB of float32)
_BLOCK_TRIALS = 1 << 14  # trials per block when gathering embedding rows (small blocks stay in cache)


def l2_normalize(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Rows scaled to unit length: float32 ``(N, D)`` (zero rows stay zero)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D matrix (N, D), got shape {tuple(x.shape)}")
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def _indices(enroll, test, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.as_tensor(np.asarray(enroll, dtype=np.int64))
    t = torch.as_tensor(np.asarray(test, dtype=np.int64))
    if e.ndim != 1 or e.shape != t.shape:
        raise ValueError(f"enroll {tuple(e.shape)} and test {tuple(t.shape)} must be 1-D and of the same length")
    for name, idx in (("enroll", e), ("test", t)):
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name} indices must lie in [0, {n})")
    return e, t


def cosine_scores(embeddings: torch.Tensor | np.ndarray, enroll, test) -> np.ndarray:
    """Cosine similarity of each trial ``(enroll[i], test[i])``: float64 ``(T,)``.

    ``embeddings`` ``(N, D)`` (normalised here); ``enroll`` and ``test`` ``(T,)`` integer indices into its rows.
    With many trials per utterance (``N * N <= 64 * T``) the Gram matrix is computed in blocks of rows and the
    trials are read from it; otherwise the two rows of each trial are gathered and multiplied, in blocks.
    """
    emb = l2_normalize(embeddings)
    e, t = _indices(enroll, test, emb.shape[0])
    n = emb.shape[0]
    out = torch.empty(e.numel(), dtype=torch.float32)
    with torch.no_grad():
        if n * n <= max(_GRAM_MAX_ENTRIES, 64 * e.numel()):
            order = torch.argsort(e, stable=True)
            rows = max(1, _BLOCK_ENTRIES // max(1, n))
            bounds = torch.searchsorted(e[order], torch.arange(0, n + rows, rows)).tolist()
            for b, a in enumerate(range(0, n, rows)):
                sel = order[bounds[b]:bounds[b + 1]]
                if sel.numel():
                    out[sel] = (emb[a:a + rows] @ emb.T)[e[sel] - a, t[sel]]
        else:
            for a in range(0, e.numel(), _BLOCK_TRIALS):
                out[a:a + _BLOCK_TRIALS] = (emb[e[a:a + _BLOCK_TRIALS]] * emb[t[a:a + _BLOCK_TRIALS]]).sum(1)
    return out.double().numpy()


def cohort_stats(embeddings: torch.Tensor | np.ndarray, cohort: torch.Tensor | np.ndarray, top_k: int = 200
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``embeddings`` ``(N, D)``: mean and unbiased std of its ``top_k`` highest cosines to ``cohort``.

    ``cohort`` ``(M, D)``; ``top_k`` is capped at ``M`` and must be at least 2 (a standard deviation needs two
    scores). Returns float64 ``(N,)`` arrays ``(mean, std)``; std is floored at 1e-8.
    """
    emb, coh = l2_normalize(embeddings), l2_normalize(cohort)
    if coh.shape[0] < 2:
        raise ValueError(f"the AS-Norm cohort needs at least 2 embeddings, got {coh.shape[0]}")
    if coh.shape[1] != emb.shape[1]:
        raise ValueError(f"cohort embeddings have dimension {coh.shape[1]}, the evaluated ones {emb.shape[1]}")
    if int(top_k) != top_k or top_k < 2:
        raise ValueError(f"top_k must be an integer >= 2, got {top_k!r}")
    k = min(int(top_k), coh.shape[0])
    mean = torch.empty(emb.shape[0], dtype=torch.float64)
    std = torch.empty(emb.shape[0], dtype=torch.float64)
    step = max(1, _BLOCK_ENTRIES // coh.shape[0])
    with torch.no_grad():
        for a in range(0, emb.shape[0], step):
            top = (emb[a:a + step] @ coh.T).topk(k, dim=1).values.double()
            mean[a:a + step] = top.mean(1)
            std[a:a + step] = top.std(1)
    return mean.numpy(), std.clamp(min=1e-8).numpy()


def asnorm_scores(embeddings: torch.Tensor | np.ndarray, cohort: torch.Tensor | np.ndarray, enroll, test,
                  top_k: int = 200, scores: np.ndarray | None = None) -> np.ndarray:
    """Adaptive s-norm of the cosine score of each trial: float64 ``(T,)``.

    ``embeddings`` ``(N, D)``, ``cohort`` ``(M, D)`` (speakers disjoint from the evaluated ones), ``enroll`` and
    ``test`` ``(T,)`` indices; ``scores`` the raw cosines if already computed (:func:`cosine_scores`).
    """
    e, t = _indices(enroll, test, int(torch.as_tensor(embeddings).shape[0]))
    raw = cosine_scores(embeddings, e, t) if scores is None else np.asarray(scores, dtype=np.float64)
    if raw.shape != tuple(e.shape):
        raise ValueError(f"scores {raw.shape} must match the {e.numel()} trials")
    used = np.unique(np.concatenate((e.numpy(), t.numpy())))  # statistics only for utterances in some trial
    mean_u, std_u = cohort_stats(torch.as_tensor(embeddings, dtype=torch.float32)[torch.as_tensor(used)], cohort,
                                 top_k)
    ie, it = np.searchsorted(used, e.numpy()), np.searchsorted(used, t.numpy())
    return 0.5 * ((raw - mean_u[ie]) / std_u[ie] + (raw - mean_u[it]) / std_u[it])


# --------------------------------------------------------------------------------------------------------------
# What a results file shows about the scores
# --------------------------------------------------------------------------------------------------------------

def _eer_from_counts(tc: np.ndarray, nc: np.ndarray) -> float:
    """EER from target and non-target counts (or weights) per distinct score, scores ascending.

    The same decisions and interpolation as :func:`speech_tl.metrics.eer`; groups of weight zero only repeat
    a decision and change nothing.
    """
    nt, nn = tc.sum(), nc.sum()
    misses = np.concatenate(([0.0], np.cumsum(tc)))
    false_alarms = nn - np.concatenate(([0.0], np.cumsum(nc)))
    d = misses * nn - false_alarms * nt
    j = int(np.searchsorted(d, 0, side="left"))
    if d[j] == 0:
        return float(misses[j] / nt)
    a = j - 1
    w = -d[a] / (d[j] - d[a])
    frr = (misses[a] + w * (misses[j] - misses[a])) / nt
    far = (false_alarms[a] + w * (false_alarms[j] - false_alarms[a])) / nn
    return float((frr + far) / 2)


def bootstrap_eer_ci(scores: np.ndarray, labels: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95
                     ) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER, resampling trials with replacement: ``(low, high)``.

    Scores are sorted once; each resample only counts how often each distinct score was drawn (``O(T)``), and
    its EER equals ``metrics.eer(scores[idx], labels[idx])``. Resamples without targets or non-targets are
    skipped. Trials that share utterances are not independent, so the interval is somewhat too narrow.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    _operating_points(scores, labels)  # the same validation as metrics.eer
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    uniq, group = np.unique(scores, return_inverse=True)
    is_target = labels.astype(bool)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n)):
        idx = rng.integers(0, scores.size, scores.size)
        g, t = group[idx], is_target[idx]
        tc = np.bincount(g[t], minlength=uniq.size).astype(np.float64)
        nc = np.bincount(g[~t], minlength=uniq.size).astype(np.float64)
        if tc.sum() > 0 and nc.sum() > 0:
            values.append(_eer_from_counts(tc, nc))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def finite_threshold(threshold: float, scores: np.ndarray) -> float:
    """A finite threshold that makes the same decisions on ``scores`` (JSON has no infinity).

    ``+inf`` (reject all) becomes the highest score, ``-inf`` (accept all) the float just below the lowest.
    """
    if np.isfinite(threshold):
        return float(threshold)
    s = np.asarray(scores, dtype=np.float64)
    return float(s.max()) if threshold > 0 else float(np.nextafter(s.min(), -np.inf))


def calibration_curve(scores: np.ndarray, labels: np.ndarray, max_points: int = 1000) -> dict[str, list[float]]:
    """Error rates at ascending finite thresholds, for choosing an operating threshold later.

    Returns ``{"thresholds": [...], "far": [...], "frr": [...]}`` (equal lengths, at most ``max_points``):
    accepting ``score > thresholds[i]`` gives false-alarm rate ``far[i]`` and miss rate ``frr[i]`` on these
    trials. Thresholds are midpoints between distinct scores; with more of them than ``max_points``, points are
    spread evenly along the DET curve on logit axes (as :func:`speech_tl.metrics.det_curve`), so the low-FAR
    and low-FRR tails keep their detail.
    """
    if int(max_points) != max_points or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    op = _operating_points(scores, labels)
    thr = op.thresholds[1:-1]  # drop -inf (accept all) and +inf (reject all)
    far = (op.false_alarms / op.n_nontarget)[1:-1]
    frr = (op.misses / op.n_target)[1:-1]
    if thr.size > max_points:
        eps = 0.5 / max(op.n_target, op.n_nontarget)

        def logit(p: np.ndarray) -> np.ndarray:
            p = np.clip(p, eps, 1.0 - eps)
            return np.log(p / (1.0 - p))

        x, y = logit(far), logit(frr)
        arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))

        def pick(m: int) -> np.ndarray:  # m positions evenly along the curve; close ones share a point
            idx = np.unique(np.searchsorted(arc, np.linspace(0.0, arc[-1], m), side="left").clip(0, thr.size - 1))
            idx[0], idx[-1] = 0, thr.size - 1
            return idx

        # the most positions whose distinct points still fit in max_points (long jumps in the tails take
        # several positions each), found by bisection
        lo, hi = int(max_points), 64 * int(max_points)
        best = pick(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            idx = pick(mid)
            if idx.size <= max_points:
                lo, best = mid, idx
            else:
                hi = mid
        thr, far, frr = thr[best], far[best], frr[best]
    return {"thresholds": thr.tolist(), "far": far.tolist(), "frr": frr.tolist()}


def score_histogram(scores: np.ndarray, labels: np.ndarray, bins: int = 50) -> dict[str, list]:
    """Histograms of target and non-target scores on shared bins, for plotting.

    Returns ``{"bins": edges (bins + 1,), "target": counts (bins,), "nontarget": counts (bins,)}``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_target = np.asarray(labels).astype(bool)
    edges = np.histogram_bin_edges(scores, bins=bins)
    return {"bins": edges.tolist(), "target": np.histogram(scores[is_target], edges)[0].tolist(),
            "nontarget": np.histogram(scores[~is_target], edges)[0].tolist()}
