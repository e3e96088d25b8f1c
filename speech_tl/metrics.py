"""Evaluation metrics: error rates for ASR, EER/minDCF/DET for speaker verification, accuracy for identification.

Pure functions, NumPy arrays in and out; nothing here touches files, models or torch.

Conventions
-----------
* Rates are fractions: ``0.12`` means 12 %.
* ASR: word and character error rates are corpus-level, ``sum(S + D + I) / sum(N)`` over all utterances
  (computed by ``jiwer``), not the mean of per-utterance rates. Text is compared as given (code points):
  normalise it first (case, punctuation, ``unicodedata.normalize("NFC", ...)`` so that a decomposed
  ``"o\\u0308"`` and a composed ``"ö"`` are the same letter).
* Verification: ``labels`` are 1 for target trials (same speaker) and 0 for non-target trials. A trial is
  accepted when ``score > threshold``. FRR (miss rate) is the fraction of target trials rejected, FAR
  (false-alarm rate) the fraction of non-target trials accepted. Thresholds lie only *between* distinct
  scores (midpoints), or at ``-inf`` (accept all) and ``+inf`` (reject all), so tied scores always land on
  the same side and each threshold is one of the ``n_distinct + 1`` possible decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

__all__ = [
    "EditCounts",
    "ErrorCounts",
    "bootstrap_ci",
    "cer",
    "det_curve",
    "eer",
    "error_counts",
    "identification_accuracy",
    "min_dcf",
    "top_k_accuracy",
    "wer",
]


# --------------------------------------------------------------------------------------------------------------
# ASR: word and character error rates
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EditCounts:
    """Per-utterance edit counts at one level (words or characters); every field is an int64 array ``(N,)``.

    ``ref_length`` is ``substitutions + deletions + hits``, the number of reference tokens.
    """

    substitutions: np.ndarray
    deletions: np.ndarray
    insertions: np.ndarray
    hits: np.ndarray
    ref_length: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        """``substitutions + deletions + insertions`` per utterance, ``(N,)``."""
        return self.substitutions + self.deletions + self.insertions

    def rate(self) -> float:
        """Corpus error rate ``sum(errors) / sum(ref_length)`` (a fraction)."""
        return float(self.errors.sum() / self.ref_length.sum())


@dataclass(frozen=True)
class ErrorCounts:
    """Per-utterance edit counts for words (``.words``) and characters (``.chars``), see :func:`error_counts`."""

    words: EditCounts
    chars: EditCounts

    def rates(self, idx: Sequence[int]) -> dict[str, float]:
        """``{"wer", "cer"}`` of the utterances ``idx``, pooled over their words and characters as the corpus
        rates are."""
        ix = np.asarray(idx, dtype=np.int64)
        w, c = self.words, self.chars
        return {"wer": float(w.errors[ix].sum() / max(1, w.ref_length[ix].sum())),
                "cer": float(c.errors[ix].sum() / max(1, c.ref_length[ix].sum()))}


def _pairs(refs: str | Sequence[str], hyps: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """Check and pair up references and hypotheses; a single string is one utterance."""
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses: they must pair up one to one")
    if not refs:
        raise ValueError("no utterances: refs and hyps are empty")
    for what, texts in (("reference", refs), ("hypothesis", hyps)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{what} {i} is a {type(text).__name__}, not a str")
    return refs, hyps


def _check_not_all_empty(n_ref_tokens: int, unit: str) -> None:
    if n_ref_tokens == 0:
        raise ValueError(f"all references are empty (0 reference {unit}): the error rate is undefined")


def wer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Corpus word error rate ``sum(S + D + I) / sum(N)`` as a fraction, through ``jiwer.process_words``.

    ``refs`` and ``hyps`` are ``(N,)`` sequences of strings (or one string each). Words are split on
    whitespace. Single empty references are allowed (their words all count as insertions); all-empty
    references, or lists of different lengths, raise ``ValueError``.

    >>> wer(["der Bär ist groß"], ["der Bär ist gross"])
    0.25
    >>> wer(["über den Fluss", "grüß Gott"], ["über dem Fluss", "grüß Gott Gott"])  # (1 S + 1 I) / 5 words
    0.4
    """
    refs, hyps = _pairs(refs, hyps)
    out = jiwer.process_words(refs, hyps)
    _check_not_all_empty(out.hits + out.substitutions + out.deletions, "words")
    return float(out.wer)


