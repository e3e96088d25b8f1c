"""Metrics: WER/CER against hand-computed values and jiwer, bootstrap intervals, EER/minDCF against a brute-force
loop, sklearn and speechbrain, DET curves and identification accuracy."""

from __future__ import annotations

import doctest

import jiwer
import numpy as np
import pytest

import speech_tl.metrics as metrics
from speech_tl.metrics import (
    bootstrap_ci,
    cer,
    det_curve,
    eer,
    error_counts,
    identification_accuracy,
    min_dcf,
    top_k_accuracy,
    wer,
)

# --------------------------------------------------------------------------------------------------------------
# helpers: independent reference implementations
# --------------------------------------------------------------------------------------------------------------


def brute_force_points(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, FRR, FAR) for every distinct decision, accept when score > threshold, one loop per threshold."""
    tgt, non = scores[labels == 1], scores[labels == 0]
    points = []
    for t in [-np.inf, *sorted(set(scores.tolist()))]:
        points.append((t, float(np.mean(tgt <= t)), float(np.mean(non > t))))
    return points


def brute_force_eer(scores, labels):
    """EER where the segment between consecutive decisions crosses FRR = FAR, and the two decisions' (FRR, FAR)."""
    points = brute_force_points(scores, labels)
    for (_, frr0, far0), (_, frr1, far1) in zip(points, points[1:], strict=False):
        d0, d1 = frr0 - far0, frr1 - far1
        if d0 < 0 <= d1:
            w = -d0 / (d1 - d0)
            return frr0 + w * (frr1 - frr0), {(frr0, far0), (frr1, far1)}
    raise AssertionError("FRR - FAR never changes sign")


def dcf_at(scores, labels, threshold, p_target=0.01, c_miss=1.0, c_fa=1.0) -> float:
    """Normalised DCF of the decision `score > threshold`, by direct comparison."""
    frr = np.mean(scores[labels == 1] <= threshold)
    far = np.mean(scores[labels == 0] > threshold)
    return (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / min(c_miss * p_target, c_fa * (1 - p_target))


def brute_force_min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0) -> float:
    return min(dcf_at(scores, labels, t, p_target, c_miss, c_fa) for t, _, _ in brute_force_points(scores, labels))


def rates_at(scores, labels, threshold) -> tuple[float, float]:
    return float(np.mean(scores[labels == 1] <= threshold)), float(np.mean(scores[labels == 0] > threshold))


def sklearn_eer(scores, labels) -> float:
    """The usual recipe: interpolate sklearn's ROC curve and solve 1 - TPR = FPR."""
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-14)


