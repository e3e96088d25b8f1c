"""Real narrowband speech codecs, round trips at their own 8 kHz rate, through ffmpeg and sox.

The codecs a phone call goes through, each encoded and decoded by the reference library that
real networks and phones use, not imitated by filters:

======== ====================== ================================ ===========================
name     standard               bit rates (kbit/s)               encoder
======== ====================== ================================ ===========================
amr-nb   3GPP AMR narrowband    4.75 5.15 5.9 6.7 7.4 7.95 10.2  sox ``-t amr-nb``
         (GSM/UMTS mobile)      12.2                             (libopencore-amrnb)
gsm      GSM 06.10 full rate    13                               ffmpeg ``libgsm``
mulaw    G.711 µ-law (PSTN)     64                               ffmpeg ``pcm_mulaw``
alaw     G.711 A-law (PSTN)     64                               ffmpeg ``pcm_alaw``
opus     Opus, VoIP mode        6-24                             ffmpeg ``libopus``
speex    Speex narrowband       4-16                             ffmpeg ``libspeex``
======== ====================== ================================ ===========================

ffmpeg has no AMR-NB encoder in Debian's build (only the decoder); sox writes it through
libopencore-amrnb (Debian ``libopencore-amrnb0``). A codec whose encoder is missing is a
:class:`CodecMissing` error naming the codec and what to install, never a silent clean copy.

Only the subprocess plumbing and the alignment of the decoded signal are written here; the
coding is the libraries'.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SpeechTlError

RATE = 8000  # every codec here runs at the narrowband rate

AMR_NB_KBPS = (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2)  # sox -C <index> picks the mode

# name -> (tool, ffmpeg encoder or sox type, container format, bit rates kbit/s: allowed (lo, hi) or fixed)
CODECS: dict[str, dict] = {
    "amr-nb": {"tool": "sox", "encoder": "amr-nb", "kbps": AMR_NB_KBPS},
    "gsm": {"tool": "ffmpeg", "encoder": "libgsm", "format": "gsm", "kbps": (13.0,)},
    "mulaw": {"tool": "ffmpeg", "encoder": "pcm_mulaw", "format": "mulaw", "kbps": (64.0,)},
    "alaw": {"tool": "ffmpeg", "encoder": "pcm_alaw", "format": "alaw", "kbps": (64.0,)},
    "opus": {"tool": "ffmpeg", "encoder": "libopus", "format": "ogg", "kbps": (6.0, 24.0),
             "options": ["-application", "voip"]},
    "speex": {"tool": "ffmpeg", "encoder": "libspeex", "format": "ogg", "kbps": (4.0, 16.0)},
}


class CodecMissing(SpeechTlError, RuntimeError):
    """A codec's encoder is not installed: the message names the codec and what to install."""


@functools.lru_cache(maxsize=1)
def _ffmpeg_encoders() -> frozenset[str]:
    if not shutil.which("ffmpeg"):
        return frozenset()
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "AVS":
            names.add(parts[1])
    return frozenset(names)


def codec_available(name: str) -> str | None:
    """``None`` if codec ``name`` can be used here, else why not and what to install."""
    spec = _spec(name)
    if spec["tool"] == "sox":
        if not shutil.which("sox"):
            return f"codec {name!r} is encoded by sox, which is not installed (Debian: apt install sox)"
        return None  # whether sox can load libopencore-amrnb shows only when it encodes: see _run
    if not shutil.which("ffmpeg"):
        return f"codec {name!r} is encoded by ffmpeg, which is not installed (Debian: apt install ffmpeg)"
    if spec["encoder"] not in _ffmpeg_encoders():
        return (f"codec {name!r} needs ffmpeg's {spec['encoder']} encoder, which this ffmpeg lacks "
                f"(`ffmpeg -encoders` does not list it): install an ffmpeg built with it (Debian's ffmpeg has it)")
    return None


def _spec(name: str) -> dict:
    if name not in CODECS:
        raise ValueError(f"unknown phone codec {name!r}; expected one of {', '.join(CODECS)}")
    return CODECS[name]


