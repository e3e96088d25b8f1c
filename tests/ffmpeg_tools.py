"""ffmpeg in the tests: real AAC files (``.m4a``, ``.aac``, ``.mp4``) encoded by the ffmpeg command from WAV files
written with soundfile, and a ``$PATH`` without ffmpeg to try the message a machine without it gets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
requires_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg is not installed (apt install ffmpeg; `make "
                                     "system-deps` installs it): AAC files cannot be made or decoded")


def encode(src: Path, dst: Path, *args: str) -> Path:
    """``src`` (any audio ffmpeg reads) encoded by ffmpeg as ``dst``, AAC at 128 kbit/s unless ``args`` say else;
    the container follows ``dst``'s suffix (``.m4a``/``.mp4``: MP4, ``.aac``: ADTS)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "128k", *args,
                    str(dst)], check=True)
    return dst


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Signal-to-noise ratio of ``decoded`` against ``reference`` (same shape), in dB."""
    reference, decoded = np.asarray(reference, np.float64), np.asarray(decoded, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - decoded) ** 2), 1e-20)))


@pytest.fixture
def no_ffmpeg(tmp_path_factory, monkeypatch) -> Path:
    """``$PATH`` is an empty folder for the test: ffmpeg and ffprobe are not found, as on a machine without them."""
    empty = tmp_path_factory.mktemp("path-without-ffmpeg")
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None and shutil.which("ffprobe") is None
    return empty
