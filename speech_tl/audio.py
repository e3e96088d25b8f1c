"""Reading and checking audio.

Everything goes through ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus and MP3), except AAC in
``.m4a``/``.aac``/``.mp4`` files, which libsndfile cannot read: those are probed with ``ffprobe`` and
decoded with ``ffmpeg`` (the command-line tools, run as subprocesses; without them such a file is an
error saying to install ffmpeg). The ffmpeg commands rather than a Python binding: torchaudio no longer
decodes through FFmpeg, torchcodec needs FFmpeg's shared libraries of a version matching its build, and PyAV
would bring a second FFmpeg of its own; the command is the one Kaldi pipes use too (``manifest to-kaldi``), and
a file that crashes the decoder takes down a subprocess, not a preparation's worker. Audio is downmixed to
mono and resampled with ``torchaudio.functional.resample``.

ffmpeg picks its reader from a file's content, and some of its readers open other files or URLs (an HLS or
ffconcat playlist named ``.m4a``): both tools are run with ``-format_whitelist`` (MP4/MOV and ADTS AAC only) and
``-protocol_whitelist file``, under a timeout, decoding at most the span asked for (and never more than
:func:`max_decode_seconds`), so an uploaded file cannot make them read anything but itself, or run forever.

Shapes: a waveform is a 1-D float32 tensor ``(samples,)`` in [-1, 1].
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .errors import InputError, SpeechTlError

TARGET_SAMPLE_RATE = 16000
FFMPEG_SUFFIXES = (".m4a", ".aac", ".mp4")  # AAC audio libsndfile cannot read: decoded by ffmpeg
SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", *FFMPEG_SUFFIXES)
FFMPEG_HINT = ("install ffmpeg (apt install ffmpeg), or convert it first on a machine that has it, e.g. "
               "`ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav`")
MAX_SECONDS_ENV = "SPEECH_TL_MAX_AUDIO_SECONDS"
LIMIT_HINT = ("cut it into pieces, or give segments with offset and duration in the manifest, or raise the limit "
              f"with ${MAX_SECONDS_ENV}")
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

    ``.m4a``/``.aac``/``.mp4`` files are probed with ``ffprobe`` (their first audio stream; the duration of a
    raw ``.aac`` (ADTS) file is ffprobe's estimate). Raises :class:`AudioError` for a missing, unreadable or
    corrupt file, and for those formats when ffmpeg is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return _ffprobe(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioError(path, f"unreadable or corrupt audio ({_short(e)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "empty audio (no samples)")
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels),
                     format=str(info.format))


# --------------------------------------------------------------------------- ffmpeg (m4a/aac/mp4)

def _tool(name: str, path: Path) -> str:
    """The path of ``ffmpeg``/``ffprobe`` on ``$PATH``, or the error that says to install it."""
    found = shutil.which(name)
    if found is None:
        raise AudioError(path, f"m4a/aac/mp4 audio is decoded with ffmpeg, which is not installed (no `{name}` on "
                               "$PATH)", FFMPEG_HINT)
    return found


def _input(path: Path) -> str:
    """``path`` as ffmpeg's input: ``file:`` keeps a name with ``:`` (or a leading ``-``) from being read as a
    protocol or an option."""
    return f"file:{path}"


# the only demuxers ffmpeg may use: MP4/MOV (m4a, mp4) and ADTS (aac). Content decides the demuxer otherwise, and
# some open other files or URLs (hls, concat playlists), which an uploaded ".m4a" could be
_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,aac"
_SAFE_INPUT = ("-format_whitelist", _FORMATS, "-protocol_whitelist", "file")
_MIN_TIMEOUT = 60.0  # seconds an ffprobe or ffmpeg run may take at least; a decode gets more for a long span


def _run(path: Path, cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` run with its output captured; a run past ``timeout`` seconds is killed and reported."""
    try:
        return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"unreadable audio ({what} did not finish within {timeout:.0f} s)",
                         "a damaged or unusual file, or one that is not a plain file (a pipe); convert it to WAV "
                         "with ffmpeg yourself and use that") from None


def _tool_error(path: Path, stderr: bytes, what: str) -> AudioError:
    lines = [x.strip() for x in stderr.decode("utf-8", "replace").splitlines() if x.strip()]
    refused = next((re.match(r"^\[(\w+) @ [^]]*\] Format not on whitelist", x) for x in lines
                    if "Format not on whitelist" in x), None)
    if refused is not None:
        return AudioError(path, f"not m4a/mp4 or ADTS AAC audio (its content is {refused.group(1)!r} to ffmpeg, which "
                                "is read only as MP4/MOV or ADTS here)",
                          "a playlist or other container named like audio is refused: it could make ffmpeg read "
                          "other files; convert the real audio to WAV and use that")
    last = lines[-1] if lines else "no message"
    last = last.replace(f"{_input(path)}: ", "").replace(_input(path), path.name)
    return AudioError(path, f"unreadable or corrupt audio ({what}: {last})")


