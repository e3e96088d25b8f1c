"""Embeddings as the database stores them, and the identity of the model that made them.

Embeddings are little-endian float32 blobs, L2-normalised before they are stored; a non-finite or
all-zero vector is refused, naming the clip it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from .errors import SpeakerRegistryError


@dataclass(frozen=True)
class ModelInfo:
    """Identity of an embedding model; an :class:`~speech_tl.speaker.embedder.Embedder` has the same fields."""

    source: str
    fingerprint: str
    dim: int


def now() -> str:
    """The current time as stored: ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def unit_vector(x, what: str) -> np.ndarray:
    """A torch tensor / array / list -> L2-normalised float32 ``(D,)``; refuses non-finite or all-zero vectors."""
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


def to_blob(v: np.ndarray) -> bytes:
    """``(D,)`` -> little-endian float32 bytes."""
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def from_blob(b: bytes) -> np.ndarray:
    """Little-endian float32 bytes -> float32 ``(D,)``."""
    return np.frombuffer(b, dtype="<f4").astype(np.float32)
