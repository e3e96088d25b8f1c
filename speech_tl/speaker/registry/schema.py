"""The speaker database's file format: which files are ours, the tables, schema versions and migrations.

**Opening a file changes nothing until the file is recognised.** :func:`inspect_file` reads the file's
header and table list only, and accepts

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
opened for writing is migrated in place by :func:`migrate`, every step inside the caller's one
transaction (all or nothing); a newer one is refused with a message to upgrade speech-tl. Version 2
(from 1): speaker names in their normal form (:mod:`.names`; if two names of a version 1 database
become the same, the migration is refused, naming them) and the file marked with the application id
and ``user_version``. Version 3 (from 2): the ``cohort`` table for AS-Norm (empty: scores stay cosine).

Tables (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` = schema version)::

    meta(key, value)            schema_version, model_source, model_fingerprint, embedding_dim,
                                score ("cosine" or "as-norm"), threshold, threshold_provenance, change_counter
    speakers(id, name UNIQUE, centroid BLOB, created, updated)
    embeddings(id, speaker_id, clip, embedding BLOB, added)     UNIQUE(speaker_id, clip)
    cohort(id, clip UNIQUE, embedding BLOB, added)              (version 3) other speakers, for AS-Norm
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from .errors import SpeakerRegistryError
from .names import normal_form
from .thresholds import DEFAULT_PROVENANCE, DEFAULT_THRESHOLD

SCHEMA_VERSION = 3  # the version this code writes (PRAGMA user_version); _MIGRATIONS brings older ones here
APPLICATION_ID = 0x53706B72  # PRAGMA application_id ("Spkr"): marks the file as a speech-tl speaker database

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


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))


def has_our_tables(conn: sqlite3.Connection) -> bool:
    return all(_columns(conn, table) == columns for table, columns in _TABLES.items())


def has_cohort_table(conn: sqlite3.Connection) -> bool:
    return _columns(conn, "cohort") == _COHORT_COLUMNS


def _schema_v1_in_meta(conn: sqlite3.Connection) -> bool:
    """Version 1 wrote no version into the header, only ``schema_version`` "1" into ``meta``."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row is not None and row[0] == "1"


def inspect_file(conn: sqlite3.Connection, path: Path) -> tuple[str, int]:
    """What the file holds, found by reading only, inside the caller's (read) transaction: ``("empty", 0)``
    or ``("ours", schema version)``.

    Refuses anything else: another program's database, a newer schema version, a damaged speaker
    database. (A file that is not SQLite fails in SQLite itself; the registry turns that into ours.)
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    objects = sorted(n for (n,) in conn.execute("SELECT name FROM sqlite_master") if not n.startswith("sqlite_"))
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise SpeakerRegistryError(
                f"{path}: a speaker database of schema version {version}, written by a newer speech-tl; "
                f"this one reads schema versions up to {SCHEMA_VERSION}: upgrade speech-tl to use it")
        if version < 2 or not has_our_tables(conn) or (version >= 3 and not has_cohort_table(conn)):
            raise SpeakerRegistryError(f"{path}: not a usable speaker database: marked as one (schema "
                                       f"version {version}), but its tables are not ({', '.join(objects)}); "
                                       "it may be damaged")
        return "ours", version
    if app_id == 0 and version == 0:
        if not objects:
            return "empty", 0
        if objects == sorted(_TABLES) and has_our_tables(conn) and _schema_v1_in_meta(conn):
            return "ours", 1
    listed = ", ".join(objects[:10]) + (", ..." if len(objects) > 10 else "") if objects else "none"
    marker = f"application id {app_id:#x}, " if app_id else ""
    raise SpeakerRegistryError(f"{path}: not a usable speaker database: an SQLite database of something "
                               f"else ({marker}user_version {version}, tables and indexes: {listed}); left as it "
                               "is. Use a new file for the speaker database")


def create_tables(conn: sqlite3.Connection) -> None:
    """Make an empty file a speaker database of :data:`SCHEMA_VERSION`, inside the caller's transaction."""
    for statement in _split(_SCHEMA):  # not executescript(): it would commit on its own
        conn.execute(statement)
    defaults = {"schema_version": str(SCHEMA_VERSION), "score": "cosine", "threshold": repr(DEFAULT_THRESHOLD),
                "threshold_provenance": DEFAULT_PROVENANCE, "change_counter": "0"}
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", defaults.items())
    _mark(conn, SCHEMA_VERSION)


def _mark(conn: sqlite3.Connection, version: int) -> None:
    """Record the schema version in the file (header and meta); inside the caller's transaction."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {int(version)}")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))


def _migrate_1_to_2(conn: sqlite3.Connection, path: Path) -> None:
    """Speaker names in their normal form (:func:`.names.normalize_name`); refused if two become the same."""
    normal: dict[str, str] = {}
    changed = []
    for sid, name in conn.execute("SELECT id, name FROM speakers ORDER BY id").fetchall():
        new = normal_form(name)
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


# from version N to N + 1; each step runs inside the one transaction of migrate()
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring a database of schema ``version`` to :data:`SCHEMA_VERSION` inside the caller's transaction."""
    while version < SCHEMA_VERSION:
        _MIGRATIONS[version](conn, path)
        version += 1
        _mark(conn, version)