# a container that states the stream's exact length (an MP4 edit list trims the encoder's padding at the end)
_EXACT_LENGTH = ("mov", "mp4", "m4a")
_PRE_ROLL = 0.5  # seconds decoded before a segment's offset and dropped


def _ffprobe(path: Path) -> AudioInfo:
    """The first audio stream of ``path`` as ffprobe reports it (rate, channels, duration)."""
    cmd = [_tool("ffprobe", path), "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration,codec_name:format=duration,format_name", "-of", "json",
           *_SAFE_INPUT, _input(path)]
    proc = _run(path, cmd, "ffprobe", _MIN_TIMEOUT)
    if proc.returncode != 0:
        raise _tool_error(path, proc.stderr, "ffprobe")
    try:
        probe = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        raise AudioError(path, "unreadable or corrupt audio (ffprobe printed no JSON)") from None
    streams = probe.get("streams") or []
    if not streams:
        raise AudioError(path, "no audio stream in the file", "is it a video without sound?")
    stream, fmt = streams[0], probe.get("format") or {}
    try:
        rate, channels = int(stream.get("sample_rate") or 0), int(stream.get("channels") or 0)
        seconds = float(stream.get("duration") or fmt.get("duration") or 0.0)
    except ValueError:
        raise AudioError(path, f"unreadable or corrupt audio (ffprobe reported {stream} {fmt})") from None
    frames = int(round(seconds * rate))
    if rate <= 0 or channels <= 0 or frames <= 0:
        raise AudioError(path, "empty audio (no samples)")
    container = str(fmt.get("format_name") or "")
    return AudioInfo(sample_rate=rate, frames=frames, channels=channels,
                     format=f"{str(stream.get('codec_name') or '?').upper()} in {container} (ffmpeg)")


def _ffmpeg_read(path: Path, info: AudioInfo, offset: float, duration: float | None, limit: float) -> np.ndarray:
    """Decode ``duration`` seconds (to the end: ``None``) from ``offset`` with ffmpeg: float32
    ``(samples, channels)`` at the stream's own rate and channel count. At most ``limit`` seconds are decoded
    (ADTS states no length, so ffprobe's estimate is no bound): a file holding more is an error."""
    cmd = [_tool("ffmpeg", path), "-nostdin", "-v", "error"]
    # seek in the input (fast) to a little before `offset`: the decoder's first frame after a seek lacks the
    # frame before it (AAC overlaps frames), so that pre-roll is decoded and dropped here
    sr = info.sample_rate
    start = max(0.0, offset - _PRE_ROLL)
    drop = int(round(offset * sr)) - int(round(start * sr))
    if start:
        cmd += ["-ss", f"{start:.6f}"]
    cmd += [*_SAFE_INPUT, "-i", _input(path), "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le",
            "-ac", str(info.channels), "-ar", str(sr)]
    most = int(limit * sr)
    frames = most + 1 if duration is None else min(int(round(duration * sr)), most + 1)
    if any(c in info.format.split(" in ", 1)[-1] for c in _EXACT_LENGTH):  # up to the container's length: the
        frames = min(frames, max(info.frames - int(round(offset * sr)), 0))  # encoder's padding after it is dropped
    cmd += ["-t", f"{(drop + frames + 1) / sr:.6f}"]  # always bounded: one sample past the limit tells it is hit
    proc = _run(path, [*cmd, "-"], "ffmpeg", _MIN_TIMEOUT + (drop + frames) / sr / 10)
    if proc.returncode != 0:
        raise _tool_error(path, proc.stderr, "ffmpeg")
    data = np.frombuffer(proc.stdout, dtype=np.float32)
    data = data[: data.size - data.size % info.channels].reshape(-1, info.channels)[drop:]
    data = data[:frames]
    if data.shape[0] > most:
        raise AudioError(path, f"more than {limit:.0f} s of audio to decode at once, the limit (ffprobe estimated "
                               f"{info.duration:.0f} s for the whole file)",
                         LIMIT_HINT)
    return np.array(data)


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
                         LIMIT_HINT)
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        if offset >= info.duration:
            raise AudioError(path, f"no samples at offset {offset:g} s", f"the file lasts {info.duration:.2f} s")
        return _check_samples(path, _ffmpeg_read(path, info, offset, duration, limit), offset), info.sample_rate
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
    return _check_samples(path, data, offset), sr


def _check_samples(path: Path, data: np.ndarray, offset: float) -> np.ndarray:
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (no samples)" if not offset else
                         f"no samples at offset {offset:g} s")
    return data


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
