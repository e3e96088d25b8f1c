"""Evaluate a speaker model: verification (EER, minDCF, DET, calibration) and closed-set identification.

``speech-tl evaluate speaker MODEL MANIFEST --out results.json [--trials FILE] [--cohort MANIFEST]``

MODEL is a speaker checkpoint folder or a backbone source string (``ge2e:resemblyzer``). Every utterance of
MANIFEST is embedded once; the embeddings are scored on verification trials (a VoxCeleb-style trial file, or
all same-speaker pairs plus sampled different-speaker pairs) by cosine and, given a cohort manifest of other
speakers, also by AS-Norm. Identification enrols each speaker with the mean of its first
``enroll_per_speaker`` utterances (by id) and identifies its other utterances among all enrolled speakers.

Written files: ``results.json`` (see :func:`evaluate_speaker`) and, beside it, ``<stem>.embeddings.pt``:
``torch.save`` of ``{"ids": [...], "speakers": [...], "embeddings": (N, D) float32, "model", "fingerprint",
"cohort_ids", "cohort_embeddings"}`` (L2-normalised rows, in manifest order) for reports to reuse.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_open, atomic_write_text
from ..audio import AudioError, load_checked
from ..errors import InputError
from ..manifest import Utterance, read_manifest
from ..metrics import det_curve, eer, identification_accuracy, min_dcf, top_k_accuracy
from .embedder import Embedder, load_embedder
from .scoring import (
    asnorm_scores,
    bootstrap_eer_ci,
    calibration_curve,
    cosine_scores,
    finite_threshold,
    l2_normalize,
    score_histogram,
)
from .trials import TrialError, build_trial_arrays, read_trial_file

P_TARGET = 0.01


def embed_utterances(embedder: Embedder, utts: list[Utterance], manifest: str | Path, desc: str = "embed",
                     batch_size: int = 16) -> torch.Tensor:
    """L2-normalised embeddings ``(N, D)`` of the utterances, in order (a progress bar when stderr is a TTY).

    ``batch_size`` utterances of similar duration per forward pass. Segments (``offset``) are cut from their
    file. An unusable clip (silent, too short, clipped, unreadable) raises :class:`~speech_tl.audio.AudioError`
    naming the manifest line.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    out = torch.zeros(len(utts), embedder.dim)
    order = sorted(range(len(utts)), key=lambda k: -utts[k].duration)
    with tqdm(total=len(utts), desc=desc, unit="utt", disable=not sys.stderr.isatty()) as bar:
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            waves = []
            for k in idx:
                u = utts[k]
                try:
                    waves.append(load_checked(u.audio_path(), offset=u.offset or 0.0,
                                              duration=u.duration if u.offset is not None else None))
                except AudioError as e:
                    raise AudioError(e.path, f"{e.reason} (utterance {u.id!r}, {manifest}:{u.line})") from None
            out[idx] = embedder.embed_batch(waves)
            bar.update(len(idx))
    return l2_normalize(out) if len(utts) else out


def identify(embeddings: torch.Tensor, utts: list[Utterance], enroll_per_speaker: int = 3) -> dict:
    """Closed-set identification by cosine to per-speaker mean enrolment embeddings.

    Per speaker (utterances sorted by id) the first ``enroll_per_speaker`` are averaged into its enrolment;
    the rest are identified among all enrolled speakers (a speaker with no more utterances than that is only
    a distractor). Returns top-1 and top-5 accuracy (``None`` without test utterances) and per-speaker counts.
    """
    if int(enroll_per_speaker) != enroll_per_speaker or enroll_per_speaker < 1:
        raise ValueError(f"enroll_per_speaker must be an integer >= 1, got {enroll_per_speaker!r}")
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for k in sorted(range(len(utts)), key=lambda k: utts[k].id):
        by_speaker[utts[k].speaker].append(k)
    speakers = sorted(by_speaker)
    emb = l2_normalize(embeddings)
    centroids = l2_normalize(torch.stack([emb[by_speaker[s][:enroll_per_speaker]].mean(0) for s in speakers]))
    tests = [(k, c) for c, s in enumerate(speakers) for k in by_speaker[s][enroll_per_speaker:]]
    per_speaker = {s: {"enroll": min(len(by_speaker[s]), enroll_per_speaker),
                       "tests": max(0, len(by_speaker[s]) - enroll_per_speaker), "accuracy": None}
                   for s in speakers}
    result = {"enroll_per_speaker": int(enroll_per_speaker), "num_enrolled_speakers": len(speakers),
              "num_tests": len(tests), "accuracy": None, "top5_accuracy": None, "per_speaker": per_speaker}
    if not tests:
        return result
    test_idx = torch.tensor([k for k, _ in tests])
    true = np.array([c for _, c in tests], dtype=np.int64)
    score_matrix = (emb[test_idx] @ centroids.T).double().numpy()  # (N_test, S)
    correct = score_matrix.argmax(1) == true
    for c, s in enumerate(speakers):
        mine = true == c
        if mine.any():
            per_speaker[s]["accuracy"] = float(correct[mine].mean())
    result["accuracy"] = identification_accuracy(score_matrix, true)
    result["top5_accuracy"] = top_k_accuracy(score_matrix, true, k=min(5, len(speakers)))
    return result


