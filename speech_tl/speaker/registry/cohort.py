"""The AS-Norm cohort: embeddings of *other* speakers that normalise identify's and verify's scores.

With a cohort of at least two embeddings of other speakers (:meth:`Cohort.add_cohort`, ``speech-tl
speakers cohort``), ``score`` is "as-norm" and identify and verify answer adaptive symmetric
normalised scores: ``((s - mu(e)) / sigma(e) + (s - mu(p)) / sigma(p)) / 2`` for the cosine ``s`` of
centroid ``e`` and probe ``p``, with ``mu``/``sigma`` the mean and deviation of each side's
:data:`.thresholds.DEFAULT_ASNORM_TOP_K` highest cosines to the cohort
(:mod:`speech_tl.speaker.scoring`; the centroids' statistics are cached with the speaker matrix,
:mod:`.identify`). On real speech this lowered GE2E's EER from 0.114 to 0.091 (Common Voice) and from
0.171 to 0.128 (FSDD; ``recipes/speaker_id/real_speech.py``). The first cohort sets the threshold to
:data:`.thresholds.DEFAULT_ASNORM_THRESHOLD`, a placeholder like the cosine one; clearing the cohort
puts the cosine placeholder back. Calibration then reads the evaluation's ``asnorm`` section.
"""

from __future__ import annotations

from .errors import SpeakerConflictError, SpeakerRegistryError
from .thresholds import DEFAULT_ASNORM_PROVENANCE, DEFAULT_ASNORM_THRESHOLD, DEFAULT_PROVENANCE, DEFAULT_THRESHOLD
from .vectors import now, to_blob, unit_vector


class Cohort:
    """Cohort methods of :class:`~speech_tl.speaker.registry.SpeakerRegistry`."""

    def add_cohort(self, embeddings: list, clips: list[str], model) -> dict:
        """Add embeddings of *other* speakers (never enrolled ones) to the AS-Norm cohort, in one transaction.

        From 2 cohort embeddings on, identify and verify answer AS-Norm scores; when scoring switches
        from cosine, the threshold becomes :data:`.thresholds.DEFAULT_ASNORM_THRESHOLD`, a placeholder to
        calibrate. ``model`` must be the database's. Returns ``{"added", "cohort_size", "score", "threshold"}``.
        """
        clips = [str(c) for c in clips]
        if len(embeddings) != len(clips) or not clips:
            raise SpeakerRegistryError(f"{len(embeddings)} embeddings for {len(clips)} cohort clips")
        vecs = [unit_vector(e, c) for e, c in zip(embeddings, clips, strict=True)]
        with self._write() as c:
            have = self.model
            if have is None:
                raise SpeakerRegistryError(f"{self.path}: enroll speakers first; the cohort must come from the "
                                           "same model")
            if msg := self._mismatch(have, model):
                raise SpeakerConflictError(msg)
            if any(v.size != have.dim for v in vecs):
                raise SpeakerRegistryError(f"cohort embeddings must have the model's size {have.dim}")
            old = [r[0] for r in c.execute(f"SELECT clip FROM cohort WHERE clip IN ({','.join('?' * len(clips))})",
                                           clips)]
            if old:
                raise SpeakerConflictError(f"already in the cohort: {', '.join(old[:5])}")
            added = now()
            c.executemany("INSERT INTO cohort (clip, embedding, added) VALUES (?, ?, ?)",
                          [(clip, to_blob(v), added) for clip, v in zip(clips, vecs, strict=True)])
            size = c.execute("SELECT count(*) FROM cohort").fetchone()[0]
            if size >= 2 and self._meta_value("score") != "as-norm":
                self._set_scoring("as-norm", DEFAULT_ASNORM_THRESHOLD, DEFAULT_ASNORM_PROVENANCE)
            self._bump()
        meta = self.meta()
        return {"added": len(clips), "cohort_size": int(size), "score": meta["score"], "threshold": meta["threshold"]}

    def clear_cohort(self) -> int:
        """Remove the whole cohort: scores are cosine again, with the cosine placeholder threshold."""
        with self._write() as c:
            n = c.execute("DELETE FROM cohort").rowcount
            if self._meta_value("score") != "cosine":
                self._set_scoring("cosine", DEFAULT_THRESHOLD, DEFAULT_PROVENANCE)
            self._bump()
        return n

    def cohort_clips(self) -> list[str]:
        if self.schema_version < 3:
            return []
        return [r[0] for r in self._conn.execute("SELECT clip FROM cohort ORDER BY id")]

    def cohort_size(self) -> int:
        if self.schema_version < 3:
            return 0
        return int(self._conn.execute("SELECT count(*) FROM cohort").fetchone()[0])
