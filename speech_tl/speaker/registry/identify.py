"""Who speaks, and is it X: one matrix product of the probe with every enrolled speaker's centroid.

A speaker's model (``centroid``) is the L2-normalised mean of its L2-normalised clip embeddings
(:mod:`.store`). The names and the ``(N, D)`` centroid matrix are cached per open database and reloaded
only when the ``change_counter`` moved (:mod:`.connection`: every write bumps it), so identify in a
loop or a service reads SQLite once per change, not once per probe. With a cohort the scores are
AS-Norm (:mod:`.cohort`); a probe is accepted when ``score > threshold``.
"""

from __future__ import annotations

import numpy as np

from .errors import SpeakerRegistryError
from .names import UNKNOWN, normal_form, normalize_name
from .thresholds import DEFAULT_ASNORM_TOP_K
from .vectors import from_blob, unit_vector


class Identify:
    """identify and verify of :class:`~speech_tl.speaker.registry.SpeakerRegistry` (its ``_cache``,
    ``_norm`` and ``matrix_loads`` are set in its ``__init__``)."""

    def _matrix(self) -> tuple[list[str], np.ndarray, float]:
        """Names, ``(N, D)`` centroids and threshold, reloaded only when the change counter moved; with a
        cohort, also its ``(M, D)`` matrix and each centroid's AS-Norm statistics."""
        counter = int(self._meta_value("change_counter"))
        if self._cache is not None and self._cache[0] == counter:
            return self._cache[1], self._cache[2], self._cache[3]
        with self._read() as c:  # counter and rows from one snapshot
            counter = int(c.execute("SELECT value FROM meta WHERE key = 'change_counter'").fetchone()[0])
            threshold = self.meta()["threshold"]  # the one in use: set by a user, or from data (.thresholds)
            rows = c.execute("SELECT name, centroid FROM speakers ORDER BY id").fetchall()
            score = c.execute("SELECT value FROM meta WHERE key = 'score'").fetchone()
            as_norm = bool(score) and score[0] == "as-norm"
            version = c.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated it since
            cohort_rows = c.execute("SELECT embedding FROM cohort ORDER BY id").fetchall() if as_norm and \
                version >= 3 else []
        if as_norm and len(cohort_rows) < 2:  # never cosine scores against an AS-Norm threshold
            raise SpeakerRegistryError(f"{self.path} scores with AS-Norm but its cohort could not be read; open it "
                                       "again")
        names = [normal_form(r[0]) for r in rows]
        matrix = np.stack([from_blob(r[1]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        self._norm = None
        if len(cohort_rows) >= 2:
            from ..scoring import cohort_stats  # imports torch: only for a database with a cohort

            cohort = np.stack([from_blob(r[0]) for r in cohort_rows])
            k = min(DEFAULT_ASNORM_TOP_K, cohort.shape[0])
            stats = cohort_stats(matrix, cohort, k) if rows else (np.zeros(0), np.ones(0))
            self._norm = (cohort, k, stats[0], stats[1])
        self._cache = (counter, names, matrix, threshold)
        self.matrix_loads += 1
        return names, matrix, threshold

    def _scores(self, v: np.ndarray, raw: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Cosine scores ``raw`` of probe ``v`` ``(D,)`` against centroids ``rows`` ``(R,)``, or of probes ``v``
        ``(N, D)`` ``(N, R)``, AS-Norm'ed when there is a cohort."""
        if self._norm is None:
            return raw
        from ..scoring import cohort_stats

        cohort, k, mean_e, std_e = self._norm
        mean_t, std_t = cohort_stats(np.atleast_2d(v), cohort, k)  # (N,)
        if raw.ndim == 2:
            mean_t, std_t = mean_t[:, None], std_t[:, None]
        else:
            mean_t, std_t = mean_t[0], std_t[0]
        return 0.5 * ((raw - mean_e[rows]) / std_e[rows] + (raw - mean_t) / std_t)

    def _probe(self, embedding, model) -> np.ndarray:
        have = self.model
        if have is None:
            raise SpeakerRegistryError(f"no speakers enrolled in {self.path} yet; enroll some with `speech-tl enroll`")
        if model is not None and (msg := self._mismatch(have, model)):
            raise SpeakerRegistryError(msg)
        v = unit_vector(embedding, "probe")
        if v.size != have.dim:
            raise SpeakerRegistryError(f"probe embedding of size {v.size}; {self.path} holds model {have.source} "
                                       f"of dim {have.dim}")
        return v

    def identify(self, embedding, top_k: int = 5, model=None) -> dict:
        """Who speaks? ``{"speaker": name or "unknown", "score", "threshold", "candidates": [{"speaker", "score"}]}``.

        One matrix product of the probe with every speaker's centroid; ``candidates`` are the
        ``top_k`` best, best first; ``speaker`` is the best one if its score is above the threshold.
        """
        if top_k < 1:
            raise SpeakerRegistryError(f"top_k must be at least 1, got {top_k}")
        v = self._probe(embedding, model)
        names, matrix, threshold = self._matrix()
        if not names:
            raise SpeakerRegistryError(f"no speakers enrolled in {self.path}; enroll some with `speech-tl enroll`")
        scores = self._scores(v, (matrix @ v).astype(np.float64), slice(None))
        k = min(top_k, len(names))
        best = np.argsort(-scores, kind="stable")[:k]
        candidates = [{"speaker": names[i], "score": float(scores[i])} for i in best]
        top = candidates[0]
        return {"speaker": top["speaker"] if top["score"] > threshold else UNKNOWN, "score": top["score"],
                "threshold": threshold, "candidates": candidates}

    def verify(self, name: str, embedding, model=None) -> dict:
        """Is it ``name``? ``{"speaker", "accepted", "score", "threshold"}``; an unknown name is an error."""
        name = normalize_name(name)
        v = self._probe(embedding, model)
        names, matrix, threshold = self._matrix()
        if name not in names:
            with self._read():
                self._speaker_id(name)  # raises, listing the enrolled names
            names, matrix, threshold = self._matrix()  # enrolled meanwhile
        i = names.index(name)
        score = float(self._scores(v, np.array([float(matrix[i] @ v)]), np.array([i]))[0])
        return {"speaker": name, "accepted": score > threshold, "score": score, "threshold": threshold}

    def judge(self, model=None):
        """What :func:`speech_tl.speaker.segments.label_recording` names voices with: the enrolled names, a scorer
        ``(N, D)`` embeddings -> ``(N, S)`` scores (AS-Norm'ed with a cohort), the threshold in use and the
        clustering threshold (:meth:`meta`)."""
        from ..segments import Judge

        if model is not None:
            self.check_model(model)
        names, matrix, threshold = self._matrix()
        if not names:
            raise SpeakerRegistryError(f"no speakers enrolled in {self.path}; enroll some with `speech-tl enroll`")
        meta = self.meta()

        def score(embeddings: np.ndarray) -> np.ndarray:
            probes = np.asarray(embeddings, dtype=np.float32)  # (N, D)
            return self._scores(probes, (probes @ matrix.T).astype(np.float64), slice(None))  # (N, S)

        return Judge(names, score, threshold, meta["threshold_origin"], meta["cluster_threshold"])