def cer(refs: str | Sequence[str], hyps: str | Sequence[str]) -> float:
    """Corpus character error rate as a fraction, through ``jiwer.process_characters``.

    Same inputs and errors as :func:`wer`. Spaces inside a sentence count as characters; leading and trailing
    whitespace does not (jiwer's default).

    >>> cer(["der Bär ist groß"], ["der Bär ist gross"])  # ß -> s and one inserted s, 16 characters
    0.125
    >>> cer("schön", "schon")
    0.2
    """
    refs, hyps = _pairs(refs, hyps)
    out = jiwer.process_characters(refs, hyps)
    _check_not_all_empty(out.hits + out.substitutions + out.deletions, "characters")
    return float(out.cer)


_CHUNK_ROW = {"equal": 0, "substitute": 1, "delete": 2}


def _edit_counts(out, n: int) -> EditCounts:
    """Per-utterance counts from jiwer's alignments (the same chunks jiwer sums for its corpus totals)."""
    counts = np.zeros((4, n), dtype=np.int64)  # hits, substitutions, deletions, insertions
    for u, chunks in enumerate(out.alignments):
        for chunk in chunks:
            if chunk.type == "insert":
                counts[3, u] += chunk.hyp_end_idx - chunk.hyp_start_idx
            else:
                counts[_CHUNK_ROW[chunk.type], u] += chunk.ref_end_idx - chunk.ref_start_idx
    hits, subs, dels, ins = counts
    if (hits.sum(), subs.sum(), dels.sum(), ins.sum()) != (out.hits, out.substitutions, out.deletions,
                                                          out.insertions):
        raise RuntimeError("per-utterance counts do not add up to jiwer's totals (unsupported jiwer version?)")
    return EditCounts(substitutions=subs, deletions=dels, insertions=ins, hits=hits, ref_length=subs + dels + hits)


def error_counts(refs: str | Sequence[str], hyps: str | Sequence[str]) -> ErrorCounts:
    """Per-utterance substitutions, deletions, insertions, hits and reference length, for words and characters.

    ``refs`` and ``hyps`` are ``(N,)`` sequences of strings (or one string each); every array in the result
    is int64 ``(N,)``. The corpus rates are recovered as ``c.words.errors.sum() / c.words.ref_length.sum()``
    (equal to :func:`wer`) and likewise for ``c.chars`` (equal to :func:`cer`), and the per-utterance
    ``errors`` and ``ref_length`` are what :func:`bootstrap_ci` resamples. Raises ``ValueError`` like :func:`wer`.

    >>> c = error_counts(["der Bär ist groß", "guten Tag"], ["der Bar ist", "guten Tag"])
    >>> c.words.substitutions, c.words.deletions, c.words.insertions, c.words.hits, c.words.ref_length
    (array([1, 0]), array([1, 0]), array([0, 0]), array([2, 2]), array([4, 2]))
    >>> c.words.rate(), c.chars.errors, c.chars.ref_length
    (0.3333333333333333, array([6, 0]), array([16,  9]))
    """
    refs, hyps = _pairs(refs, hyps)
    words = _edit_counts(jiwer.process_words(refs, hyps), len(refs))
    _check_not_all_empty(int(words.ref_length.sum()), "words")
    chars = _edit_counts(jiwer.process_characters(refs, hyps), len(refs))
    _check_not_all_empty(int(chars.ref_length.sum()), "characters")
    return ErrorCounts(words=words, chars=chars)