def check_bitrate(name: str, kbps: float) -> float:
    """``kbps`` if codec ``name`` runs at it (AMR-NB: one of its eight modes), else a ValueError."""
    allowed = _spec(name)["kbps"]
    if name == "amr-nb" or len(allowed) == 1:
        if not any(abs(kbps - k) < 1e-6 for k in allowed):
            raise ValueError(f"codec {name!r} runs at {', '.join(f'{k:g}' for k in allowed)} kbit/s, not {kbps:g}")
    elif not allowed[0] <= kbps <= allowed[1]:
        raise ValueError(f"codec {name!r} runs at {allowed[0]:g}-{allowed[1]:g} kbit/s, not {kbps:g}")
    return float(kbps)


def _run(cmd: list[str], name: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=300)
    except FileNotFoundError as e:
        raise CodecMissing(f"codec {name!r}: {cmd[0]} is not installed (Debian: apt install {cmd[0]})") from e
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = err[-1] if err else f"exit status {proc.returncode}"
        if name == "amr-nb" and ("amr" in detail.lower() or "opencore" in detail.lower()):
            raise CodecMissing(f"codec 'amr-nb': sox could not encode AMR-NB ({detail}); it needs libopencore-amrnb "
                               "(Debian: apt install libopencore-amrnb0 libsox-fmt-all)")
        raise RuntimeError(f"codec {name!r}: {' '.join(cmd[:1])} failed: {detail}")


def codec_round_trip_8k(wave: torch.Tensor, codec: dict) -> torch.Tensor:
    """Encode and decode 8 kHz speech ``(samples,)`` with ``codec`` = ``{"name": ..., "kbps": ...}``.

    Returns ``(samples,)`` float32 at 8 kHz, the input's length, aligned on the input (a codec's
    look-ahead delay removed). Deterministic for the same input and codec.
    """
    name = codec["name"]
    spec = _spec(name)
    kbps = check_bitrate(name, float(codec.get("kbps", spec["kbps"][0])))
    missing = codec_available(name)
    if missing:
        raise CodecMissing(missing)
    pcm = (wave.clamp(-1.0, 1.0).numpy() * 32767.0).round().astype("<i2")
    with tempfile.TemporaryDirectory(prefix="speech-tl-codec-") as tmp:
        raw, coded, back = Path(tmp) / "in.raw", Path(tmp) / "coded", Path(tmp) / "out.raw"
        raw.write_bytes(pcm.tobytes())
        raw_args = ["-t", "raw", "-r", str(RATE), "-e", "signed-integer", "-b", "16", "-c", "1"]
        if spec["tool"] == "sox":
            _run(["sox", *raw_args, str(raw), "-C", str(AMR_NB_KBPS.index(kbps)), "-t", "amr-nb", str(coded)], name)
            _run(["sox", "-t", "amr-nb", str(coded), *raw_args, str(back)], name)
        else:
            ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
            bitrate = ["-b:a", f"{kbps:g}k"] if len(spec["kbps"]) > 1 else []
            _run([*ff, "-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", str(raw), "-c:a", spec["encoder"],
                  *bitrate, *spec.get("options", []), "-f", spec["format"], str(coded)], name)
            _run([*ff, "-f", spec["format"], *(["-ar", str(RATE)] if spec["format"] in ("mulaw", "alaw") else []),
                  "-i", str(coded), "-f", "s16le", "-ar", str(RATE), "-ac", "1", str(back)], name)
        y = torch.from_numpy(np.frombuffer(back.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0)
    lag = best_lag(wave, y, int(0.03 * RATE))
    y = y[lag:lag + wave.numel()]
    return torch.nn.functional.pad(y, (0, wave.numel() - y.numel()))


def check_codecs(names) -> None:
    """Round-trip 0.1 s through each codec in ``names``: a missing one is a :class:`CodecMissing` error before a
    preparation writes any audio."""
    for name in names:
        codec_round_trip_8k(torch.zeros(RATE // 10), {"name": name})


def best_lag(ref: torch.Tensor, y: torch.Tensor, max_lag: int) -> int:
    """The delay (0..``max_lag`` samples) of ``y`` against ``ref`` with the largest absolute cross-correlation (AMR-NB
    and Speex as sox and ffmpeg run them come back with inverted polarity, which no listener or recogniser hears)."""
    n = min(ref.numel(), y.numel() - max_lag, 16000)
    if n <= 0:
        return 0
    lags = min(max_lag, y.numel() - n) + 1
    a, b = ref[:n].double().numpy(), y[: n + lags - 1].double().numpy()
    size = 1 << int(np.ceil(np.log2(a.size + b.size)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[:lags]  # corr[k] = a . b[k:k+n]
    return int(np.argmax(np.abs(corr)))
