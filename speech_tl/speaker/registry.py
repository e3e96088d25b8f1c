"""Speaker enrollment database: enroll voices, then identify (who is it?) or verify (is it X?).

One SQLite file in WAL mode, safe for several processes enrolling and identifying at once: every
write is one ``BEGIN IMMEDIATE`` transaction (it either happens completely or not at all), readers
never block writers, and a ``busy_timeout`` makes concurrent writers wait for each other instead of
failing with "database is locked".

**Opening a file changes nothing until the file is recognised.** The registry first reads the
file's header and table list, and accepts only

- a new or empty file (or an SQLite database holding nothing), which becomes a speaker database
  (not when opened read-only);
- a speaker database: ``PRAGMA application_id`` is :data:`APPLICATION_ID`, ``PRAGMA user_version``
  its schema version, and our tables have our columns;
- a speaker database of schema version 1, written before the file carried a version (application
  id and ``user_version`` 0): exactly our three tables with our columns, and ``meta`` says
  ``schema_version`` "1".

Anything else (a file that is not SQLite, another program's database, even one with a
``meta(key, value)`` table) is refused with :class:`SpeakerRegistryError` naming the file, and is
left byte for byte as it was: not switched to WAL, no tables added.

**Schema versions.** :data:`SCHEMA_VERSION` is the version this code writes. An older database
opened for writing is migrated in place, every step in one transaction (all or nothing); a newer
one is refused with a message to upgrade speech-tl. Version 2 (from 1): speaker names in their
normal form (see *Names*; if two names of a version 1 database become the same, the migration is
refused, naming them) and the file marked with the application id and ``user_version``. Version 3
(from 2): the ``cohort`` table for AS-Norm (empty: scores stay cosine).

**Read-only.** ``SpeakerRegistry(path, readonly=True)`` (identify, verify and ``speakers list`` at
the command line) opens the file through the URI ``file:...?mode=ro``: no WAL switch, no
migration (an older database is read as it is), and every write is refused. Reading a WAL database
needs its ``-shm`` index file; SQLite creates it, and an empty ``-wal``, beside the database (a
read-only connection leaves both there). Where it cannot (the folder is not writable: read-only
media, or permissions) and the ``-wal``/``-shm`` pair is not there, the file is opened with
``immutable=1``: SQLite reads it without locks and assumes that no one changes it meanwhile. A
``-wal`` file there without its ``-shm`` may hold changes not yet copied into the database, which
an immutable reader would miss, so it is refused unless empty.

**Names.** :func:`normalize_name` gives the one form of a speaker name that is stored, looked up
(enroll, rename, remove, clips, verify) and answered (identify, verify, speakers): Unicode NFC,
surrounding whitespace removed, inner runs of whitespace one space; an empty name or one with
control characters is refused. So ``" Anna "`` is ``"Anna"``, and ``"Zoë"`` typed as ``"Zoe"`` and
a combining diaeresis is ``"Zoë"``.

Tables (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` = schema version)::

    meta(key, value)            schema_version, model_source, model_fingerprint, embedding_dim,
                                score ("cosine" or "as-norm"), threshold, threshold_provenance, change_counter
    speakers(id, name UNIQUE, centroid BLOB, created, updated)
    embeddings(id, speaker_id, clip, embedding BLOB, added)     UNIQUE(speaker_id, clip)
    cohort(id, clip UNIQUE, embedding BLOB, added)              (version 3) other speakers, for AS-Norm

Embeddings are little-endian float32 blobs. A speaker's model (``centroid``) is the L2-normalised
mean of its L2-normalised clip embeddings, recomputed from all its clips in the transaction that
adds them. Scores are cosine similarities in [-1, 1]; a probe is accepted when ``score > threshold``
(the convention of :mod:`speech_tl.metrics`).

**AS-Norm.** With a cohort of at least two embeddings of *other* speakers (:meth:`add_cohort`,
``speech-tl speakers cohort``), ``score`` is "as-norm" and identify and verify answer adaptive symmetric
normalised scores: ``((s - mu(e)) / sigma(e) + (s - mu(p)) / sigma(p)) / 2`` for the cosine ``s`` of
centroid ``e`` and probe ``p``, with ``mu``/``sigma`` the mean and deviation of each side's
:data:`DEFAULT_ASNORM_TOP_K` highest cosines to the cohort (:mod:`speech_tl.speaker.scoring`; the
centroids' statistics are cached with the speaker matrix). On real speech this lowered GE2E's EER from
0.114 to 0.091 (Common Voice) and from 0.171 to 0.128 (FSDD; ``recipes/speaker_id/real_speech.py``).
The first cohort sets the threshold to :data:`DEFAULT_ASNORM_THRESHOLD`, a placeholder like the cosine
one; clearing the cohort puts the cosine placeholder back. Calibration then reads the evaluation's
``asnorm`` section (an evaluation run with a cohort).

**The model.** A database remembers the model it was created with: the first :meth:`enroll` records
its source, fingerprint (of the exact weights) and embedding size, and embeddings of any other model
are refused afterwards (:class:`SpeakerRegistryError`), because scores between embeddings of
different models mean nothing.

**The threshold.** A new database starts with :data:`DEFAULT_THRESHOLD` = 0.75, a *placeholder*
that is not calibrated for any model or recording condition. Calibrate it with
:meth:`SpeakerRegistry.calibrate_threshold` from a speaker evaluation of the same model
(``speech-tl speakers calibrate``), or set it with :meth:`SpeakerRegistry.set_threshold`.

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
      }
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
import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import SpeechTlError

SCHEMA_VERSION = 3  # the version this code writes (PRAGMA user_version); _MIGRATIONS brings older ones here
APPLICATION_ID = 0x53706B72  # PRAGMA application_id ("Spkr"): marks the file as a speech-tl speaker database
DEFAULT_MODEL = "ge2e:resemblyzer"  # what `speech-tl enroll` uses for a new database without --model
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
UNKNOWN = "unknown"  # what identify() answers when no speaker reaches the threshold (a reserved name)
BUSY_TIMEOUT_MS = 60_000

_TABLES = {  # our tables and their columns, in order (the same in schema versions 1 and 2)
    "meta": ("key", "value"),
    "speakers": ("id", "name", "centroid", "created", "updated"),
    "embeddings": ("id", "speaker_id", "clip", "embedding", "added"),
}
_COHORT_COLUMNS = ("id", "clip", "embedding", "added")  # schema version 3 on
_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE speakers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    centroid BLOB NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
    clip TEXT NOT NULL,
    embedding BLOB NOT NULL,
    added TEXT NOT NULL,
    UNIQUE (speaker_id, clip)
);
CREATE TABLE cohort (
    id INTEGER PRIMARY KEY,
    clip TEXT NOT NULL UNIQUE,
    embedding BLOB NOT NULL,
    added TEXT NOT NULL
);
"""


