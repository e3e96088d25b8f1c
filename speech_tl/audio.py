"""Reading and checking audio.

Everything goes through ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus and MP3),
is downmixed to mono and resampled with ``torchaudio.functional.resample``.

Shapes: a waveform is a 1-D float32 tensor ``(samples,)`` in [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .errors import InputError, SpeechTlError

TARGET_SAMPLE_RATE = 16000
SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
MAX_SECONDS_ENV = "SPEECH_TL_MAX_AUDIO_SECONDS"
DEFAULT_MAX_SECONDS = 3 * 3600.0  # 3 h at 48 kHz stereo is 4 GB of float32: more is a mistake, not a clip


def max_decode_seconds() -> float:
    """The longest span :func:`read_audio` decodes in one piece: ``$SPEECH_TL_MAX_AUDIO_SECONDS`` or 3 hours."""
    raw = os.environ.get(MAX_SECONDS_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_MAX_SECONDS
    except ValueError:
        raise InputError(f"${MAX_SECONDS_ENV}={raw!r}: expected a number of seconds (or unset it for "
                         f"{DEFAULT_MAX_SECONDS:g} s)") from None
    if not value > 0:
        raise InputError(f"${MAX_SECONDS_ENV}={raw!r}: expected a positive number of seconds (or unset it for "
                         f"{DEFAULT_MAX_SECONDS:g} s)")
    return value


class AudioError(SpeechTlError, ValueError):
    """Audio that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says."""

    sample_rate: int
    frames: int
    channels: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of an audio file (no decoding for WAV/FLAC).

    Raises :class:`AudioError` for a missing, unreadable or corrupt file, and for
    formats libsndfile cannot read (m4a/aac: convert them first).
    """
    path = Path(path)
    if path.suffix.lower() in (".m4a", ".aac", ".mp4"):
        raise AudioError(path, "m4a/aac audio cannot be read by soundfile",
                         "convert it first, e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav`")
    if not path.exists():
        raise AudioError(path, "file not found")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioError(path, f"unreadable or corrupt audio ({_short(e)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "empty audio (no samples)")
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels),
                     format=str(info.format))


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[-1] if msg else type(e).__name__


def read_audio(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None
               ) -> tuple[np.ndarray, int]:
    """Decode (a segment of) a file as float32 ``(samples, channels)`` and its sample rate.

    The span to decode is checked against :func:`max_decode_seconds` from the header first, so a multi-hour
    file in a manifest is an error naming it, not a machine out of memory.
    """
    path = Path(path)
    info = audio_info(path)  # uniform errors for missing/unsupported files
    span = info.duration - offset if duration is None else min(duration, info.duration - offset)
    limit = max_decode_seconds()
    if span > limit:
        raise AudioError(path, f"{span:.0f} s of audio to decode at once, more than the limit of {limit:.0f} s",
                         "cut it into pieces, or give segments with offset and duration in the manifest, or raise "
                         f"the limit with ${MAX_SECONDS_ENV}")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start >= f.frames > 0:  # seeking past the end fails in libsndfile with a confusing message
                raise AudioError(path, f"no samples at offset {offset:g} s",
                                 f"the file lasts {f.frames / sr:.2f} s")
            if start:
                f.seek(start)
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(path, f"unreadable or corrupt audio ({_short(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (no samples)" if not offset else
                         f"no samples at offset {offset:g} s")
    return data, sr


def to_mono(data: np.ndarray) -> np.ndarray:
    """Downmix ``(samples, channels)`` to ``(samples,)`` by averaging channels."""
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int = TARGET_SAMPLE_RATE) -> torch.Tensor:
    """Resample ``(..., samples)`` with torchaudio's band-limited sinc interpolation."""
    if orig_sr == new_sr:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, orig_sr, new_sr)


def load_audio(path: str | os.PathLike, sample_rate: int = TARGET_SAMPLE_RATE, offset: float = 0.0,
               duration: float | None = None) -> torch.Tensor:
    """Load a file as a mono float32 waveform ``(samples,)`` at ``sample_rate`` Hz."""
    data, sr = read_audio(path, offset, duration)
    wave = torch.from_numpy(np.ascontiguousarray(to_mono(data)))
    return resample(wave, sr, sample_rate)


@dataclass(frozen=True)
class AudioChecks:
    """Thresholds for :func:`check_waveform`; the defaults suit speech."""

    min_duration: float = 0.1
    silence_peak: float = 1e-4  # peak amplitude under which a clip counts as all silence
    clip_level: float = 0.999  # |sample| at or above this counts as clipped
    max_clipped_fraction: float = 0.01  # "heavy clipping": more than 1% of samples clipped


def check_waveform(wave: torch.Tensor | np.ndarray, sample_rate: int, path: str | os.PathLike = "<audio>",
                   checks: AudioChecks = AudioChecks()) -> None:
    """Raise :class:`AudioError` if a waveform is empty, too short, NaN/Inf, silent or heavily clipped."""
    x = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
    if x.numel() == 0:
        raise AudioError(path, "empty audio (no samples)")
    if not torch.isfinite(x).all():
        raise AudioError(path, "contains NaN or Inf samples", "the file is damaged; re-export it")
    seconds = x.numel() / sample_rate
    if seconds < checks.min_duration:
        raise AudioError(path, f"too short: {seconds:.3f} s, at least {checks.min_duration:g} s needed")
    peak = float(x.abs().max())
    if peak < checks.silence_peak:
        raise AudioError(path, f"all silence (peak amplitude {peak:.1e})", "check the recording level")
    clipped = float((x.abs() >= checks.clip_level).float().mean())
    if clipped > checks.max_clipped_fraction:
        raise AudioError(path, f"heavily clipped: {clipped:.1%} of samples at full scale",
                         "record again with lower gain")


def load_checked(path: str | os.PathLike, sample_rate: int = TARGET_SAMPLE_RATE,
                 checks: AudioChecks = AudioChecks(), offset: float = 0.0,
                 duration: float | None = None) -> torch.Tensor:
    """:func:`load_audio` followed by :func:`check_waveform` (clipping is judged before resampling)."""
    data, sr = read_audio(path, offset, duration)
    mono = to_mono(data)
    check_waveform(mono, sr, path, checks)
    return resample(torch.from_numpy(np.ascontiguousarray(mono)), sr, sample_rate)


def write_audio(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int,
                subtype: str | None = None) -> None:
    """Write a mono waveform atomically (temporary file + rename); format from the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, f"cannot write format '{path.suffix}'", "use .wav, .flac, .ogg or .mp3")
    if subtype is None:
        subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    try:
        sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
