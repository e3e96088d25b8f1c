"""The speaker database's API: :class:`SpeakerRegistry`, and what enrolling, renaming and removing guarantee.

**The model.** A database remembers the model it was created with: the first :meth:`SpeakerRegistry.enroll`
records its source, fingerprint (of the exact weights) and embedding size, and embeddings of any other
model are refused afterwards (:class:`SpeakerConflictError`), because scores between embeddings of
different models mean nothing.

**Enrolling** adds all of a speaker's clips in one transaction or none of them: a clip already enrolled
for the speaker, a malformed embedding, or another model refuses the whole call. A speaker's model
(``centroid``) is the L2-normalised mean of its L2-normalised clip embeddings, recomputed from all its
clips in the transaction that adds them.
"""

from __future__ import annotations

import os

import numpy as np

from .cohort import Cohort
from .connection import Database
from .errors import SpeakerConflictError, SpeakerRegistryError, UnknownSpeakerError
from .identify import Identify
from .names import new_name, normal_form, normalize_name
from .schema import SCHEMA_VERSION
from .thresholds import Thresholds
from .vectors import ModelInfo, from_blob, now, to_blob, unit_vector

DEFAULT_MODEL = "ge2e:resemblyzer"  # what `speech-tl enroll` uses for a new database without --model