class SpeakerRegistryError(SpeechTlError, ValueError):
    """A request the speaker database refuses; the message says why and what to do."""


class ReadOnlyError(SpeakerRegistryError):
    """A change asked of a database opened (or served) read-only (HTTP 403)."""


class UnknownSpeakerError(SpeakerRegistryError):
    """A speaker name that is not enrolled (HTTP 404)."""


class SpeakerConflictError(SpeakerRegistryError):
    """A change that clashes with what the database holds: a clip enrolled twice, a name taken, another
    model (HTTP 409)."""


@dataclass(frozen=True)
class ModelInfo:
    """Identity of an embedding model; an :class:`~speech_tl.speaker.embedder.Embedder` has the same fields."""

    source: str
    fingerprint: str
    dim: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _vector(x, what: str) -> np.ndarray:
    """A torch tensor / array / list -> float32 ``(D,)``; refuses non-finite or all-zero vectors."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float32)
    if v.ndim != 1 or v.size == 0:
        raise SpeakerRegistryError(f"{what}: expected a 1-D embedding, got shape {tuple(v.shape)}")
    if not np.isfinite(v).all():
        raise SpeakerRegistryError(f"{what}: the embedding contains NaN or Inf")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise SpeakerRegistryError(f"{what}: the embedding is all zeros")
    return v / norm


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _unblob(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


# --------------------------------------------------------------------------- names


def normalize_name(name: str) -> str:
    """The one form of a speaker name that the database stores, looks up and answers.

    Unicode NFC (a composed "ë" and "e" + combining diaeresis are the same letter), surrounding
    whitespace removed, inner runs of whitespace one space. Refuses a name that is empty (or all
    whitespace) or holds control characters (tab, newline, ...) inside.
    """
    if not isinstance(name, str):
        raise SpeakerRegistryError(f"a speaker name must be a string, not {type(name).__name__}")
    text = unicodedata.normalize("NFC", name).strip()
    if not text:
        raise SpeakerRegistryError("a speaker name must be a non-empty string")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise SpeakerRegistryError(f"speaker name {text!r} contains control characters")
    return _normal_form(text)


def _normal_form(name: str) -> str:
    """:func:`normalize_name` without its checks, for names an older version stored."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def _new_name(name: str) -> str:
    """A name a speaker may get (enroll, rename): normalised, and not the reserved :data:`UNKNOWN`."""
    name = normalize_name(name)
    if name == UNKNOWN:
        raise SpeakerRegistryError(f"'{UNKNOWN}' is reserved: identify answers it when no speaker matches")
    return name


