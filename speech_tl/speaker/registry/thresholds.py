"""The decision threshold: its placeholders, setting it, and calibrating it from a speaker evaluation.

Scores are cosine similarities in [-1, 1] (or AS-Norm scores with a cohort, :mod:`.cohort`); a probe
is accepted when ``score > threshold`` (the convention of :mod:`speech_tl.metrics`), and every
threshold is stored with its provenance, which ``speakers list`` and the JSON answers show.

A new database starts with :data:`DEFAULT_THRESHOLD` = 0.75, a *placeholder* that is not calibrated
for any model or recording condition; the first cohort switches to :data:`DEFAULT_ASNORM_THRESHOLD`,
clearing it puts the cosine placeholder back. Calibrate with :meth:`Thresholds.calibrate_threshold`
from a speaker evaluation of the same model (``speech-tl speakers calibrate``), or set it with
:meth:`Thresholds.set_threshold`.

**results.json for calibration** (written by a speaker evaluation; scores are cosine similarities
of the same model, accept when ``score > threshold``)::

    {
      "eer_threshold": 0.71,              # threshold at the equal error rate (used without target_far)
      "eer": 0.043,                       # optional, only quoted in the provenance
      "model_fingerprint": "2136853972865195",  # optional; when present it must match the database's model
      "calibration": {                    # needed for target_far
        "thresholds": [0.31, 0.45, ...],  # score thresholds, any order; non-finite entries are skipped
        "far": [0.62, 0.20, ...],         # false-accept rate at each threshold: the fraction of
                                          # non-target trials with score > threshold (non-increasing
                                          # as the threshold rises)
        "frr": [0.00, 0.01, ...]          # optional, not used
      },
      "asnorm": {...}                     # the same keys for AS-Norm scores (read when the database has a cohort)
    }

``speech_tl.speaker.scoring.calibration_curve(scores, labels)`` returns exactly the ``calibration`` dict and
``speech_tl.metrics.eer(scores, labels)`` returns ``(eer, eer_threshold)``.

With ``target_far`` the chosen threshold is the lowest listed threshold whose FAR is ``<= target_far``
(the lowest such threshold rejects the fewest genuine speakers).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import SpeakerRegistryError

DEFAULT_THRESHOLD = 0.75
DEFAULT_PROVENANCE = ("default placeholder for cosine scores, not calibrated: calibrate it with "
                      "`speech-tl speakers calibrate` from a speaker evaluation of this model")
# AS-Norm scores measure how far a trial stands above the 100 cohort speakers closest to each side: 0 means
# "as close as the closest other people", the natural place to start before calibration
DEFAULT_ASNORM_THRESHOLD = 0.0
DEFAULT_ASNORM_PROVENANCE = ("default placeholder for AS-Norm scores (accept above the mean score of the closest "
                             "cohort speakers), not calibrated: calibrate it with `speech-tl speakers calibrate` "
                             "from a speaker evaluation of this model run with --cohort")
DEFAULT_ASNORM_TOP_K = 100  # measured best or near-best of 50/100/200 on FSDD and Common Voice (real_speech.py)


class Thresholds:
    """Threshold methods of :class:`~speech_tl.speaker.registry.SpeakerRegistry` (needs its ``meta``,
    ``model``, ``_write`` and ``_bump``)."""

    @property
    def threshold(self) -> float:
        return self.meta()["threshold"]

    def set_threshold(self, value: float, provenance: str) -> None:
        """Set the decision threshold (a cosine score in [-1, 1]) and say where it comes from."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise SpeakerRegistryError(f"threshold {value!r} is not a number") from None
        if not math.isfinite(value):
            raise SpeakerRegistryError(f"threshold {value} is not a finite number")
        if self.meta()["score"] == "cosine" and not -1.0 <= value <= 1.0:
            raise SpeakerRegistryError(f"threshold {value} is outside [-1, 1], the range of cosine scores")
        if not provenance or not str(provenance).strip():
            raise SpeakerRegistryError("say where the threshold comes from (provenance)")
        with self._write() as c:
            c.executemany("UPDATE meta SET value = ? WHERE key = ?",
                          [(repr(value), "threshold"), (str(provenance).strip(), "threshold_provenance")])
            self._bump()

    def _set_scoring(self, score: str, threshold: float, provenance: str) -> None:
        """Inside a write transaction: another score, and the threshold that goes with it."""
        self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [("score", score), ("threshold", repr(threshold)),
                                ("threshold_provenance", provenance)])

    def calibrate_threshold(self, results_json_path: str | os.PathLike, target_far: float | None = None,
                            shown_as: str | None = None) -> dict:
        """Set the threshold from a speaker evaluation's results.json (format in the module docstring).

        Without ``target_far``: its ``eer_threshold``. With it: the lowest threshold in
        ``calibration.thresholds`` whose ``calibration.far`` is ``<= target_far``.
        Returns ``{"threshold", "provenance", "far"}`` (``far`` only with ``target_far``).
        """
        path = Path(results_json_path)
        shown = shown_as or str(path.resolve())  # how messages and the provenance name the file
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpeakerRegistryError(f"{shown}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpeakerRegistryError(f"{shown}: not a readable JSON file ({e})") from None
        if not isinstance(results, dict):
            raise SpeakerRegistryError(f"{shown}: expected a JSON object with 'eer_threshold' and 'calibration'")
        have = self.model
        fp = results.get("model_fingerprint")
        if fp is not None and have is not None and str(fp) != have.fingerprint:
            raise SpeakerRegistryError(f"{shown} evaluates model fingerprint {fp}, but {self.path} holds model "
                                       f"{have.source} (fingerprint {have.fingerprint}): a threshold only holds "
                                       "for the model it was measured on")
        if self.meta()["score"] == "as-norm":  # the evaluation's AS-Norm numbers, not its cosine ones
            section = results.get("asnorm")
            if not isinstance(section, dict):
                raise SpeakerRegistryError(f"{shown}: {self.path} scores with AS-Norm (it has a cohort), but this "
                                           "evaluation has no AS-Norm results ('asnorm'); run `speech-tl evaluate "
                                           "speaker` with --cohort, or clear the database's cohort")
            top_k = section.get("top_k")
            if top_k is not None and int(top_k) != DEFAULT_ASNORM_TOP_K:
                raise SpeakerRegistryError(f"{shown}: its AS-Norm scores use the top {top_k} cohort scores, this "
                                           f"database's the top {DEFAULT_ASNORM_TOP_K}: the scales differ; evaluate "
                                           f"with --asnorm-top-k {DEFAULT_ASNORM_TOP_K}")
            results = {**section, "model_fingerprint": fp}
        far_at = None
        if target_far is None:
            thr = results.get("eer_threshold")
            if not isinstance(thr, int | float) or isinstance(thr, bool) or not math.isfinite(thr):
                raise SpeakerRegistryError(f"{shown}: no finite number under 'eer_threshold'")
            eer = results.get("eer")
            quoted = isinstance(eer, int | float) and not isinstance(eer, bool)
            provenance = f"EER threshold of {shown}" + (f" (EER {eer:.4f})" if quoted else "")
        else:
            target_far = float(target_far)
            if not 0.0 <= target_far <= 1.0:
                raise SpeakerRegistryError(f"--target-far {target_far} is not a rate in [0, 1]")
            thresholds, far = _calibration_arrays(shown, results)
            ok = far <= target_far
            if not ok.any():
                raise SpeakerRegistryError(f"{shown}: no listed threshold reaches FAR <= {target_far:g} (lowest FAR "
                                           f"{far.min():.4g} at threshold {thresholds[far.argmin()]:.4f})")
            i = int(np.flatnonzero(ok)[0])
            thr, far_at = float(thresholds[i]), float(far[i])
            provenance = f"FAR <= {target_far:g} (FAR {far_at:.4g} at this threshold) from {shown}"
        if fp is not None:
            provenance += f", model fingerprint {fp}"
        self.set_threshold(thr, provenance)
        out = {"threshold": float(thr), "provenance": provenance}
        if far_at is not None:
            out["far"] = far_at
        return out


def _calibration_arrays(shown: str, results: dict) -> tuple[np.ndarray, np.ndarray]:
    """``calibration.thresholds`` and ``calibration.far`` checked, finite, sorted by threshold: ``(T,)``, ``(T,)``."""
    cal = results.get("calibration")
    if not isinstance(cal, dict) or "thresholds" not in cal or "far" not in cal:
        raise SpeakerRegistryError(f"{shown}: --target-far needs 'calibration': {{'thresholds': [...], "
                                   "'far': [...]}} (false-accept rate at each threshold)")
    try:
        thresholds = np.asarray(cal["thresholds"], dtype=np.float64).reshape(-1)
        far = np.asarray(cal["far"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise SpeakerRegistryError(f"{shown}: 'calibration.thresholds' and 'calibration.far' must be lists of "
                                   "numbers") from None
    if thresholds.size != far.size or thresholds.size == 0:
        raise SpeakerRegistryError(f"{shown}: 'calibration.thresholds' ({thresholds.size}) and 'calibration.far' "
                                   f"({far.size}) must be non-empty and of the same length")
    keep = np.isfinite(thresholds) & np.isfinite(far)  # det curves may hold +-inf end points
    thresholds, far = thresholds[keep], far[keep]
    if thresholds.size == 0:
        raise SpeakerRegistryError(f"{shown}: no finite (threshold, far) pair in 'calibration'")
    if (far < 0).any() or (far > 1).any():
        raise SpeakerRegistryError(f"{shown}: 'calibration.far' values must be rates in [0, 1]")
    order = np.argsort(thresholds, kind="stable")
    thresholds, far = thresholds[order], far[order]
    if (np.diff(far) > 1e-9).any():
        raise SpeakerRegistryError(f"{shown}: 'calibration.far' rises with the threshold; it must be the "
                                   "false-accept rate (accept when score > threshold), not the miss rate, "
                                   "and scores must be similarities, not distances")
    return thresholds, far
