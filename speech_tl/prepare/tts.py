"""Offline text-to-speech voices from Debian packages: espeak-ng, MBROLA and SVOX pico.

A :class:`Voice` names an engine and a voice of it; :func:`synthesize` speaks one text
at a given rate and pitch and returns the waveform at the engine's sample rate.
Missing tools raise :class:`ToolMissing`, which names the Debian package to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import SpeechTlError

# Debian packages that provide each tool (contrib/non-free components for mbrola and pico)
PACKAGES = {"espeak-ng": "espeak-ng", "mbrola": "mbrola", "pico2wave": "libttspico-utils", "sox": "sox"}
PICO_VOICES = ("de-DE", "en-US", "en-GB", "es-ES", "fr-FR", "it-IT")
MBROLA_DIR = Path("/usr/share/mbrola")


class ToolMissing(SpeechTlError, RuntimeError):
    """A text-to-speech program (or voice) is not installed; the message says which package to install."""


class SynthesisError(SpeechTlError, RuntimeError):
    """A voice failed to speak a text."""


@dataclass(frozen=True)
class Voice:
    """One voice: ``engine`` is ``espeak``, ``mbrola`` or ``pico``.

    ``name`` is what the engine takes (``de+m3``, ``mb-de4``, ``de-DE``); ``language`` is the
    language of the texts the voice is given (``de`` or ``en``).
    """

    engine: str
    name: str
    language: str

    @property
    def id(self) -> str:
        """File-name-safe identity, also used as the speaker label."""
        return re.sub(r"[^A-Za-z0-9-]", "-", f"{self.engine}-{self.name}")


def require_tool(tool: str) -> str:
    """Path of ``tool`` or :class:`ToolMissing` naming the Debian package."""
    path = shutil.which(tool)
    if path is None:
        pkg = PACKAGES.get(tool, tool)
        extra = " (in Debian's non-free/contrib components: add them to apt's sources first)" \
            if tool in ("mbrola", "pico2wave") else ""
        raise ToolMissing(f"'{tool}' is not installed: run `apt-get install {pkg}`{extra}, or `make system-deps`")
    return path


def require_voice(voice: Voice) -> None:
    """Check that the programs and data files ``voice`` needs are installed."""
    if voice.engine in ("espeak", "mbrola"):
        require_tool("espeak-ng")
    if voice.engine == "mbrola":
        require_tool("mbrola")
        db = voice.name.removeprefix("mb-").split("-")[0]
        if not (MBROLA_DIR / db).exists():
            raise ToolMissing(f"MBROLA voice '{db}' is not installed: run `apt-get install mbrola-{db}`")
    if voice.engine == "pico":
        require_tool("pico2wave")


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


def synthesize(voice: Voice, text: str, rate: float = 1.0, pitch: float = 1.0, timeout: float = 60.0
               ) -> tuple[np.ndarray, int]:
    """Speak ``text``; returns ``(samples,)`` float32 and its sample rate.

    ``rate`` and ``pitch`` are factors around the voice's default (1.0 = unchanged;
    espeak-ng's default is 175 words/min and pitch 50 on its 0-99 scale).
    """
    require_voice(voice)
    with tempfile.TemporaryDirectory(prefix="speech-tl-tts-") as tmp:
        out = os.path.join(tmp, "out.wav")
        if voice.engine in ("espeak", "mbrola"):
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(int(round(175 * rate))),
                   "-p", str(int(np.clip(round(50 * pitch), 0, 99))), "-w", out, "--", text]
        elif voice.engine == "pico":
            speed, pit = int(round(100 * rate)), int(round(100 * pitch))
            markup = f"<speed level='{speed}'><pitch level='{pit}'>{_xml_escape(text)}</pitch></speed>"
            cmd = ["pico2wave", "-l", voice.name, "-w", out, markup]
        else:
            raise ValueError(f"unknown TTS engine {voice.engine!r}; use espeak, mbrola or pico")
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{voice.id}: timed out after {timeout:g} s on {text!r}") from None
        if proc.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) <= 44:
            raise SynthesisError(f"{voice.id}: no audio for {text!r} (exit {proc.returncode}: "
                                 f"{proc.stderr.strip()[-200:]})")
        wave, sr = _read_wav(out)
    if wave.size == 0 or float(np.abs(wave).max()) < 1e-4:
        raise SynthesisError(f"{voice.id}: silent output for {text!r}")
    return wave, sr


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def probe_voice(voice: Voice, text: str, max_unknown: int = 5) -> str | None:
    """``None`` if ``voice`` speaks ``text`` cleanly, else the reason it is unusable.

    MBROLA voices given phonemes they lack replace them with silence and warn ("unknown,
    replaced"); more than ``max_unknown`` such warnings means the voice cannot read this
    language's text.
    """
    try:
        require_voice(voice)
    except ToolMissing as e:
        return str(e)
    if voice.engine == "mbrola":
        with tempfile.TemporaryDirectory(prefix="speech-tl-probe-") as tmp:
            out = os.path.join(tmp, "p.wav")
            proc = subprocess.run(["espeak-ng", "-v", voice.name, "-w", out, "--", text], capture_output=True,
                                  text=True, timeout=60)
            unknown = proc.stderr.count("unknown")
            if proc.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) <= 44:
                return f"no audio (exit {proc.returncode}: {proc.stderr.strip()[-120:]})"
            if unknown > max_unknown:
                return f"{unknown} phonemes unknown to the voice on a {voice.language} test sentence"
            return None
    try:
        synthesize(voice, text)
    except (SynthesisError, ToolMissing) as e:
        return str(e)
    return None


def mbrola_voices(languages: tuple[str, ...] | None = None) -> list[str]:
    """espeak-ng's MBROLA voice names (``mb-de1`` ...) whose database is installed, one per database."""
    try:
        out = subprocess.run(["espeak-ng", "--voices=mb"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    names = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        name = parts[4].removeprefix("mb/")
        # "mb-de1-en" and "mb-de6-grc" reuse another voice's database: the same speaker
        if not re.fullmatch(r"mb-[a-z]{2}\d", name):
            continue
        if (MBROLA_DIR / name[3:]).exists() and (languages is None or name[3:5] in languages):
            names.append(name)
    return sorted(set(names))