# --------------------------------------------------------------------------- schema versions


def _mark(conn: sqlite3.Connection, version: int) -> None:
    """Record the schema version in the file (header and meta); inside the caller's transaction."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {int(version)}")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def _migrate_1_to_2(conn: sqlite3.Connection, path: Path) -> None:
    """Speaker names in their normal form (:func:`normalize_name`); refused if two become the same."""
    normal: dict[str, str] = {}
    changed = []
    for sid, name in conn.execute("SELECT id, name FROM speakers ORDER BY id").fetchall():
        new = _normal_form(name)
        if new in normal:
            raise SpeakerRegistryError(
                f"{path}: cannot bring the speaker database to schema version 2: speakers {normal[new]!r} and "
                f"{name!r} are the same name {new!r} once normalised (Unicode NFC, whitespace). Remove or rename "
                "one of them with the speech-tl that wrote the database; until then it can only be opened read-only")
        normal[new] = name
        if new != name:
            changed.append((new, sid))
    conn.executemany("UPDATE speakers SET name = ? WHERE id = ?", changed)
    if changed:  # identify's cached names are stale
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_counter'")


def _migrate_2_to_3(conn: sqlite3.Connection, path: Path) -> None:
    """An (empty) AS-Norm cohort table; scores stay cosine until a cohort is added."""
    conn.execute(_split(_SCHEMA)[-1])


# from version N to N + 1; each step runs inside the one transaction of _migrate
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring a database of schema ``version`` to :data:`SCHEMA_VERSION` inside the caller's transaction."""
    while version < SCHEMA_VERSION:
        _MIGRATIONS[version](conn, path)
        version += 1
        _mark(conn, version)


def _folder_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)  # False on read-only media too (EROFS), even for root