def bootstrap_ci(errors: np.ndarray, lengths: np.ndarray, n: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the ratio ``sum(errors) / sum(lengths)`` over utterances.

    ``errors`` and ``lengths`` are ``(N,)`` per-utterance counts (e.g. ``c.words.errors`` and
    ``c.words.ref_length`` from :func:`error_counts`). Utterances are resampled with replacement: all ``n``
    resamples at once as one ``(n, N)`` index array (memory about ``3 * 8 * n * N`` bytes). Returns
    ``(low, high)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the ``n`` resampled
    ratios; the same ``seed`` gives the same interval.

    >>> c = error_counts(["ein zwei drei", "vier fünf", "sechs", "sieben acht neun zehn"],
    ...                  ["ein zwei frei", "vier", "sechs", "sieben acht neun zehn"])
    >>> point = c.words.rate()
    >>> low, high = bootstrap_ci(c.words.errors, c.words.ref_length, n=200, seed=1)
    >>> point, bool(low <= point <= high)
    (0.2, True)
    """
    errors = np.asarray(errors, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    if errors.ndim != 1 or errors.shape != lengths.shape:
        raise ValueError(f"errors {errors.shape} and lengths {lengths.shape} must be 1-D arrays of the same length")
    if errors.size == 0:
        raise ValueError("no utterances: errors and lengths are empty")
    if not (np.all(np.isfinite(errors)) and np.all(np.isfinite(lengths))):
        raise ValueError("errors and lengths must be finite")
    if np.any(lengths < 0):
        raise ValueError("lengths must not be negative")
    if lengths.sum() <= 0:
        raise ValueError("all references are empty (total length 0): the ratio is undefined")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, errors.size, size=(int(n), errors.size))  # (n, N): one row per resample
    num = errors[idx].sum(axis=1)
    den = lengths[idx].sum(axis=1)
    ratios = num[den > 0] / den[den > 0]  # a resample of only empty references has no ratio
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------------------------
# Speaker verification: EER, minDCF, DET curve
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _OperatingPoints:
    """All ``K = n_distinct + 1`` decisions, ordered by increasing threshold (arrays ``(K,)``)."""

    thresholds: np.ndarray  # float64: -inf, midpoints between consecutive distinct scores, +inf
    misses: np.ndarray  # int64: target trials rejected (score <= threshold), increasing
    false_alarms: np.ndarray  # int64: non-target trials accepted (score > threshold), decreasing
    group_scores: np.ndarray  # (K - 1,) the distinct scores; group k moves between decisions k and k + 1
    n_target: int
    n_nontarget: int


def _operating_points(scores: np.ndarray, labels: np.ndarray) -> _OperatingPoints:
    """Validate trials and compute miss / false-alarm counts at every threshold with one sort."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be 1-D arrays of the same length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (found NaN or inf)")
    if labels.dtype != bool and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 1 (target) or 0 (non-target)")
    is_target = labels.astype(bool)
    n_target = int(is_target.sum())
    n_nontarget = int(is_target.size - n_target)
    if n_target == 0:
        raise ValueError(f"no target trials (label 1) among {is_target.size} trials: FRR is undefined")
    if n_nontarget == 0:
        raise ValueError(f"no non-target trials (label 0) among {is_target.size} trials: FAR is undefined")

    order = np.argsort(scores, kind="stable")
    s = scores[order]
    cum_target = np.concatenate(([0], np.cumsum(is_target[order], dtype=np.int64)))
    boundary = np.flatnonzero(s[1:] != s[:-1]) + 1  # reject the first `boundary` trials: a cut between scores
    cuts = np.concatenate(([0], boundary, [s.size]))
    misses = cum_target[cuts]
    false_alarms = n_nontarget - (cuts - misses)
    lo, hi = s[boundary - 1], s[boundary]
    mid = lo / 2 + hi / 2  # no overflow; for adjacent floats it may round up to hi, so fall back to lo
    mid = np.where(mid < hi, mid, lo)
    thresholds = np.concatenate(([-np.inf], mid, [np.inf]))
    return _OperatingPoints(thresholds, misses, false_alarms, s[cuts[:-1]], n_target, n_nontarget)


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate of verification trials and its threshold: ``(eer, threshold)``.

    ``scores`` ``(N,)`` float (higher = more likely the same speaker), ``labels`` ``(N,)`` with 1 = target,
    0 = non-target. FRR and FAR are computed at every threshold between distinct scores (one sort,
    cumulative sums); the EER is where the straight line between the two decisions on either side of the
    crossing meets FRR = FAR (the same value as interpolating sklearn's ROC curve). The threshold is
    interpolated the same way between those two decisions' thresholds; where one of them is infinite (the
    crossing lies in the lowest or highest tied group) it is that group's score. Accept when
    ``score > threshold``. Raises ``ValueError`` without targets or without non-targets.

    >>> eer([0.9, 0.8, 0.7, 0.4, 0.3, 0.2], [1, 1, 1, 0, 0, 0])  # separable: 0, halfway between 0.4 and 0.7
    (0.0, 0.55)
    >>> eer([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0])  # one target below one non-target
    (0.3333333333333333, 0.55)
    >>> eer([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0])  # all tied: no threshold separates anything
    (0.5, 0.5)
    """
    op = _operating_points(scores, labels)
    nt, nn = op.n_target, op.n_nontarget
    # (FRR - FAR) * nt * nn in exact integers: strictly increasing from -nt*nn (accept all) to +nt*nn (reject all)
    d = op.misses * nn - op.false_alarms * nt
    j = int(np.searchsorted(d, 0, side="left"))  # first decision with FRR >= FAR; j >= 1 since d[0] < 0
    frr_j = op.misses[j] / nt
    if d[j] == 0:
        return float(frr_j), float(op.thresholds[j])
    a = j - 1
    w = -d[a] / (d[j] - d[a])  # in (0, 1): where the segment from decision a to decision j crosses FRR = FAR
    frr = op.misses[a] / nt + w * (op.misses[j] - op.misses[a]) / nt
    far = op.false_alarms[a] / nn + w * (op.false_alarms[j] - op.false_alarms[a]) / nn
    t_a, t_j = op.thresholds[a], op.thresholds[j]
    threshold = t_a + w * (t_j - t_a) if np.isfinite(t_a) and np.isfinite(t_j) else op.group_scores[a]
    return float((frr + far) / 2), float(threshold)


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost over all thresholds and the threshold reaching it: ``(min_dcf, threshold)``.

    ``DCF(t) = c_miss * p_target * FRR(t) + c_fa * (1 - p_target) * FAR(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better of accepting or rejecting
    everything (NIST SRE). So 0 is perfect and the result is never above 1. ``speechbrain.utils.metric_stats.minDCF``
    returns the same minimum *without* this normalisation. Inputs as in :func:`eer`; accept when
    ``score > threshold`` (``+inf``: reject all, ``-inf``: accept all). The lowest such threshold is
    returned when several reach the minimum.

    >>> min_dcf([0.9, 0.8, 0.7, 0.4, 0.3, 0.2], [1, 1, 1, 0, 0, 0])
    (0.0, 0.55)
    >>> min_dcf([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0])  # no false alarm: miss the 0.4 target
    (0.3333333333333333, 0.75)
    >>> min_dcf([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0], p_target=0.5)  # 1 FA costs as much as 1 miss
    (0.3333333333333333, 0.35)
    >>> min_dcf([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])  # worse than useless: rejecting all is cheapest
    (1.0, inf)
    """
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must lie strictly between 0 and 1, got {p_target!r}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"costs must be positive, got c_miss={c_miss!r}, c_fa={c_fa!r}")
    op = _operating_points(scores, labels)
    w_miss = c_miss * p_target
    w_fa = c_fa * (1.0 - p_target)
    dcf = (w_miss * (op.misses / op.n_target) + w_fa * (op.false_alarms / op.n_nontarget)) / min(w_miss, w_fa)
    i = int(np.argmin(dcf))
    return float(dcf[i]), float(op.thresholds[i])


