"""Telephone channels: what a phone call does to speech, drawn per utterance and rendered at 8 kHz.

A phone channel is a JSON-able dict (``kind: phone``) drawn by :func:`draw_phone_channel` from a
seeded :class:`random.Random`, written into the manifest line, and rendered by
:func:`apply_phone`. Keys, in the order applied:

- ``noise``: the talker's surroundings, before the handset hears them:
  ``{"kind": "noise", "snr_db": dB, "colour": exponent, "modulated": bool}`` (coloured 1/f^colour
  noise, optionally with a slowly varying level: street, car, fan) or
  ``{"kind": "babble", "snr_db": dB, "talkers": [utterance ids]}`` (other people talking: those
  utterances of the same manifest, mixed); 0-20 dB SNR for a noisy call, 30-45 dB for a quiet one;
- ``band``: ``[low_hz, high_hz]``, the handset's and network's pass band (200-400 to 3000-3600 Hz),
  4th-order high- and low-pass, then resampled to 8 kHz;
- ``drift_db``: an automatic gain control's slow level swing, peak to peak (3-10 dB), if any;
- ``level_db``: the peak level in dBFS (-26 to -3); or ``clip_db``: the peak driven that many dB
  past full scale and clipped (an overdriven handset);
- ``codec``: ``{"name": "amr-nb"|"gsm"|"mulaw"|"alaw"|"opus"|"speex", "kbps": rate}``, a real
  encode/decode at 8 kHz (:mod:`.codecs`);
- ``loss``: ``{"rate": share, "burst": mean frames}``: 20 ms frames lost in bursts (a
  Gilbert-Elliott channel), concealed by repeating the last good frame at falling gain, as a
  decoder's packet-loss concealment does.

Rendering is deterministic in (waveform, channel, seed). What is written here is the drawing of
parameters and their order; the filters are torchaudio's, the codecs ffmpeg's and sox's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from ..augment import coloured_noise, peak_normalize, rms
from .codecs import CODECS, codec_round_trip_8k

PHONE_RATE = 8000
FRAME = 160  # 20 ms at 8 kHz: the packet of AMR, Opus and Speex, and of G.711 over RTP

# (codec, share of calls, bit rates to draw from or (lo, hi)): mobile codecs at their low rates most often
CODEC_SHARES = (("amr-nb", 0.35), ("gsm", 0.15), ("opus", 0.15), ("speex", 0.1), ("mulaw", 0.125), ("alaw", 0.125))


def _draw_codec(rng: random.Random, name: str | None = None) -> dict:
    if name is None:
        name = rng.choices([c for c, _ in CODEC_SHARES], weights=[w for _, w in CODEC_SHARES])[0]
    rates = CODECS[name]["kbps"]
    if name == "amr-nb":
        kbps = rng.choice(rates)
    elif len(rates) == 1:
        kbps = rates[0]
    else:
        kbps = float(rng.choice(range(int(rates[0]), int(rates[1]) + 1, 2)))
    return {"name": name, "kbps": kbps}


def draw_phone_channel(rng: random.Random, talkers: Sequence[str] = (), codec: str | None = None) -> dict:
    """Draw one call's channel. ``talkers``: utterance ids that babble noise may mix (none: no babble).
    ``codec``: always this codec (at a drawn rate) instead of the usual mix."""
    ch: dict = {"kind": "phone"}
    if rng.random() < 0.75:
        snr = round(rng.uniform(0.0, 20.0), 1)
        if len(talkers) >= 3 and rng.random() < 0.4:
            ch["noise"] = {"kind": "babble", "snr_db": snr,
                           "talkers": rng.sample(list(talkers), min(len(talkers), rng.randint(3, 6)))}
        else:
            ch["noise"] = {"kind": "noise", "snr_db": snr, "colour": round(rng.uniform(0.0, 2.0), 2),
                           "modulated": rng.random() < 0.4}
    else:
        ch["noise"] = {"kind": "noise", "snr_db": round(rng.uniform(30.0, 45.0), 1),
                       "colour": round(rng.uniform(0.0, 2.0), 2), "modulated": False}
    ch["band"] = [round(rng.uniform(200.0, 400.0)), round(rng.uniform(3000.0, 3600.0))]
    if rng.random() < 0.3:
        ch["drift_db"] = round(rng.uniform(3.0, 10.0), 1)
    if rng.random() < 0.15:
        ch["clip_db"] = round(rng.uniform(2.0, 12.0), 1)
    else:
        ch["level_db"] = round(rng.uniform(-26.0, -3.0), 1)
    ch["codec"] = _draw_codec(rng, codec)
    if rng.random() < 0.3:
        ch["loss"] = {"rate": round(rng.uniform(0.01, 0.1), 3), "burst": round(rng.uniform(1.0, 3.0), 2)}
    return ch


def babble(talkers: Sequence[torch.Tensor], n: int, rng: np.random.Generator) -> torch.Tensor:
    """Mix of ``talkers`` (each ``(samples,)``, equal loudness, each looped from a random start) to ``n`` samples."""
    out = torch.zeros(n)
    for t in talkers:
        t = t.float()
        if t.numel() == 0 or rms(t) < 1e-6:
            continue
        reps = -(-(n + t.numel()) // t.numel())
        start = int(rng.integers(0, t.numel()))
        out += t.repeat(reps)[start:start + n] / rms(t)
    return out


def add_talker_noise(wave: torch.Tensor, sample_rate: int, noise: dict, rng: np.random.Generator,
                     talkers: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``wave`` plus ``noise`` (see the module docstring) at ``snr_db`` below its RMS."""
    n = wave.numel()
    if noise.get("kind") == "babble":
        if not talkers:
            raise ValueError("a babble channel needs its talkers' audio (the utterances it names)")
        x = babble(talkers, n, rng)
    else:
        x = coloured_noise(n, rng, float(noise.get("colour", 0.0)))
        if noise.get("modulated"):
            t = torch.arange(n) / sample_rate
            x = x * (1.0 + 0.8 * torch.sin(2 * np.pi * float(rng.uniform(0.1, 0.7)) * t + float(rng.uniform(0, 6.3))))
    return wave + x / (rms(x) + 1e-12) * (rms(wave) / 10 ** (float(noise["snr_db"]) / 20))