def _needs_immutable(path: Path) -> bool:
    """Whether a read-only open must say ``immutable=1``: a WAL database whose ``-shm`` index SQLite
    cannot create, because the folder is not writable and the ``-wal``/``-shm`` pair is not there.
    Refuses a ``-wal`` file with content but no ``-shm``: an immutable reader would miss its changes."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False  # SQLite's own open says why
    if len(header) < 20 or header[18] != 2:  # the file format's read version: 2 is WAL
        return False
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if (wal.exists() and shm.exists()) or _folder_writable(path.parent):
        return False
    if wal.exists() and wal.stat().st_size > 0:
        raise SpeakerRegistryError(f"{path}: {wal} holds changes not yet written into the database, and SQLite "
                                   f"cannot create {shm.name} in the read-only folder {path.parent} to read them; "
                                   "open the database once where it can be written (any speech-tl command that "
                                   "changes it), or copy it with its -wal file to a writable folder")
    return True


class SpeakerRegistry:
    """Enrolled speakers in one SQLite file; one instance per process (or thread).

    ``create=False`` refuses a path where no database exists yet (every command but ``enroll``).
    ``readonly=True`` opens an existing database without changing it; writes are refused (see the
    module docstring). ``schema_version`` is the file's version as opened: older than
    :data:`SCHEMA_VERSION` only for an older database opened read-only.
    """

    def __init__(self, db_path: str | os.PathLike, create: bool = True, readonly: bool = False):
        self.path = Path(db_path)
        self.readonly = bool(readonly)
        if not self.path.exists():
            if not create or self.readonly:
                raise SpeakerRegistryError(f"{self.path}: no speaker database here; create it with "
                                           f"`speech-tl enroll --db {self.path} --speaker NAME AUDIO...`")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise SpeakerRegistryError(f"{self.path}: is a folder, not a speaker database file")
        self._cache: tuple[int, list[str], np.ndarray, float] | None = None
        self._norm: tuple | None = None  # AS-Norm: (cohort (M, D), top_k, centroid means (N,), stds (N,))
        self.matrix_loads = 0  # how often identify() (re)loaded the speaker matrix; tests read it
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as e:
            raise self._open_error(e) from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            kind, self.schema_version = self._inspect()  # reads only: refuses what is not ours
            if not self.readonly:
                self._prepare(kind)
            elif kind == "empty":
                raise SpeakerRegistryError(f"{self.path}: empty, no speaker database yet; create it with "
                                           f"`speech-tl enroll --db {self.path} --speaker NAME AUDIO...`")
        except BaseException as e:
            self._conn.close()
            if isinstance(e, sqlite3.DatabaseError) and not (isinstance(e, sqlite3.OperationalError)
                                                             and "locked" in str(e)):
                raise self._open_error(e) from None
            raise

    def _open_error(self, e: sqlite3.DatabaseError) -> SpeakerRegistryError:
        """SQLite's refusal while opening, as one line naming the file."""
        if not self.readonly and isinstance(e, sqlite3.OperationalError) and not self.path.exists():
            return SpeakerRegistryError(f"{self.path}: cannot create a speaker database here ({e})")
        if not self.readonly and isinstance(e, sqlite3.OperationalError) and (
                "readonly" in str(e) or not (_folder_writable(self.path.parent) and os.access(self.path, os.W_OK))):
            return SpeakerRegistryError(f"{self.path}: cannot write the speaker database ({e}); commands that only "
                                        "read it (identify, verify, speakers list) open it read-only")
        return SpeakerRegistryError(f"{self.path}: not a usable speaker database ({e})")

    # ------------------------------------------------------------------ connection and schema

    def _connect(self) -> sqlite3.Connection:
        options = {"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None, "check_same_thread": True}
        if not self.readonly:
            return sqlite3.connect(str(self.path), **options)
        uri = self.path.resolve().as_uri() + "?mode=ro"  # as_uri() escapes '?', '#' and '%' in the path
        if _needs_immutable(self.path):
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, **options)

    def _inspect(self) -> tuple[str, int]:
        """What the file holds, found by reading only: ``("empty", 0)`` or ``("ours", schema version)``.

        Refuses anything else: not SQLite (SQLite's error, turned into ours by ``__init__``),
        another program's database, a newer schema version, a damaged speaker database.
        """
        c = self._conn
        if not c.in_transaction:  # header and table list from one snapshot: a file another process is creating
            with self._read():  # must not be seen half made (its tables, but not yet its application id)
                return self._inspect()
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        objects = sorted(n for (n,) in c.execute("SELECT name FROM sqlite_master") if not n.startswith("sqlite_"))
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise SpeakerRegistryError(
                    f"{self.path}: a speaker database of schema version {version}, written by a newer speech-tl; "
                    f"this one reads schema versions up to {SCHEMA_VERSION}: upgrade speech-tl to use it")
            if version < 2 or not self._has_our_tables() or (version >= 3 and not self._has_cohort_table()):
                raise SpeakerRegistryError(f"{self.path}: not a usable speaker database: marked as one (schema "
                                           f"version {version}), but its tables are not ({', '.join(objects)}); "
                                           "it may be damaged")
            return "ours", version
        if app_id == 0 and version == 0:
            if not objects:
                return "empty", 0
            if objects == sorted(_TABLES) and self._has_our_tables() and self._schema_v1_in_meta():
                return "ours", 1
        listed = ", ".join(objects[:10]) + (", ..." if len(objects) > 10 else "") if objects else "none"
        marker = f"application id {app_id:#x}, " if app_id else ""
        raise SpeakerRegistryError(f"{self.path}: not a usable speaker database: an SQLite database of something "
                                   f"else ({marker}user_version {version}, tables and indexes: {listed}); left as it "
                                   "is. Use a new file for the speaker database")

    def _has_cohort_table(self) -> bool:
        return tuple(row[1] for row in self._conn.execute("PRAGMA table_info(cohort)")) == _COHORT_COLUMNS

    def _has_our_tables(self) -> bool:
        return all(tuple(row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")) == columns
                   for table, columns in _TABLES.items())

    def _schema_v1_in_meta(self) -> bool:
        """Version 1 wrote no version into the header, only ``schema_version`` "1" into ``meta``."""
        return self._meta_value("schema_version") == "1"

    def _prepare(self, kind: str) -> None:
        """Ready for writing: WAL mode, and a new or older database brought to :data:`SCHEMA_VERSION`."""
        self._set_wal()
        if kind == "ours" and self.schema_version == SCHEMA_VERSION:
            return
        with self._write():
            kind, version = self._inspect()  # again under the write lock: another process may have done it
            if kind == "empty":
                for statement in _split(_SCHEMA):  # not executescript(): it would commit on its own
                    self._conn.execute(statement)
                defaults = {"schema_version": str(SCHEMA_VERSION), "score": "cosine",
                            "threshold": repr(DEFAULT_THRESHOLD), "threshold_provenance": DEFAULT_PROVENANCE,
                            "change_counter": "0"}
                self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", defaults.items())
                _mark(self._conn, SCHEMA_VERSION)
            else:
                _migrate(self._conn, self.path, version)
        self.schema_version = SCHEMA_VERSION

    def _set_wal(self) -> None:
        if str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        # switching the journal mode needs a moment without other connections; a new file opened by
        # several processes at once can see SQLITE_BUSY here without the busy handler being called
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise SpeakerRegistryError(f"{self.path}: SQLite could not switch to WAL mode (got {mode!r}); "
                                       "is the file on a network file system?")

    def _meta_value(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    class _Txn:
        def __init__(self, conn: sqlite3.Connection, mode: str):
            self.conn, self.mode = conn, mode

        def __enter__(self):
            self.conn.execute(f"BEGIN {self.mode}")
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                    return False
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            return False

    def _write(self) -> SpeakerRegistry._Txn:
        """A write transaction: takes the write lock at once (waiting up to busy_timeout), commits or rolls back."""
        if self.readonly:
            raise ReadOnlyError(f"{self.path} is open read-only: it cannot be changed (open it without "
                                       "readonly=True, where it can be written)")
        return self._Txn(self._conn, "IMMEDIATE")

    def _read(self) -> SpeakerRegistry._Txn:
        """A read transaction: one consistent snapshot of the database."""
        return self._Txn(self._conn, "DEFERRED")

    def _bump(self) -> None:
        """Every write transaction ends by bumping the change counter (identify's cache key)."""
        self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_counter'")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SpeakerRegistry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ model and threshold

    def meta(self) -> dict:
        """``model_source``, ``model_fingerprint``, ``embedding_dim`` (None before the first enroll),
        ``score``, ``threshold``, ``threshold_provenance``, ``schema_version``, ``change_counter``."""
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return {
            "model_source": rows.get("model_source"),
            "model_fingerprint": rows.get("model_fingerprint"),
            "embedding_dim": int(rows["embedding_dim"]) if rows.get("embedding_dim") else None,
            "score": rows.get("score", "cosine"),
            "threshold": float(rows["threshold"]),
            "threshold_provenance": rows.get("threshold_provenance"),
            "schema_version": int(rows["schema_version"]),
            "change_counter": int(rows["change_counter"]),
        }

    @property
    def model(self) -> ModelInfo | None:
        """The model this database was created with (None before the first enroll)."""
        m = self.meta()
        if m["model_fingerprint"] is None:
            return None
        return ModelInfo(m["model_source"], m["model_fingerprint"], m["embedding_dim"])

    @property
    def threshold(self) -> float:
        return self.meta()["threshold"]

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
            thresholds, far = self._calibration_arrays(shown, results)
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

    @staticmethod
    def _calibration_arrays(shown: str, results: dict) -> tuple[np.ndarray, np.ndarray]:
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
        name = _new_name(name)
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
        vecs = [_vector(e, c) for e, c in zip(embeddings, clips, strict=True)]
        dim = int(model.dim)
        if any(v.size != dim for v in vecs):
            bad = next(c for v, c in zip(vecs, clips, strict=True) if v.size != dim)
            raise SpeakerRegistryError(f"{bad}: embedding of size {vecs[clips.index(bad)].size}, "
                                       f"model {model.source} gives {dim}")
        now = _now()
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
                                (name, b"", now, now)).lastrowid
            else:
                sid = row[0]
                placeholders = ",".join("?" * len(clips))
                old = [r[0] for r in c.execute(f"SELECT clip FROM embeddings WHERE speaker_id = ? AND clip IN "
                                               f"({placeholders})", (sid, *clips))]
                if old:
                    raise SpeakerConflictError(f"already enrolled for speaker '{name}': {', '.join(old)}")
            c.executemany("INSERT INTO embeddings (speaker_id, clip, embedding, added) VALUES (?, ?, ?, ?)",
                          [(sid, clip, _blob(v), now) for clip, v in zip(clips, vecs, strict=True)])
            n = self._update_centroid(sid, now)
            self._bump()
        return {"speaker": name, "created": created, "added": len(clips), "n_clips": n}

    def _update_centroid(self, sid: int, now: str) -> int:
        rows = self._conn.execute("SELECT embedding FROM embeddings WHERE speaker_id = ?", (sid,)).fetchall()
        mean = np.stack([_unblob(r[0]) for r in rows]).astype(np.float64).mean(0)
        centroid = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        self._conn.execute("UPDATE speakers SET centroid = ?, updated = ? WHERE id = ?", (_blob(centroid), now, sid))
        return len(rows)

    def speakers(self) -> list[tuple[str, int, str]]:
        """``[(name, n_clips, created)]`` sorted by name; ``created`` is an ISO 8601 UTC time."""
        return [(_normal_form(n), int(k), cr) for n, k, cr in self._conn.execute(
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
                        if _normal_form(stored) == name), None)
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
        old, new = normalize_name(old), _new_name(new)
        with self._write() as c:
            sid = self._speaker_id(old)
            if c.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone():
                raise SpeakerConflictError(f"speaker '{new}' already exists in {self.path}; remove it first "
                                           "or pick another name")
            c.execute("UPDATE speakers SET name = ?, updated = ? WHERE id = ?", (new, _now(), sid))
            self._bump()

    # ------------------------------------------------------------------ AS-Norm cohort

    def add_cohort(self, embeddings: list, clips: list[str], model) -> dict:
        """Add embeddings of *other* speakers (never enrolled ones) to the AS-Norm cohort, in one transaction.

        From 2 cohort embeddings on, identify and verify answer AS-Norm scores (adaptive symmetric score
        normalisation against the :data:`DEFAULT_ASNORM_TOP_K` closest cohort embeddings of each side);
        when scoring switches from cosine, the threshold becomes :data:`DEFAULT_ASNORM_THRESHOLD`, a
        placeholder to calibrate. ``model`` must be the database's. Returns ``{"added", "cohort_size",
        "score", "threshold"}``.
        """
        clips = [str(c) for c in clips]
        if len(embeddings) != len(clips) or not clips:
            raise SpeakerRegistryError(f"{len(embeddings)} embeddings for {len(clips)} cohort clips")
        vecs = [_vector(e, c) for e, c in zip(embeddings, clips, strict=True)]
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
            now = _now()
            c.executemany("INSERT INTO cohort (clip, embedding, added) VALUES (?, ?, ?)",
                          [(clip, _blob(v), now) for clip, v in zip(clips, vecs, strict=True)])
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

    def _set_scoring(self, score: str, threshold: float, provenance: str) -> None:
        """Inside a write transaction: another score, and the threshold that goes with it."""
        self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [("score", score), ("threshold", repr(threshold)),
                                ("threshold_provenance", provenance)])

    # ------------------------------------------------------------------ scoring

    def _matrix(self) -> tuple[list[str], np.ndarray, float]:
        """Names, ``(N, D)`` centroids and threshold, reloaded only when the change counter moved; with a
        cohort, also its ``(M, D)`` matrix and each centroid's AS-Norm statistics."""
        counter = int(self._meta_value("change_counter"))
        if self._cache is not None and self._cache[0] == counter:
            return self._cache[1], self._cache[2], self._cache[3]
        with self._read() as c:  # counter and rows from one snapshot
            counter = int(c.execute("SELECT value FROM meta WHERE key = 'change_counter'").fetchone()[0])
            threshold = float(c.execute("SELECT value FROM meta WHERE key = 'threshold'").fetchone()[0])
            rows = c.execute("SELECT name, centroid FROM speakers ORDER BY id").fetchall()
            score = c.execute("SELECT value FROM meta WHERE key = 'score'").fetchone()
            as_norm = bool(score) and score[0] == "as-norm"
            version = c.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated it since
            cohort_rows = c.execute("SELECT embedding FROM cohort ORDER BY id").fetchall() if as_norm and \
                version >= 3 else []
        if as_norm and len(cohort_rows) < 2:  # never cosine scores against an AS-Norm threshold
            raise SpeakerRegistryError(f"{self.path} scores with AS-Norm but its cohort could not be read; open it "
                                       "again")
        names = [_normal_form(r[0]) for r in rows]
        matrix = np.stack([_unblob(r[1]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        self._norm = None
        if len(cohort_rows) >= 2:
            from .scoring import cohort_stats

            cohort = np.stack([_unblob(r[0]) for r in cohort_rows])
            k = min(DEFAULT_ASNORM_TOP_K, cohort.shape[0])
            stats = cohort_stats(matrix, cohort, k) if rows else (np.zeros(0), np.ones(0))
            self._norm = (cohort, k, stats[0], stats[1])
        self._cache = (counter, names, matrix, threshold)
        self.matrix_loads += 1
        return names, matrix, threshold

    def _scores(self, v: np.ndarray, raw: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Cosine scores ``raw`` of probe ``v`` against centroids ``rows``, AS-Norm'ed when there is a cohort."""
        if self._norm is None:
            return raw
        from .scoring import cohort_stats

        cohort, k, mean_e, std_e = self._norm
        mean_t, std_t = cohort_stats(v[None, :], cohort, k)
        return 0.5 * ((raw - mean_e[rows]) / std_e[rows] + (raw - mean_t[0]) / std_t[0])

    def _probe(self, embedding, model) -> np.ndarray:
        have = self.model
        if have is None:
            raise SpeakerRegistryError(f"no speakers enrolled in {self.path} yet; enroll some with `speech-tl enroll`")
        if model is not None and (msg := self._mismatch(have, model)):
            raise SpeakerRegistryError(msg)
        v = _vector(embedding, "probe")
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


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
