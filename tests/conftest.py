"""Shared fixtures: tiny real audio files written with soundfile into tmp_path.

A test that needs GE2E's pretrained weights is reported as skipped, with the error that names the command that
fetches them, when they are neither fetched nor installed (a pip-only set-up; `make venv` fetches them): the test
raised ``WeightsMissing``, or failed with its message (a command's exit code, an unexpected error) while the weights
are indeed missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_tl.backbones.ge2e import FETCH_COMMAND, WeightsMissing, resemblyzer_weights

SR = 16000
WEIGHTS_MISSING = "GE2E's pretrained weights are not here"  # the start of WeightsMissing's message


def ge2e_weights_missing() -> bool:
    try:
        resemblyzer_weights()
    except WeightsMissing:
        return True
    return False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or report.skipped:
        return
    if call.excinfo.errisinstance(WeightsMissing) or (WEIGHTS_MISSING in str(call.excinfo.value)
                                                      and ge2e_weights_missing()):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] + 1,
                           f"Skipped: GE2E's pretrained weights are missing: `{FETCH_COMMAND}` fetches them")


def tone(seconds: float = 0.5, sr: int = SR, freq: float = 220.0, amp: float = 0.3, channels: int = 1,
         seed: int = 0) -> np.ndarray:
    """A sine with a little noise, ``(samples,)`` or ``(samples, channels)`` float32."""
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    x = x.astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_tone(path: Path, seconds: float = 0.5, sr: int = SR, fmt: str | None = None, **kw) -> Path:
    """Write :func:`tone` to ``path``; the format follows the suffix (wav, flac, ogg, mp3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix.lower()]
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    sf.write(str(path), tone(seconds, sr, **kw), sr, format=fmt, subtype=subtype)
    return path


@pytest.fixture
def make_tone():
    """``make_tone(path, seconds=0.5, sr=16000, ...)`` writes a real audio file and returns its path."""
    return write_tone


from tests.ffmpeg_tools import no_ffmpeg  # noqa: E402,F401  (a $PATH without ffmpeg, for its error message)
from tests.tiny_asr import tiny_whisper, tone_corpus  # noqa: E402,F401  (fixtures shared by ASR and training tests)
from tests.tiny_speakers import pitch_speakers  # noqa: E402,F401  (fixture shared by speaker tests)