def _check_audio(utts: list[Utterance], manifest: str | Path) -> None:
    missing = [f"{manifest}:{u.line}: audio file not found: {u.audio_path()}" for u in utts
               if not u.audio_path().is_file()]
    if missing:
        more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError("\n".join(missing[:10]) + more)


def _segment_key(u: Utterance) -> tuple[str, float | None]:
    return str(u.audio_path().resolve()), u.offset


def _verification(scores: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """EER, minDCF, their thresholds (finite), bootstrap CI, calibration, DET and histogram of one score kind."""
    e, e_thr = eer(scores, labels)
    dcf, dcf_thr = min_dcf(scores, labels, p_target=P_TARGET)
    n_boot = int(min(1000, max(100, 2 * 10**7 // scores.size)))  # bounded time on large trial lists
    far, frr = det_curve(scores, labels, max_points=500)
    return {"eer": e, "eer_threshold": finite_threshold(e_thr, scores),
            "eer_ci95": list(bootstrap_eer_ci(scores, labels, n=n_boot, seed=seed)), "eer_ci95_resamples": n_boot,
            "min_dcf": dcf, "min_dcf_threshold": finite_threshold(dcf_thr, scores),
            "det": {"far": far.tolist(), "frr": frr.tolist()},
            "calibration": calibration_curve(scores, labels, max_points=1000),
            "score_histogram": score_histogram(scores, labels)}


def evaluate_speaker(model: str | Path, manifest: str | Path, out: str | Path, trials_file: str | Path | None = None,
                     cohort_manifest: str | Path | None = None, asnorm_top_k: int = 100, enroll_per_speaker: int = 3,
                     seed: int = 0, max_nontarget_per_target: float = 10.0, device: str = "cpu",
                     batch_size: int = 16) -> dict:
    """Embed MANIFEST with MODEL, score verification trials and identification, write ``out`` (results.json).

    Trials come from ``trials_file`` (VoxCeleb format, see :func:`~.trials.read_trial_file`) or else
    :func:`~.trials.build_trial_arrays` (all target pairs, ``max_nontarget_per_target`` sampled non-target
    pairs per target pair, ``seed``). With ``cohort_manifest`` the trials are also scored with AS-Norm
    (``asnorm_top_k``) against the embeddings of that manifest (other speakers, e.g. a training split).
    The model runs on ``device`` (``auto``, ``cpu``, ``cuda``), ``batch_size`` utterances per forward pass.

    results.json (rates are fractions; a trial is accepted when ``score > threshold``). Every top-level number
    is about **cosine** scores (``"score": "cosine"``), the score an enrollment database computes, so its
    thresholds can be used there (``speech-tl speakers calibrate``):

    * ``eer``, ``eer_threshold``, ``eer_ci95`` ([low, high], percentile bootstrap over trials,
      ``eer_ci95_resamples``), ``min_dcf`` (normalised, ``p_target`` 0.01) and ``min_dcf_threshold``
      (finite: "reject all" is written as the highest score); ``num_trials``, ``num_target_trials``,
      ``num_nontarget_trials``;
    * ``calibration``: ``{"thresholds", "far", "frr"}``, ascending finite thresholds (<= 1000 points);
      ``det``: ``{"far", "frr"}`` (<= 500 points, increasing threshold); ``score_histogram``:
      ``{"bins" (edges), "target", "nontarget"}`` (counts);
    * ``asnorm``: ``None``, or with a cohort the same verification fields for AS-Norm scores plus ``cohort``,
      ``cohort_size``, ``top_k`` and ``cohort_speakers_also_evaluated`` (speaker labels in both; should be 0);
    * ``identification_accuracy``, ``identification_top5_accuracy`` (``None`` without test utterances),
      ``identification`` (counts) and ``per_speaker`` (``{"enroll", "tests", "accuracy"}`` per speaker);
    * ``model`` (source), ``fingerprint`` (also as ``model_fingerprint``), ``embedding_dim``, ``manifest``,
      ``trials`` (where they came from), ``embed_seconds``, ``score_seconds``, ``batch_size``, ``device``,
      ``embeddings`` (saved embeddings).
    """
    out = Path(out)
    utts = read_manifest(manifest)
    if not utts:
        raise InputError(f"{manifest}: no utterances to evaluate")
    _check_audio(utts, manifest)
    # everything that can fail cheaply is checked before the embedding pass
    if trials_file is not None:
        trials = np.asarray(read_trial_file(trials_file, utts), dtype=np.int64).reshape(-1, 3)
        enroll, test, labels = trials[:, 0], trials[:, 1], trials[:, 2]
        trial_info = {"source": str(trials_file)}
    else:
        enroll, test, labels = build_trial_arrays(utts, max_nontarget_per_target, seed)
        trial_info = {"source": "generated", "seed": seed, "max_nontarget_per_target": max_nontarget_per_target}
    n_target = int(labels.sum())
    if n_target == 0 or n_target == labels.size:
        what = "target (same-speaker)" if n_target == 0 else "non-target (different-speaker)"
        hint = "every speaker needs at least 2 utterances" if n_target == 0 else "evaluate at least 2 speakers"
        raise TrialError(f"{trials_file or manifest}: no {what} trials, so EER is undefined ({hint})")
    cohort_utts: list[Utterance] = []
    if cohort_manifest is not None:
        cohort_utts = read_manifest(cohort_manifest)
        _check_audio(cohort_utts, cohort_manifest)
        if len(cohort_utts) < 2:
            raise InputError(f"{cohort_manifest}: an AS-Norm cohort needs at least 2 utterances")
        shared = {_segment_key(u) for u in utts} & {_segment_key(u) for u in cohort_utts}
        if shared:
            raise InputError(f"{cohort_manifest}: {len(shared)} cohort utterance(s) are also evaluated "
                             f"(e.g. {sorted(shared)[0][0]}); the cohort must hold other speakers, e.g. a "
                             "training split")
        if int(asnorm_top_k) != asnorm_top_k or asnorm_top_k < 2:
            raise InputError(f"--asnorm-top-k must be an integer >= 2, got {asnorm_top_k!r}")

    embedder = load_embedder(str(model), device)
    t0 = time.perf_counter()
    emb = embed_utterances(embedder, utts, manifest, "embed", batch_size)
    cohort = embed_utterances(embedder, cohort_utts, cohort_manifest, "embed cohort", batch_size) \
        if cohort_utts else None
    embed_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    raw = cosine_scores(emb, enroll, test)
    verification = _verification(raw, labels, seed)
    asnorm = None
    if cohort is not None:
        scores = asnorm_scores(emb, cohort, enroll, test, top_k=asnorm_top_k, scores=raw)
        asnorm = {"cohort": str(cohort_manifest), "cohort_size": int(cohort.shape[0]),
                  "top_k": int(min(asnorm_top_k, cohort.shape[0])),
                  "cohort_speakers_also_evaluated": len({u.speaker for u in cohort_utts} & {u.speaker for u in utts}),
                  **_verification(scores, labels, seed)}
    ident = identify(emb, utts, enroll_per_speaker)
    score_seconds = time.perf_counter() - t0

    speakers = [u.speaker for u in utts]
    emb_path = out.with_name(out.stem + ".embeddings.pt")
    results = {
        "task": "speaker", "model": embedder.source, "fingerprint": embedder.fingerprint,
        "model_fingerprint": embedder.fingerprint, "embedding_dim": int(emb.shape[1]), "manifest": str(manifest),
        "num_utterances": len(utts), "num_speakers": len(set(speakers)),
        "trials": trial_info, "num_trials": int(labels.size), "num_target_trials": n_target,
        "num_nontarget_trials": int(labels.size - n_target), "score": "cosine", "p_target": P_TARGET,
        **verification,
        "identification_accuracy": ident["accuracy"], "identification_top5_accuracy": ident["top5_accuracy"],
        "identification": {k: v for k, v in ident.items() if k not in ("accuracy", "top5_accuracy", "per_speaker")},
        "per_speaker": ident["per_speaker"],
        "asnorm": asnorm,
        "embed_seconds": round(embed_seconds, 3), "score_seconds": round(score_seconds, 3),
        "batch_size": batch_size, "device": str(embedder.device),
        "embeddings": str(emb_path),
    }
    if trials_file is not None:
        spk = np.array(speakers, dtype=object)
        results["trials"]["label_disagrees_with_manifest"] = int(((spk[enroll] == spk[test]) != (labels == 1)).sum())
    with atomic_open(emb_path, "wb") as f:
        torch.save({"ids": [u.id for u in utts], "speakers": speakers, "embeddings": emb.contiguous(),
                    "model": embedder.source, "fingerprint": embedder.fingerprint,
                    "cohort_ids": [u.id for u in cohort_utts],
                    "cohort_embeddings": cohort.contiguous() if cohort is not None else None}, f)
    atomic_write_text(out, json.dumps(results, ensure_ascii=False, indent=1, allow_nan=False))
    return results
