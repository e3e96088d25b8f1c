"""Speaker enrollment database: enroll voices, then identify (who is it?) or verify (is it X?).

One SQLite file, safe for several processes at once. Each guarantee is explained where it is made:

- :mod:`.connection`: WAL mode, one transaction per change (all or nothing), busy waiting instead of
  "database is locked", read-only opening (``immutable=1`` on read-only media);
- :mod:`.schema`: which files are accepted (anything else is refused and left byte for byte as it
  was), the tables, schema versions and in-place migrations;
- :mod:`.names`: the one normal form of a speaker name, and the reserved ``"unknown"``;
- :mod:`.vectors`: embeddings as stored (L2-normalised little-endian float32) and the model's identity;
- :mod:`.store`: :class:`SpeakerRegistry`, the API: one model per database, enrolling (centroids),
  renaming, removing;
- :mod:`.identify`: identify and verify, and the cached speaker matrix;
- :mod:`.thresholds`: the decision threshold: from the enrolled clips themselves (leave-one-out trials) once
  there are enough, else the model's shipped calibration, else a placeholder; or set by a user (calibration from
  an evaluation), and where it came from (``threshold_origin``);
- :mod:`.cohort`: the AS-Norm cohort.

Scores are cosine similarities in [-1, 1] (AS-Norm scores with a cohort); a probe is accepted when
``score > threshold`` (the convention of :mod:`speech_tl.metrics`).
"""

from __future__ import annotations

from .connection import BUSY_TIMEOUT_MS, _folder_writable
from .errors import ReadOnlyError, SpeakerConflictError, SpeakerRegistryError, UnknownSpeakerError
from .names import UNKNOWN, normalize_name
from .schema import _MIGRATIONS, APPLICATION_ID, SCHEMA_VERSION
from .store import DEFAULT_MODEL, SpeakerRegistry
from .thresholds import (
    DEFAULT_ASNORM_PROVENANCE,
    DEFAULT_ASNORM_THRESHOLD,
    DEFAULT_ASNORM_TOP_K,
    DEFAULT_PROVENANCE,
    DEFAULT_THRESHOLD,
)
from .vectors import ModelInfo

__all__ = [
    "APPLICATION_ID", "BUSY_TIMEOUT_MS", "DEFAULT_ASNORM_PROVENANCE", "DEFAULT_ASNORM_THRESHOLD",
    "DEFAULT_ASNORM_TOP_K", "DEFAULT_MODEL", "DEFAULT_PROVENANCE", "DEFAULT_THRESHOLD", "SCHEMA_VERSION", "UNKNOWN",
    "_MIGRATIONS", "_folder_writable", "ModelInfo", "ReadOnlyError", "SpeakerConflictError", "SpeakerRegistry",
    "SpeakerRegistryError", "UnknownSpeakerError", "normalize_name",
]
