"""Thresholds from data: the enrolled clips' own trials, and calibrations shipped for a model.

What :class:`~.thresholds.Thresholds` uses when no one has set the threshold (the rules are in the docstring of
:mod:`.thresholds`); kept apart so the numbers behind each constant sit beside it.
"""

from __future__ import annotations

from .thresholds import DEFAULT_ASNORM_PROVENANCE, DEFAULT_ASNORM_TOP_K, DEFAULT_PROVENANCE

MIN_TARGET_TRIALS = 6  # leave-one-out trials (clips of speakers with 2+ clips) before the enrolled clips set it
# at most this many speakers (a seeded sample) and clips each take part: the trials grow with the square of the
# database, and a few thousand of them fix an EER threshold well enough (3 clips x 200 speakers: 600 targets,
# 120,000 non-targets, 180,000 clip pairs)
MAX_SPEAKERS, MAX_CLIPS = 200, 8
PAIR_MARGIN = 0.08  # clip-vs-clip scores run lower than clip-vs-centroid ones (GE2E on Common Voice: 0.663 vs 0.742)
# Measured with recipes/speaker_id/segments_eval.py (real Common Voice and FSDD voices, 12 meetings each): a voice
# judged on more speech than one clip (a cluster of a recording's turns) scores higher against *other* people's
# centroids too, so a threshold from data sits PROBE_MARGIN above the EER threshold of single clips (strangers named
# `unknown` 68% -> 84% of their time on Common Voice, enrolled speakers' time named right 94% -> 93%); and the
# stretches of one recording are shorter than enrollment clips, so they are clustered UNIT_SLACK below the
# clip-vs-clip EER threshold (fewer stray fragments of one voice left on their own)
PROBE_MARGIN = 0.02
UNIT_SLACK = 0.05
# Calibrations shipped for a model (by weights fingerprint), measured on real speech by
# recipes/speaker_id/segments_eval.py --calibrate: the EER threshold of whole clips against 4-clip centroids
# ("threshold") and of clip against clip ("pair_threshold", what segments are clustered with)
SHIPPED = {
    "2136853972865195": {"threshold": 0.724, "pair_threshold": 0.663,
                         "provenance": "shipped calibration of GE2E (resemblyzer) on real Common Voice voices: EER "
                                       "threshold of whole clips against 4-clip centroids (47 speakers, 188 clips, "
                                       "EER 0.085)"},
}


def origin_of(stored: dict) -> str:
    """``"user"`` when the stored threshold was set or calibrated by someone, else ``"auto"`` (a database written
    before thresholds came from data marks neither: its placeholder provenance says it)."""
    origin = stored.get("threshold_origin")
    if origin:
        return origin
    placeholders = (DEFAULT_PROVENANCE, DEFAULT_ASNORM_PROVENANCE)
    return "auto" if stored.get("threshold_provenance") in placeholders else "user"


def enrolled_calibration(groups: list, cohort=None, top_k: int = DEFAULT_ASNORM_TOP_K) -> dict | None:
    """Thresholds from the enrolled clips themselves, or None when there are too few.

    ``groups``: one ``(n_i, D)`` array of L2-normalised clip embeddings per speaker. Target trials: every clip of
    a speaker with 2+ clips against the centroid of that speaker's *other* clips (leave-one-out); non-target
    trials: every clip against every other speaker's centroid; scored as identify scores them (AS-Norm with a
    ``cohort`` ``(M, D)``). Needs 2+ speakers and :data:`MIN_TARGET_TRIALS` target trials. Returns
    ``{"threshold", "eer", "targets", "nontargets", "pair_threshold", "pair_eer"}``: the EER thresholds of those
    trials and of clip-against-clip cosines (same speaker or not), which segment clustering uses.
    """
    import numpy as np

    from ...metrics import eer

    if len(groups) > MAX_SPEAKERS or any(len(g) > MAX_CLIPS for g in groups):
        rng = np.random.default_rng(0)
        keep = sorted(rng.choice(len(groups), size=min(len(groups), MAX_SPEAKERS), replace=False))
        groups = [groups[i][:MAX_CLIPS] for i in keep]
    multi = [g for g in groups if len(g) >= 2]
    if len(groups) < 2 or sum(len(g) for g in multi) < MIN_TARGET_TRIALS:
        return None

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    centroids = unit(np.stack([g.mean(0) for g in groups]))  # (S, D)
    target_probe, target_ref = [], []
    for g in multi:
        for i in range(len(g)):
            target_probe.append(g[i])
            target_ref.append(unit(g.sum(0) - g[i]))
    probes, refs = np.stack(target_probe), np.stack(target_ref)
    targets = (probes * refs).sum(1)
    nontargets = np.concatenate([np.delete(g @ centroids.T, s, axis=1).ravel() for s, g in enumerate(groups)])
    if cohort is not None:
        from ..scoring import cohort_stats

        k = min(top_k, len(cohort))
        mp, sp = cohort_stats(probes, cohort, k)
        mr, sr = cohort_stats(refs, cohort, k)
        targets = 0.5 * ((targets - mr) / sr + (targets - mp) / sp)
        mc, sc = cohort_stats(centroids, cohort, k)
        normed = []
        for s, g in enumerate(groups):
            mg, sg = cohort_stats(g, cohort, k)
            raw = g @ centroids.T
            z = 0.5 * ((raw - mc[None, :]) / sc[None, :] + (raw - mg[:, None]) / sg[:, None])
            normed.append(np.delete(z, s, axis=1).ravel())
        nontargets = np.concatenate(normed)
    rate, threshold = eer(np.r_[targets, nontargets], np.r_[np.ones(len(targets)), np.zeros(len(nontargets))])
    clips = np.concatenate(groups)  # (N, D), one matrix product for every clip pair
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    upper = np.triu_indices(len(clips), 1)
    sims = (clips @ clips.T)[upper]
    same_speaker = owner[upper[0]] == owner[upper[1]]
    same, diff = sims[same_speaker], sims[~same_speaker]
    pair_rate, pair_threshold = eer(np.r_[same, diff], np.r_[np.ones(len(same)), np.zeros(len(diff))])
    return {"threshold": float(threshold), "eer": float(rate), "targets": int(len(targets)),
            "nontargets": int(len(nontargets)), "pair_threshold": float(pair_threshold), "pair_eer": float(pair_rate)}