class SpeakerRegistry(Thresholds, Cohort, Identify, Database):
    """Enrolled speakers in one SQLite file; one instance per process (or thread).

    ``create=False`` refuses a path where no database exists yet (every command but ``enroll``).
    ``readonly=True`` opens an existing database without changing it; writes are refused
    (:mod:`.connection`). ``schema_version`` is the file's version as opened: older than
    :data:`.schema.SCHEMA_VERSION` only for an older database opened read-only.
    """

    def __init__(self, db_path: str | os.PathLike, create: bool = True, readonly: bool = False):
        self._cache: tuple[int, list[str], np.ndarray, float] | None = None
        self._norm: tuple | None = None  # AS-Norm: (cohort (M, D), top_k, centroid means (N,), stds (N,))
        self.matrix_loads = 0  # how often identify() (re)loaded the speaker matrix; tests read it
        self._auto_cache: tuple[int, dict] | None = None  # (change counter, thresholds from data)
        super().__init__(db_path, create=create, readonly=readonly)

    # ------------------------------------------------------------------ the model

    @property
    def model(self) -> ModelInfo | None:
        """The model this database was created with (None before the first enroll)."""
        m = self._stored_meta()
        if m["model_fingerprint"] is None:
            return None
        return ModelInfo(m["model_source"], m["model_fingerprint"], m["embedding_dim"])

    def _mismatch(self, have: ModelInfo, model) -> str | None:
        if model.fingerprint == have.fingerprint and int(model.dim) == have.dim:
            return None
        return (f"{self.path} holds embeddings of model {have.source} (fingerprint {have.fingerprint}, "
                f"dim {have.dim}); refusing model {model.source} (fingerprint {model.fingerprint}, dim {model.dim}): "
                "embeddings of different models cannot be compared. Use that database's model, or a new --db "
                "for this one")

    def check_model(self, model) -> None:
        """Refuse ``model`` (anything with ``source``, ``fingerprint``, ``dim``) if the database has another one."""
        have = self.model
        if have is not None and (msg := self._mismatch(have, model)):
            raise SpeakerConflictError(msg)

    # ------------------------------------------------------------------ enrollment

    def enroll(self, name: str, embeddings: list, clips: list[str], model=None, *, model_source: str | None = None,
               model_fingerprint: str | None = None) -> dict:
        """Add clips of speaker ``name`` (created if new) in one transaction; all or nothing.

        ``embeddings[i]`` is the embedding of ``clips[i]`` by ``model`` (an Embedder, or anything
        with ``source``, ``fingerprint``, ``dim``), or else by the model named by ``model_source`` and
        ``model_fingerprint`` (its dim is the embeddings' size). The first enroll records the model;
        another model, a clip already enrolled for this speaker, or a malformed embedding is refused.
        Returns ``{"speaker", "created", "added", "n_clips"}``.
        """
        name = new_name(name)
        if (model is None) == (model_source is None or model_fingerprint is None):
            raise SpeakerRegistryError("enroll needs the model that made the embeddings: model=<Embedder> "
                                       "or model_source= and model_fingerprint=")
        if model is None:
            size = int(np.asarray(embeddings[0].detach().cpu() if hasattr(embeddings[0], "detach")
                                  else embeddings[0]).size) if len(embeddings) else 0
            model = ModelInfo(str(model_source), str(model_fingerprint), size)
        clips = [str(c) for c in clips]
        if len(embeddings) != len(clips):
            raise SpeakerRegistryError(f"{len(embeddings)} embeddings for {len(clips)} clips")
        if not clips:
            raise SpeakerRegistryError(f"no clips to enroll for speaker '{name}'")
        if len(set(clips)) != len(clips):
            dup = sorted({c for c in clips if clips.count(c) > 1})
            raise SpeakerRegistryError(f"the same clip given twice: {', '.join(dup)}")
        vecs = [unit_vector(e, c) for e, c in zip(embeddings, clips, strict=True)]
        dim = int(model.dim)
        if any(v.size != dim for v in vecs):
            bad = next(c for v, c in zip(vecs, clips, strict=True) if v.size != dim)
            raise SpeakerRegistryError(f"{bad}: embedding of size {vecs[clips.index(bad)].size}, "
                                       f"model {model.source} gives {dim}")
        stamp = now()
        with self._write() as c:
            have = self.model
            if have is None:
                c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                              [("model_source", str(model.source)), ("model_fingerprint", str(model.fingerprint)),
                               ("embedding_dim", str(dim))])
            elif msg := self._mismatch(have, model):
                raise SpeakerConflictError(msg)
            row = c.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
            created = row is None
            if created:
                sid = c.execute("INSERT INTO speakers (name, centroid, created, updated) VALUES (?, ?, ?, ?)",
                                (name, b"", stamp, stamp)).lastrowid
            else:
                sid = row[0]
                placeholders = ",".join("?" * len(clips))
                old = [r[0] for r in c.execute(f"SELECT clip FROM embeddings WHERE speaker_id = ? AND clip IN "
                                               f"({placeholders})", (sid, *clips))]
                if old:
                    raise SpeakerConflictError(f"already enrolled for speaker '{name}': {', '.join(old)}")
            c.executemany("INSERT INTO embeddings (speaker_id, clip, embedding, added) VALUES (?, ?, ?, ?)",
                          [(sid, clip, to_blob(v), stamp) for clip, v in zip(clips, vecs, strict=True)])
            n = self._update_centroid(sid, stamp)
            self._bump()
        return {"speaker": name, "created": created, "added": len(clips), "n_clips": n}

    def _update_centroid(self, sid: int, stamp: str) -> int:
        rows = self._conn.execute("SELECT embedding FROM embeddings WHERE speaker_id = ?", (sid,)).fetchall()
        mean = np.stack([from_blob(r[0]) for r in rows]).astype(np.float64).mean(0)
        centroid = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        self._conn.execute("UPDATE speakers SET centroid = ?, updated = ? WHERE id = ?",
                           (to_blob(centroid), stamp, sid))
        return len(rows)

    def speakers(self) -> list[tuple[str, int, str]]:
        """``[(name, n_clips, created)]`` sorted by name; ``created`` is an ISO 8601 UTC time."""
        return [(normal_form(n), int(k), cr) for n, k, cr in self._conn.execute(
            "SELECT s.name, count(e.id), s.created FROM speakers s LEFT JOIN embeddings e ON e.speaker_id = s.id "
            "GROUP BY s.id ORDER BY s.name")]

    def clips(self, name: str) -> list[str]:
        """The clips enrolled for ``name``, in the order they were added."""
        name = normalize_name(name)
        with self._read() as c:
            sid = self._speaker_id(name)
            return [r[0] for r in c.execute("SELECT clip FROM embeddings WHERE speaker_id = ? ORDER BY id", (sid,))]

    def _speaker_id(self, name: str) -> int:
        """The id of speaker ``name`` (normalised by the caller); refused with the enrolled names if missing."""
        row = self._conn.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None and self.schema_version < SCHEMA_VERSION:  # an older database, read as it is
            row = next(((sid,) for sid, stored in self._conn.execute("SELECT id, name FROM speakers ORDER BY id")
                        if normal_form(stored) == name), None)
        if row is None:
            names = [r[0] for r in self._conn.execute("SELECT name FROM speakers ORDER BY name LIMIT 11")]
            listing = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "none"
            raise UnknownSpeakerError(f"no speaker '{name}' in {self.path} (enrolled: {listing})")
        return row[0]

    def remove(self, name: str) -> int:
        """Delete a speaker and all its clips; returns how many clips went."""
        name = normalize_name(name)
        with self._write() as c:
            sid = self._speaker_id(name)
            n = c.execute("DELETE FROM embeddings WHERE speaker_id = ?", (sid,)).rowcount
            c.execute("DELETE FROM speakers WHERE id = ?", (sid,))
            self._bump()
        return n

    def rename(self, old: str, new: str) -> None:
        """Rename a speaker; refused if ``old`` is missing or ``new`` exists."""
        old, new = normalize_name(old), new_name(new)
        with self._write() as c:
            sid = self._speaker_id(old)
            if c.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone():
                raise SpeakerConflictError(f"speaker '{new}' already exists in {self.path}; remove it first "
                                           "or pick another name")
            c.execute("UPDATE speakers SET name = ?, updated = ? WHERE id = ?", (new, now(), sid))
            self._bump()
