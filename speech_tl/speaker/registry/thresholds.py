"""The decision threshold: its placeholders, setting it, and calibrating it from a speaker evaluation.

Scores are cosine similarities in [-1, 1] (or AS-Norm scores with a cohort, :mod:`.cohort`); a probe
is accepted when ``score > threshold`` (the convention of :mod:`speech_tl.metrics`), and every
threshold is stored with its provenance, which ``speakers list`` and the JSON answers show.

**The threshold in use comes from data unless someone sets it** (:meth:`Thresholds.meta`, ``threshold_origin``;
the constants and the measurements behind them are in :mod:`.auto_threshold`):

- ``enrolled``: once 2+ speakers are enrolled and ``MIN_TARGET_TRIALS`` clips belong to speakers with 2+ clips,
  the EER threshold of the enrolled clips' own trials (``enrolled_calibration``: each clip against the centroid
  of its speaker's *other* clips, and against every other speaker's centroid; AS-Norm'ed with a cohort)
  + ``PROBE_MARGIN``, never below the model's shipped one (a few enrolled people who are easy to tell apart say
  little about how strangers score). Computed when the database changes (cached per change counter; at most
  ``MAX_SPEAKERS`` speakers, a seeded sample, take part), never stored: it follows every enrollment and removal,
  in read-only databases too.
- ``shipped``: before that (or when it would be lower), a calibration shipped for the model (``SHIPPED``: GE2E,
  measured on real Common Voice voices) + ``PROBE_MARGIN``; cosine scores only.
- ``default``: else the placeholder stored for the score: :data:`DEFAULT_THRESHOLD` = 0.75 for cosine scores
  (not calibrated for any model or recording condition), :data:`DEFAULT_ASNORM_THRESHOLD` with a cohort.
- ``user``: set with :meth:`Thresholds.set_threshold` or calibrated from a speaker evaluation of the same model
  with :meth:`Thresholds.calibrate_threshold` (``speech-tl speakers calibrate``); it stays until
  :meth:`Thresholds.use_automatic_threshold` (``speakers calibrate --auto``) or a cohort is added or cleared.

The same data give ``cluster_threshold``, the cosine above which stretches of one recording are one voice
(:mod:`speech_tl.speaker.segments`): the EER threshold of enrolled clip-against-clip cosines (else the shipped
one, else the placeholder - ``PAIR_MARGIN``) - ``UNIT_SLACK``.

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
    """Threshold methods of :class:`~speech_tl.speaker.registry.SpeakerRegistry` (needs its ``_stored_meta``,
    ``model``, ``_read``, ``_write`` and ``_bump``)."""

    @property
    def threshold(self) -> float:
        return self.meta()["threshold"]

    def meta(self) -> dict:
        """The stored ``meta`` (:meth:`~.connection.Database._stored_meta`) with the threshold in use:
        ``threshold``, ``threshold_provenance``, ``threshold_origin`` (``user``: set or calibrated by someone;
        ``enrolled``: from the enrolled clips; ``shipped``: the model's shipped calibration; ``default``: the
        placeholder) and ``cluster_threshold`` (the cosine above which segments of a recording are one voice)."""
        from .auto_threshold import origin_of

        m = self._stored_meta()
        auto = self._auto(m)
        m["cluster_threshold"] = auto["cluster_threshold"]
        if origin_of(m) == "user":
            m["threshold_origin"] = "user"
        else:
            m.update(threshold=auto["threshold"], threshold_provenance=auto["provenance"],
                     threshold_origin=auto["origin"])
        return m

    def _auto(self, m: dict) -> dict:
        """Thresholds from data for the stored ``m``, cached per change counter: the enrolled clips'
        (:func:`enrolled_calibration`), else the model's shipped one (:data:`SHIPPED`, cosine scores), else the
        placeholder stored for the database's score."""
        if self._auto_cache is not None and self._auto_cache[0] == m["change_counter"]:
            return self._auto_cache[1]
        from .auto_threshold import PAIR_MARGIN, PROBE_MARGIN, SHIPPED, UNIT_SLACK, enrolled_calibration
        from .vectors import from_blob

        def load():
            rows = self._conn.execute("SELECT speaker_id, embedding FROM embeddings ORDER BY speaker_id, id").fetchall()
            cohort = self._conn.execute("SELECT embedding FROM cohort ORDER BY id").fetchall() \
                if m["score"] == "as-norm" and self.schema_version >= 3 else []
            return rows, cohort

        if self._conn.in_transaction:
            rows, cohort_rows = load()
        else:
            with self._read():
                rows, cohort_rows = load()
        by_speaker: dict[int, list] = {}
        for sid, blob in rows:
            by_speaker.setdefault(sid, []).append(from_blob(blob))
        groups = [np.stack(v) for v in by_speaker.values()]
        cohort = np.stack([from_blob(r[0]) for r in cohort_rows]) if len(cohort_rows) >= 2 else None
        cal = enrolled_calibration(groups, cohort)
        shipped = SHIPPED.get(str(m["model_fingerprint"]))
        floor = shipped["threshold"] + PROBE_MARGIN if shipped is not None and cohort is None else None
        if cal is not None and (floor is None or cal["threshold"] + PROBE_MARGIN >= floor):
            kind = "AS-Norm" if cohort is not None else "cosine"
            out = {"threshold": cal["threshold"] + PROBE_MARGIN, "origin": "enrolled",
                   "provenance": f"calibrated on the enrolled clips ({kind} scores): EER threshold "
                                 f"{cal['threshold']:.4f} of {cal['targets']} leave-one-out target and "
                                 f"{cal['nontargets']} non-target trials (EER {cal['eer']:.3f}) + {PROBE_MARGIN} for "
                                 "probes longer than a clip; follows every enrollment until a threshold is set"}
        elif floor is not None:
            below = (f"; the enrolled clips' own threshold ({cal['threshold'] + PROBE_MARGIN:.4f}) is lower: the "
                     "people enrolled are easy to tell apart, which says little about how strangers score"
                     if cal is not None else "; until enough clips are enrolled to calibrate on them")
            out = {"threshold": floor, "origin": "shipped",
                   "provenance": f"{shipped['provenance']}, + {PROBE_MARGIN} for probes longer than a clip{below}"}
        else:
            out = {"threshold": m["threshold"], "origin": "default", "provenance": m["threshold_provenance"]}
        out["cluster_threshold"] = (cal["pair_threshold"] if cal is not None else  # cosines, cohort or not
                                    shipped["pair_threshold"] if shipped is not None else
                                    DEFAULT_THRESHOLD - PAIR_MARGIN) - UNIT_SLACK
        self._auto_cache = (m["change_counter"], out)
        return out

    def use_automatic_threshold(self) -> dict:
        """Drop a set threshold: from now on it comes from data again (see :meth:`meta`); returns ``meta()``."""
        with self._write():
            score = self._meta_value("score")
            placeholder = (DEFAULT_ASNORM_THRESHOLD, DEFAULT_ASNORM_PROVENANCE) if score == "as-norm" else (
                DEFAULT_THRESHOLD, DEFAULT_PROVENANCE)
            self._set_scoring(score, *placeholder)
            self._bump()
        return self.meta()

    def set_threshold(self, value: float, provenance: str) -> None:
        """Set the decision threshold (a cosine score in [-1, 1]) and say where it comes from."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise SpeakerRegistryError(f"threshold {value!r} is not a number") from None
        if not math.isfinite(value):
            raise SpeakerRegistryError(f"threshold {value} is not a finite number")
        if self._stored_meta()["score"] == "cosine" and not -1.0 <= value <= 1.0:
            raise SpeakerRegistryError(f"threshold {value} is outside [-1, 1], the range of cosine scores")
        if not provenance or not str(provenance).strip():
            raise SpeakerRegistryError("say where the threshold comes from (provenance)")
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          [("threshold", repr(value)), ("threshold_provenance", str(provenance).strip()),
                           ("threshold_origin", "user")])
            self._bump()

    def _set_scoring(self, score: str, threshold: float, provenance: str) -> None:
        """Inside a write transaction: another score, and its placeholder threshold (thresholds from data again)."""
        self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [("score", score), ("threshold", repr(threshold)),
                                ("threshold_provenance", provenance), ("threshold_origin", "auto")])

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
        if self._stored_meta()["score"] == "as-norm":  # the evaluation's AS-Norm numbers, not its cosine ones
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