def det_curve(scores: np.ndarray, labels: np.ndarray, max_points: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Detection error trade-off curve for plotting: ``(far, frr)``, two float64 arrays ``(K,)``, ``K <= max_points``.

    Points are ordered by increasing threshold, from ``(far, frr) = (1, 0)`` (accept all) to ``(0, 1)``
    (reject all). Inputs as in :func:`eer`. With more decisions than ``max_points`` the curve keeps both
    ends and points spread evenly along its length on logit axes (close to the probit axes of a DET plot),
    so the low-FAR and low-FRR tails keep their detail.

    >>> far, frr = det_curve([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0])
    >>> far.round(3).tolist()
    [1.0, 0.667, 0.333, 0.333, 0.0, 0.0, 0.0]
    >>> frr.round(3).tolist()
    [0.0, 0.0, 0.0, 0.333, 0.333, 0.667, 1.0]
    """
    if int(max_points) != max_points or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    op = _operating_points(scores, labels)
    far = op.false_alarms / op.n_nontarget
    frr = op.misses / op.n_target
    if far.size <= max_points:
        return far, frr
    eps = 0.5 / max(op.n_target, op.n_nontarget)  # below any non-zero rate, keeps logit(0) and logit(1) finite

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, eps, 1.0 - eps)
        return np.log(p / (1.0 - p))

    x, y = logit(far), logit(frr)
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    idx = np.searchsorted(arc, np.linspace(0.0, arc[-1], int(max_points)), side="left")
    idx[0], idx[-1] = 0, far.size - 1
    idx = np.unique(np.minimum(idx, far.size - 1))
    return far[idx], frr[idx]


# --------------------------------------------------------------------------------------------------------------
# Speaker identification
# --------------------------------------------------------------------------------------------------------------

def top_k_accuracy(score_matrix: np.ndarray, true_index: np.ndarray, k: int = 5) -> float:
    """Fraction of rows whose true class is among the ``k`` highest-scoring classes.

    ``score_matrix`` ``(N, S)``: scores of N test utterances against S enrolled speakers (higher = better);
    ``true_index`` ``(N,)`` ints in ``[0, S)``. Ties are broken as ``np.argmax`` does, in favour of the lower
    class index, so ``k=1`` is exactly ``mean(argmax(score_matrix, 1) == true_index)``.

    >>> scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    >>> top_k_accuracy(scores, [0, 2, 1], k=1), top_k_accuracy(scores, [0, 2, 1], k=2)
    (0.3333333333333333, 1.0)
    """
    s = np.asarray(score_matrix, dtype=np.float64)
    t = np.asarray(true_index)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"score_matrix must be a non-empty 2-D array (N, S), got shape {s.shape}")
    if t.shape != (s.shape[0],):
        raise ValueError(f"true_index must have shape ({s.shape[0]},), got {t.shape}")
    if t.dtype.kind not in "iu":
        raise ValueError(f"true_index must hold integers, got dtype {t.dtype}")
    if np.any(t < 0) or np.any(t >= s.shape[1]):
        raise ValueError(f"true_index must lie in [0, {s.shape[1]})")
    if np.isnan(s).any():
        raise ValueError("score_matrix contains NaN")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    cols = np.arange(s.shape[1])
    rank = np.empty(s.shape[0], dtype=np.int64)
    step = max(1, (1 << 22) // s.shape[1])  # rows per block: bounded memory for large (N, S)
    for start in range(0, s.shape[0], step):
        block, tb = s[start:start + step], t[start:start + step]
        true = block[np.arange(block.shape[0]), tb][:, None]
        rank[start:start + step] = (block > true).sum(1) + ((block == true) & (cols < tb[:, None])).sum(1)
    return float(np.mean(rank < k))


def identification_accuracy(score_matrix: np.ndarray, true_index: np.ndarray) -> float:
    """Top-1 accuracy: fraction of rows ``(N, S)`` whose highest score is at ``true_index`` ``(N,)``.

    >>> identification_accuracy([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], [0, 1, 1])
    0.6666666666666666
    """
    return top_k_accuracy(score_matrix, true_index, k=1)
