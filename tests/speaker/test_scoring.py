"""Cosine and AS-Norm scoring against brute force; bootstrap, calibration and histogram of scores."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from speech_tl.metrics import eer
from speech_tl.speaker import scoring
from speech_tl.speaker.scoring import (
    asnorm_scores,
    bootstrap_eer_ci,
    calibration_curve,
    cohort_stats,
    cosine_scores,
    finite_threshold,
    score_histogram,
)


def _cos(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_cosine_scores_gram_and_blocked_paths(monkeypatch):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((30, 8)) * rng.uniform(0.5, 3, (30, 1))  # not normalised
    enroll, test = rng.integers(0, 30, 200), rng.integers(0, 30, 200)
    want = np.array([_cos(emb[e], emb[t]) for e, t in zip(enroll, test, strict=True)])
    np.testing.assert_allclose(cosine_scores(emb, enroll, test), want, atol=1e-6)
    monkeypatch.setattr(scoring, "_BLOCK_ENTRIES", 30 * 7)  # Gram matrix in 5 blocks of 7 rows
    np.testing.assert_allclose(cosine_scores(torch.tensor(emb), enroll, test), want, atol=1e-6)
    monkeypatch.setattr(scoring, "_GRAM_MAX_ENTRIES", 10)  # few trials for N: gather rows, several blocks
    monkeypatch.setattr(scoring, "_BLOCK_TRIALS", 7)
    np.testing.assert_allclose(cosine_scores(emb, enroll[:10], test[:10]), want[:10], atol=1e-6)
    with pytest.raises(ValueError, match="indices"):
        cosine_scores(emb, [0], [30])


def test_asnorm_equals_brute_force_per_trial():
    emb = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8], [2.0, 0.0, 2.0]])
    cohort = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [-1.0, 0.2, 0.0], [0.3, -1.0, 0.5],
                       [0.5, 0.5, -0.5]])
    trials = [(0, 1), (0, 2), (1, 3), (2, 4), (3, 4), (4, 0)]
    top_k = 3

    def stats(x):  # top-k cohort cosines of x: mean and sample standard deviation
        top = sorted((_cos(x, c) for c in cohort), reverse=True)[:top_k]
        return statistics.mean(top), statistics.stdev(top)

    want = []
    for e, t in trials:
        s = _cos(emb[e], emb[t])
        (me, se), (mt, st) = stats(emb[e]), stats(emb[t])
        want.append(0.5 * ((s - me) / se + (s - mt) / st))
    enroll, test = np.array(trials).T
    np.testing.assert_allclose(asnorm_scores(emb, cohort, enroll, test, top_k=top_k), want, rtol=1e-5)
    # top_k beyond the cohort size uses the whole cohort; fewer than 2 is refused
    mean, std = cohort_stats(emb, cohort, top_k=100)
    np.testing.assert_allclose(mean, [statistics.mean(_cos(x, c) for c in cohort) for x in emb], atol=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        cohort_stats(emb, cohort, top_k=1)


def test_asnorm_helps_when_one_speaker_scores_high_against_everyone():
    """A 'hub' speaker close to everything is pulled down by its high cohort mean."""
    rng = np.random.default_rng(3)
    hub = rng.standard_normal(16)
    centers = rng.standard_normal((8, 16)) + 2.0 * np.r_[np.ones(4), np.zeros(4)][:, None] * hub
    emb = np.repeat(centers, 4, axis=0) + 0.6 * rng.standard_normal((32, 16))
    cohort = rng.standard_normal((50, 16)) + np.r_[2.0 * np.ones(25), np.zeros(25)][:, None] * hub
    speakers = np.repeat(np.arange(8), 4)
    enroll, test = np.triu_indices(32, 1)
    labels = (speakers[enroll] == speakers[test]).astype(int)
    raw = eer(cosine_scores(emb, enroll, test), labels)[0]
    normed = eer(asnorm_scores(emb, cohort, enroll, test, top_k=10), labels)[0]
    assert normed < raw


def test_bootstrap_resamples_equal_metrics_eer():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.standard_normal(400) + labels, 1)  # many ties
    uniq, group = np.unique(scores, return_inverse=True)
    for _ in range(20):
        idx = rng.integers(0, 400, 400)
        tc = np.bincount(group[idx][labels[idx] == 1], minlength=uniq.size).astype(float)
        nc = np.bincount(group[idx][labels[idx] == 0], minlength=uniq.size).astype(float)
        assert scoring._eer_from_counts(tc, nc) == pytest.approx(eer(scores[idx], labels[idx])[0], abs=1e-12)
    low, high = bootstrap_eer_ci(scores, labels, n=300, seed=0)
    assert low <= eer(scores, labels)[0] <= high and high - low < 0.2
    assert (low, high) == bootstrap_eer_ci(scores, labels, n=300, seed=0)


def test_calibration_curve_rates_hold_at_its_thresholds():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(500, int), np.zeros(5000, int)]
    scores = np.r_[rng.normal(0.7, 0.1, 500), rng.normal(0.3, 0.1, 5000)]
    cal = calibration_curve(scores, labels, max_points=1000)
    thr, far, frr = (np.array(cal[k]) for k in ("thresholds", "far", "frr"))
    assert 900 <= thr.size <= 1000 and np.all(np.diff(thr) > 0) and np.all(np.isfinite(thr))
    np.testing.assert_allclose(far, [(scores[labels == 0] > t).mean() for t in thr])
    np.testing.assert_allclose(frr, [(scores[labels == 1] <= t).mean() for t in thr])
    assert far.min() == 0 and frr.min() == 0  # both tails kept
    small = calibration_curve([0.9, 0.8, 0.4, 0.7], [1, 1, 0, 0])
    assert small == {"thresholds": [0.55, 0.75, 0.8500000000000001], "far": [0.5, 0.0, 0.0],
                     "frr": [0.0, 0.0, 0.5]}


def test_histogram_and_finite_thresholds():
    h = score_histogram([0.1, 0.2, 0.9, 0.8, 0.85], [0, 0, 1, 1, 0], bins=4)
    assert len(h["bins"]) == 5 and sum(h["target"]) == 2 and sum(h["nontarget"]) == 3
    assert finite_threshold(np.inf, np.array([0.1, 0.5])) == 0.5
    low = finite_threshold(-np.inf, np.array([0.1, 0.5]))
    assert low < 0.1 and np.nextafter(low, 1) == 0.1