def tied_trials(seed: int, n: int = 300, decimals: int = 1, shift: float = 1.0, p: float = 0.3):
    """Random trials with many tied scores (rounded), both classes present."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < p).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(shift * labels, 1.0), decimals)
    return scores, labels


@pytest.fixture(scope="module")
def million_trials():
    """10^6 trials, 10 % targets, scores rounded to 3 decimals (so with ties)."""
    rng = np.random.default_rng(123)
    labels = (rng.random(10**6) < 0.1).astype(np.int8)
    scores = np.round(rng.normal(0.0, 1.0, labels.size) + 2.5 * labels, 3)
    return scores, labels


# --------------------------------------------------------------------------------------------------------------
# WER / CER / error counts
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("refs", "hyps", "expected_wer", "expected_cer"), [
    (["der Bär ist groß"], ["der Bär ist groß"], 0.0, 0.0),
    (["der Bär ist groß"], ["der Bär ist gross"], 1 / 4, 2 / 16),  # ß -> s, + s
    (["die Bücher sind schön"], ["die Bucher sind schön"], 1 / 4, 1 / 21),  # ü -> u
    (["schön"], ["schoen"], 1.0, 2 / 5),  # ö -> o, + e
    (["über den Fluss", "grüß Gott"], ["über dem Fluss", "grüß Gott Gott"], 2 / 5, 6 / 23),  # 1 S + 1 I words
    (["Straße"], [""], 1.0, 1.0),  # everything deleted
    (["ja"], ["ja nein doch"], 2.0, 10 / 2),  # insertions can push the rate above 1
])
def test_wer_cer_hand_computed(refs, hyps, expected_wer, expected_cer):
    assert wer(refs, hyps) == pytest.approx(expected_wer)
    assert cer(refs, hyps) == pytest.approx(expected_cer)


def test_corpus_rate_weights_utterances_by_length():
    refs, hyps = ["eins zwei drei vier", "fünf"], ["eins zwei drei vier", "sechs"]
    assert wer(refs, hyps) == pytest.approx(1 / 5)  # not the mean of the per-utterance rates, 0.5
    assert wer("fünf", "sechs") == 1.0  # a single string is one utterance


def test_cer_counts_inner_spaces_but_not_outer_whitespace():
    assert cer(["ab c"], ["abc"]) == pytest.approx(1 / 4)
    assert cer(["  abc  "], ["abc"]) == 0.0
    assert wer(["a  b"], [" a b "]) == 0.0


def test_an_empty_reference_among_others_counts_insertions():
    assert wer(["", "eins zwei"], ["drei", "eins zwei"]) == pytest.approx(1 / 2)


@pytest.mark.parametrize("fn", [wer, cer, error_counts])
@pytest.mark.parametrize(("refs", "hyps", "message"), [
    (["a", "b"], ["a"], "2 references but 1 hypotheses"),
    (["", "  "], ["x", "y"], "all references are empty"),
    ([], [], "no utterances"),
])
def test_asr_inputs_rejected(fn, refs, hyps, message):
    with pytest.raises(ValueError, match=message):
        fn(refs, hyps)


def test_non_string_text_rejected():
    with pytest.raises(TypeError, match="reference 1 is a NoneType"):
        wer(["a", None], ["a", "b"])


def test_error_counts_hand_computed():
    c = error_counts(["der Bär ist groß", "guten Tag"], ["der Bar ist", "guten Tag"])
    w = c.words
    assert w.substitutions.tolist() == [1, 0] and w.deletions.tolist() == [1, 0]
    assert w.insertions.tolist() == [0, 0] and w.hits.tolist() == [2, 2] and w.ref_length.tolist() == [4, 2]
    assert w.errors.tolist() == [2, 0]
    # characters: "der Bär ist groß" -> "der Bar ist": ä -> a and " groß" deleted
    assert c.chars.substitutions.tolist() == [1, 0] and c.chars.deletions.tolist() == [5, 0]
    assert c.chars.ref_length.tolist() == [16, 9]
    assert w.rate() == pytest.approx(2 / 6)


def synthetic_corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    """German-ish references and hypotheses with random substitutions, deletions and insertions."""
    vocab = "der die das Bär Bücher schön groß über Fluss grüß Gott Straße Mädchen hören fünf zwölf ja nein".split()
    rng = np.random.default_rng(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = list(rng.choice(vocab, size=rng.integers(0, 12)))
        hyp = []
        for word in ref:
            r = rng.random()
            if r < 0.1:
                continue  # deletion
            hyp.append(str(rng.choice(vocab)) if r < 0.2 else word)
            if rng.random() < 0.05:
                hyp.append(str(rng.choice(vocab)))  # insertion
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    refs[0], hyps[0] = "", "eingefügt"  # empty reference
    refs[1], hyps[1] = "alles weg", ""  # empty hypothesis
    return refs, hyps


def test_error_counts_reproduce_jiwer():
    refs, hyps = synthetic_corpus(300, seed=7)
    c = error_counts(refs, hyps)
    assert c.words.errors.sum() / c.words.ref_length.sum() == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert c.chars.errors.sum() / c.chars.ref_length.sum() == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert c.words.rate() == pytest.approx(wer(refs, hyps), abs=1e-12)
    assert c.chars.rate() == pytest.approx(cer(refs, hyps), abs=1e-12)
    for i in range(0, 300, 13):  # per utterance too, scored on its own
        for counts, process in ((c.words, jiwer.process_words), (c.chars, jiwer.process_characters)):
            out = process(refs[i], hyps[i])
            assert (counts.substitutions[i], counts.deletions[i], counts.insertions[i], counts.hits[i]) == (
                out.substitutions, out.deletions, out.insertions, out.hits)
    assert c.words.ref_length[0] == 0 and c.words.insertions[0] == 1
    assert c.words.deletions[1] == 2 and c.words.hits[1] == 0


# --------------------------------------------------------------------------------------------------------------
# bootstrap confidence intervals
# --------------------------------------------------------------------------------------------------------------


def binomial_corpus(n_utts: int, seed: int, rate: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=n_utts)
    return rng.binomial(lengths, rate), lengths


def test_bootstrap_contains_point_estimate():
    refs, hyps = synthetic_corpus(300, seed=3)
    c = error_counts(refs, hyps)
    for counts in (c.words, c.chars):
        low, high = bootstrap_ci(counts.errors, counts.ref_length)
        assert low < counts.rate() < high
        assert high - low < 0.1
    errors, lengths = binomial_corpus(500, seed=0)
    low, high = bootstrap_ci(errors, lengths)
    assert low < errors.sum() / lengths.sum() < high


def test_bootstrap_narrows_with_more_data():
    widths = []
    for n_utts in (100, 1000, 10000):
        low, high = bootstrap_ci(*binomial_corpus(n_utts, seed=1))
        assert low < 0.1 < high  # true rate covered
        widths.append(high - low)
    # width shrinks like 1/sqrt(N): 10x the data, about 1/3.2 the width
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def test_bootstrap_reproducible_and_level():
    errors, lengths = binomial_corpus(200, seed=2)
    assert bootstrap_ci(errors, lengths, seed=5) == bootstrap_ci(errors, lengths, seed=5)
    low80, high80 = bootstrap_ci(errors, lengths, level=0.8)
    low99, high99 = bootstrap_ci(errors, lengths, level=0.99)
    assert low99 < low80 < high80 < high99


def test_bootstrap_edge_cases():
    assert bootstrap_ci([0, 0, 0], [3, 4, 5]) == (0.0, 0.0)
    # most resamples miss the only non-empty reference: those have no ratio and are left out
    assert bootstrap_ci([0, 0, 0, 1], [0, 0, 0, 5], n=500) == pytest.approx((0.2, 0.2))


@pytest.mark.parametrize(("errors", "lengths", "kw", "message"), [
    ([1, 2], [3], {}, "same length"),
    ([], [], {}, "no utterances"),
    ([0, 0], [0, 0], {}, "all references are empty"),
    ([1], [-1], {}, "negative"),
    ([1], [2], {"level": 1.0}, "level"),
    ([1], [2], {"n": 0}, "n must"),
])
def test_bootstrap_inputs_rejected(errors, lengths, kw, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(np.array(errors), np.array(lengths), **kw)


# --------------------------------------------------------------------------------------------------------------
# verification: EER, minDCF, DET
# --------------------------------------------------------------------------------------------------------------


def test_perfectly_separable_trials():
    rng = np.random.default_rng(0)
    non, tgt = rng.uniform(-1, 0.2, 500), rng.uniform(0.4, 1, 50)
    scores, labels = np.concatenate([non, tgt]), np.r_[np.zeros(500), np.ones(50)]
    value, threshold = eer(scores, labels)
    assert value == 0.0 and non.max() < threshold < tgt.min()
    for p in (0.01, 0.5, 0.9):
        value, threshold = min_dcf(scores, labels, p_target=p)
        assert value == 0.0 and non.max() < threshold < tgt.min()
    assert eer(-scores, labels)[0] == 1.0  # reversed scores: every decision makes every error


def test_identical_distributions_give_chance_level():
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=100_000), rng.integers(0, 2, size=100_000)
    assert eer(scores, labels)[0] == pytest.approx(0.5, abs=0.01)
    assert 0.95 < min_dcf(scores, labels)[0] <= 1.0


def test_all_scores_tied():
    assert eer([0.3] * 6, [1, 0, 0, 1, 0, 0]) == (0.5, 0.3)
    value, threshold = min_dcf([0.3] * 6, [1, 0, 0, 1, 0, 0])  # only accept-all or reject-all
    assert value == 1.0 and threshold == np.inf
    assert min_dcf([0.3] * 4, [1, 1, 1, 0], p_target=0.9)[1] == -np.inf  # accepting all is cheaper


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("n", "decimals"), [(12, 0), (300, 1), (400, 2)])
def test_eer_matches_brute_force_with_ties(seed, n, decimals):
    scores, labels = tied_trials(seed, n=n, decimals=decimals)
    assert len(set(scores.tolist())) < n  # there are ties
    expected, neighbours = brute_force_eer(scores, labels)
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(expected, abs=1e-12)
    # the threshold makes one of the two decisions on either side of the crossing
    assert rates_at(scores, labels, threshold) in neighbours
    assert value == pytest.approx(sklearn_eer(scores, labels), abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("p_target", "c_miss", "c_fa"), [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.9, 1, 1),
                                                          (0.01, 10, 1), (0.2, 1, 5)])
def test_min_dcf_matches_brute_force_with_ties(seed, p_target, c_miss, c_fa):
    scores, labels = tied_trials(seed, n=300, decimals=1, shift=2.0)
    value, threshold = min_dcf(scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    assert value == pytest.approx(brute_force_min_dcf(scores, labels, p_target, c_miss, c_fa), abs=1e-12)
    assert dcf_at(scores, labels, threshold, p_target, c_miss, c_fa) == pytest.approx(value, abs=1e-12)
    assert 0.0 <= value <= 1.0


def test_order_of_tied_trials_does_not_matter():
    scores, labels = tied_trials(0, n=500, decimals=1)
    perm = np.random.default_rng(9).permutation(scores.size)
    assert eer(scores[perm], labels[perm]) == eer(scores, labels)
    assert min_dcf(scores[perm], labels[perm]) == min_dcf(scores, labels)
    np.testing.assert_array_equal(det_curve(scores[perm], labels[perm])[0], det_curve(scores, labels)[0])


def test_invariant_under_increasing_transform():
    scores, labels = tied_trials(4, n=1000, decimals=2)
    value, threshold = eer(scores, labels)
    value_exp, threshold_exp = eer(np.exp(scores), labels)
    assert value_exp == pytest.approx(value, abs=1e-12)
    assert rates_at(np.exp(scores), labels, threshold_exp) in brute_force_eer(scores, labels)[1]
    assert min_dcf(np.exp(scores), labels)[0] == pytest.approx(min_dcf(scores, labels)[0], abs=1e-12)


def test_accepts_bool_labels_and_float32_scores():
    scores, labels = tied_trials(2, n=200, decimals=2)
    assert eer(scores.astype(np.float32), labels.astype(bool))[0] == pytest.approx(eer(scores, labels)[0])


def test_million_trials_complete_and_agree_with_sklearn(million_trials):
    scores, labels = million_trials
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(sklearn_eer(scores, labels), abs=1e-3)
    assert 0.05 < value < 0.15 and 0.5 < threshold < 2.0  # normal scores 2.5 apart: EER ~ 0.106 at ~1.25
    dcf, dcf_threshold = min_dcf(scores, labels)
    assert 0.0 < dcf < 1.0 and threshold < dcf_threshold < np.inf


def test_agrees_with_speechbrain_on_a_subsample(million_trials):
    torch = pytest.importorskip("torch")
    sb = pytest.importorskip("speechbrain.utils.metric_stats")
    scores, labels = million_trials
    idx = np.random.default_rng(0).choice(scores.size, size=2000, replace=False)
    scores, labels = scores[idx], labels[idx]
    pos, neg = torch.tensor(scores[labels == 1]), torch.tensor(scores[labels == 0])
    n_target, n_nontarget = len(pos), len(neg)

    # speechbrain's EER is (FAR + FRR) / 2 at the threshold where they are closest, without interpolation:
    # it differs from the interpolated EER by at most one step of FRR or FAR
    sb_eer, _ = sb.EER(pos, neg)
    assert eer(scores, labels)[0] == pytest.approx(sb_eer, abs=1 / min(n_target, n_nontarget))

    # speechbrain's minDCF is not normalised; the same minimum once divided by min(c_miss * p, c_fa * (1 - p))
    for p_target, c_miss, c_fa in ((0.01, 1.0, 1.0), (0.05, 1.0, 1.0), (0.01, 10.0, 1.0)):
        sb_dcf, sb_threshold = sb.minDCF(pos, neg, c_miss=c_miss, c_fa=c_fa, p_target=p_target)
        norm = min(c_miss * p_target, c_fa * (1 - p_target))
        value, _ = min_dcf(scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
        assert value * norm == pytest.approx(sb_dcf, abs=1e-6)  # speechbrain computes rates in float32
        assert dcf_at(scores, labels, sb_threshold, p_target, c_miss, c_fa) == pytest.approx(value, abs=1e-6)


def test_det_curve_small_set_has_every_decision():
    scores, labels = tied_trials(3, n=60, decimals=1)
    far, frr = det_curve(scores, labels)
    points = brute_force_points(scores, labels)
    np.testing.assert_allclose(far, [p[2] for p in points])
    np.testing.assert_allclose(frr, [p[1] for p in points])


def test_det_curve_downsampled():
    rng = np.random.default_rng(5)
    labels = (rng.random(50_000) < 0.2).astype(int)
    scores = rng.normal(2.0 * labels, 1.0)
    full_far, full_frr = det_curve(scores, labels, max_points=10**9)
    assert full_far.size == 50_001
    far, frr = det_curve(scores, labels, max_points=200)
    assert 100 <= far.size <= 200
    assert (far[0], frr[0]) == (1.0, 0.0) and (far[-1], frr[-1]) == (0.0, 1.0)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)
    # every point is a real decision of the full curve
    pos = np.searchsorted(-full_far, -far, side="left")
    pos = pos + np.array([np.argmax(full_frr[p:] >= r) for p, r in zip(pos, frr, strict=True)])
    np.testing.assert_array_equal(full_far[pos], far)
    np.testing.assert_array_equal(full_frr[pos], frr)
    # the tails keep detail: both low-FAR and low-FRR regions (< 1 %) hold many points
    assert np.sum((far > 0) & (far < 0.01)) >= 10 and np.sum((frr > 0) & (frr < 0.01)) >= 10


@pytest.mark.parametrize("fn", [eer, min_dcf, det_curve])
@pytest.mark.parametrize(("scores", "labels", "message"), [
    ([0.1, 0.2], [0, 0], "no target trials"),
    ([0.1, 0.2], [1, 1], "no non-target trials"),
    ([0.1, 0.2], [1, 0, 1], "same length"),
    ([0.1, np.nan], [1, 0], "finite"),
    ([0.1, 0.2], [1, 2], "1 \\(target\\) or 0"),
    ([], [], "no target trials"),
])
def test_verification_inputs_rejected(fn, scores, labels, message):
    with pytest.raises(ValueError, match=message):
        fn(np.array(scores, dtype=float), np.array(labels))


@pytest.mark.parametrize(("kw", "message"), [({"p_target": 0.0}, "p_target"), ({"p_target": 1.0}, "p_target"),
                                             ({"c_miss": 0}, "costs"), ({"c_fa": -1}, "costs")])
def test_min_dcf_parameters_rejected(kw, message):
    with pytest.raises(ValueError, match=message):
        min_dcf([0.1, 0.2], [0, 1], **kw)


def test_det_curve_max_points_rejected():
    with pytest.raises(ValueError, match="max_points"):
        det_curve([0.1, 0.2], [0, 1], max_points=1)


# --------------------------------------------------------------------------------------------------------------
# identification
# --------------------------------------------------------------------------------------------------------------


def test_identification_hand_computed():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    true = np.array([0, 2, 1, 2])
    assert identification_accuracy(scores, true) == 0.5
    assert top_k_accuracy(scores, true, k=2) == 1.0
    assert top_k_accuracy(scores, true, k=3) == 1.0


def test_identification_ties_follow_argmax():
    scores = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    assert identification_accuracy(scores, [0, 1]) == 0.5  # argmax picks the lower index
    assert top_k_accuracy(scores, [0, 1], k=2) == 1.0


def test_top_k_matches_sorting_on_random_scores():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(3000, 40)), 1)  # ties included
    true = rng.integers(0, 40, size=3000)
    assert identification_accuracy(scores, true) == pytest.approx(np.mean(scores.argmax(1) == true))
    ranking = np.argsort(-scores, axis=1, kind="stable")  # descending, ties by lower index
    rank = np.argmax(ranking == true[:, None], axis=1)
    accuracies = [top_k_accuracy(scores, true, k=k) for k in (1, 5, 10, 40, 100)]
    for k, acc in zip((1, 5, 10, 40, 100), accuracies, strict=True):
        assert acc == pytest.approx(np.mean(rank < k))
    assert accuracies == sorted(accuracies) and accuracies[-1] == 1.0


@pytest.mark.parametrize(("scores", "true", "k", "message"), [
    (np.zeros(3), [0], 1, "2-D"),
    (np.zeros((2, 3)), [0], 1, "shape \\(2,\\)"),
    (np.zeros((2, 3)), [0, 3], 1, "lie in \\[0, 3\\)"),
    (np.zeros((2, 3)), [0.0, 1.0], 1, "integers"),
    (np.zeros((2, 3)), [0, 1], 0, "positive integer"),
    (np.full((2, 3), np.nan), [0, 1], 1, "NaN"),
])
def test_identification_inputs_rejected(scores, true, k, message):
    with pytest.raises(ValueError, match=message):
        top_k_accuracy(scores, np.array(true), k=k)


# --------------------------------------------------------------------------------------------------------------
# doctests
# --------------------------------------------------------------------------------------------------------------


def test_doctests_pass():
    result = doctest.testmod(metrics, verbose=False)
    assert result.attempted >= 15
    assert result.failed == 0
