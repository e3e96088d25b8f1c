"""Opening the speaker database's one SQLite file, and the transactions every change runs in.

One SQLite file in WAL mode, safe for several processes enrolling and identifying at once: every
write is one ``BEGIN IMMEDIATE`` transaction (:meth:`Database._write`: it either happens completely or
not at all), readers never block writers, and a ``busy_timeout`` makes concurrent writers wait for
each other instead of failing with "database is locked". Every write transaction ends by bumping the
``change_counter`` in ``meta``, which is the key of identify's cached speaker matrix.

Opening reads the file first (:func:`.schema.inspect_file`) and changes nothing until the file is
recognised; only then is it switched to WAL and, if older, migrated.

**Read-only.** ``readonly=True`` (identify, verify and ``speakers list`` at the command line) opens
the file through the URI ``file:...?mode=ro``: no WAL switch, no migration (an older database is read
as it is), and every write is refused (:class:`ReadOnlyError`). Reading a WAL database needs its
``-shm`` index file; SQLite creates it, and an empty ``-wal``, beside the database (a read-only
connection leaves both there). Where it cannot (the folder is not writable: read-only media, or
permissions) and the ``-wal``/``-shm`` pair is not there, the file is opened with ``immutable=1``:
SQLite reads it without locks and assumes that no one changes it meanwhile. A ``-wal`` file there
without its ``-shm`` may hold changes not yet copied into the database, which an immutable reader
would miss, so it is refused unless empty.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from .errors import ReadOnlyError, SpeakerRegistryError
from .schema import SCHEMA_VERSION, create_tables, inspect_file, migrate

BUSY_TIMEOUT_MS = 60_000


def _folder_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)  # False on read-only media too (EROFS), even for root


def _writable(folder: Path) -> bool:
    """:func:`_folder_writable` as the package exports it: ``speech_tl.speaker.registry._folder_writable`` is
    the seam through which tests simulate a read-only folder as root (who writes anywhere)."""
    from . import _folder_writable as writable

    return writable(folder)


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
    if (wal.exists() and shm.exists()) or _writable(path.parent):
        return False
    if wal.exists() and wal.stat().st_size > 0:
        raise SpeakerRegistryError(f"{path}: {wal} holds changes not yet written into the database, and SQLite "
                                   f"cannot create {shm.name} in the read-only folder {path.parent} to read them; "
                                   "open the database once where it can be written (any speech-tl command that "
                                   "changes it), or copy it with its -wal file to a writable folder")
    return True


class _Txn:
    """``with``: ``BEGIN <mode>`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (a failed commit too)."""

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


class Database:
    """The open file: recognised, in WAL mode and at :data:`.schema.SCHEMA_VERSION` unless read-only.

    ``create=False`` refuses a path where no database exists yet. ``schema_version`` is the file's
    version as opened: older than :data:`.schema.SCHEMA_VERSION` only for an older database opened
    read-only.
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
                "readonly" in str(e) or not (_writable(self.path.parent) and os.access(self.path, os.W_OK))):
            return SpeakerRegistryError(f"{self.path}: cannot write the speaker database ({e}); commands that only "
                                        "read it (identify, verify, speakers list) open it read-only")
        return SpeakerRegistryError(f"{self.path}: not a usable speaker database ({e})")

    def _connect(self) -> sqlite3.Connection:
        options = {"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None, "check_same_thread": True}
        if not self.readonly:
            return sqlite3.connect(str(self.path), **options)
        uri = self.path.resolve().as_uri() + "?mode=ro"  # as_uri() escapes '?', '#' and '%' in the path
        if _needs_immutable(self.path):
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, **options)

    def _inspect(self) -> tuple[str, int]:
        """:func:`.schema.inspect_file` on one snapshot: a file another process is creating must not be seen
        half made (its tables, but not yet its application id)."""
        if self._conn.in_transaction:
            return inspect_file(self._conn, self.path)
        with self._read():
            return inspect_file(self._conn, self.path)

    def _prepare(self, kind: str) -> None:
        """Ready for writing: WAL mode, and a new or older database brought to :data:`.schema.SCHEMA_VERSION`."""
        self._set_wal()
        if kind == "ours" and self.schema_version == SCHEMA_VERSION:
            return
        with self._write():
            kind, version = self._inspect()  # again under the write lock: another process may have done it
            if kind == "empty":
                create_tables(self._conn)
            else:
                migrate(self._conn, self.path, version)
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

    def _write(self) -> _Txn:
        """A write transaction: takes the write lock at once (waiting up to busy_timeout), commits or rolls back."""
        if self.readonly:
            raise ReadOnlyError(f"{self.path} is open read-only: it cannot be changed (open it without "
                                "readonly=True, where it can be written)")
        return _Txn(self._conn, "IMMEDIATE")

    def _read(self) -> _Txn:
        """A read transaction: one consistent snapshot of the database."""
        return _Txn(self._conn, "DEFERRED")

    def _bump(self) -> None:
        """Every write transaction ends by bumping the change counter (identify's cache key)."""
        self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_counter'")

    def _stored_meta(self) -> dict:
        """The ``meta`` table as stored: ``model_source``, ``model_fingerprint``, ``embedding_dim`` (None before the
        first enroll), ``score``, ``threshold``, ``threshold_provenance``, ``threshold_origin`` (None: see
        :func:`.thresholds.origin_of`), ``schema_version``, ``change_counter``."""
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return {
            "model_source": rows.get("model_source"),
            "model_fingerprint": rows.get("model_fingerprint"),
            "embedding_dim": int(rows["embedding_dim"]) if rows.get("embedding_dim") else None,
            "score": rows.get("score", "cosine"),
            "threshold": float(rows["threshold"]),
            "threshold_provenance": rows.get("threshold_provenance"),
            "threshold_origin": rows.get("threshold_origin"),
            "schema_version": int(rows["schema_version"]),
            "change_counter": int(rows["change_counter"]),
        }

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