def packet_loss(wave: torch.Tensor, loss: dict, rng: np.random.Generator) -> torch.Tensor:
    """Lose 20 ms frames of 8 kHz ``wave`` ``(samples,)`` in bursts (Gilbert-Elliott: ``rate`` of the frames, bursts
    of ``burst`` frames on average); each lost frame repeats the last good one at half the previous gain."""
    rate, burst = float(loss["rate"]), max(1.0, float(loss["burst"]))
    leave = 1.0 / burst  # bad -> good
    enter = rate * leave / max(1e-6, 1.0 - rate)  # good -> bad, so that the stationary loss share is ``rate``
    out = wave.clone()
    bad, gain, last = False, 1.0, torch.zeros(FRAME)
    for start in range(0, wave.numel(), FRAME):
        bad = rng.random() >= leave if bad else rng.random() < enter
        frame = out[start:start + FRAME]
        if bad:
            gain *= 0.5
            frame.copy_(last[: frame.numel()] * gain)
        else:
            gain = 1.0
            if frame.numel() == FRAME:
                last = frame.clone()
    return out


def apply_phone(wave: torch.Tensor, sample_rate: int, channel: dict, seed: int,
                talkers: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Render phone ``channel`` on mono speech ``(samples,)`` at ``sample_rate``; returns ``(samples',)`` at 8 kHz.

    ``talkers``: the waveforms (at ``sample_rate``) of a babble channel's talkers, in its order.
    """
    import torchaudio.functional as AF

    from ..audio import resample

    rng = np.random.default_rng(seed)
    x = wave.float()
    if channel.get("noise"):
        x = add_talker_noise(x, sample_rate, channel["noise"], rng, talkers)
    low, high = (float(f) for f in channel.get("band", (300, 3400)))
    for _ in range(2):  # two biquads each: 24 dB/octave, as a handset's and a line card's filters
        x = AF.highpass_biquad(x, sample_rate, low)
        x = AF.lowpass_biquad(x, sample_rate, min(high, 0.45 * sample_rate))
    if sample_rate != PHONE_RATE:
        x = resample(x, sample_rate, PHONE_RATE)
    if channel.get("drift_db"):
        t = torch.arange(x.numel()) / PHONE_RATE
        swing = float(channel["drift_db"]) / 2 * torch.sin(2 * np.pi * float(rng.uniform(0.1, 0.5)) * t
                                                             + float(rng.uniform(0, 6.3)))
        x = x * 10 ** (swing / 20)
    if channel.get("clip_db") is not None:
        x = peak_normalize(x, 10 ** (float(channel["clip_db"]) / 20)).clamp(-1.0, 1.0)
    else:
        x = peak_normalize(x, 10 ** (float(channel.get("level_db", -6.0)) / 20))
    x = x + torch.from_numpy(rng.standard_normal(x.numel()).astype(np.float32)) * 2.0**-15  # the converter's noise
    if channel.get("codec"):
        x = codec_round_trip_8k(x, channel["codec"])
    if channel.get("loss"):
        x = packet_loss(x, channel["loss"], rng)
    return x.clamp(-1.0, 1.0)
