"""What the speaker database refuses, as exceptions the service maps to HTTP statuses."""

from __future__ import annotations

from ...errors import SpeechTlError


class SpeakerRegistryError(SpeechTlError, ValueError):
    """A request the speaker database refuses; the message says why and what to do."""


class ReadOnlyError(SpeakerRegistryError):
    """A change asked of a database opened (or served) read-only (HTTP 403)."""


class UnknownSpeakerError(SpeakerRegistryError):
    """A speaker name that is not enrolled (HTTP 404)."""


class SpeakerConflictError(SpeakerRegistryError):
    """A change that clashes with what the database holds: a clip enrolled twice, a name taken, another
    model (HTTP 409)."""
