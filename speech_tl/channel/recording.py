"""Recording channels: what a real recording does to speech that a text-to-speech voice never has.

A synthetic voice comes out of the engine clean, at full level, with 150 ms of digital silence
around it. Real recordings (Common Voice, a phone, a meeting room) have a room, background
noise, a microphone with its own frequency response, a level anywhere from quiet to clipped,
lossy coding, and silence with a noise floor before and after the speech. Multi-style training
on such variants closes much of the synthetic-to-real gap (SynthASR, 2021; Ogun et al., 2025).

A channel is a small JSON-able dict drawn once per utterance by :func:`draw_channel` from a
seeded :class:`random.Random`, stored in the manifest, and rendered by :func:`apply_channel`
at synthesis time. The audio file is then fixed, so the frozen-prefix cache stays valid
(augmentation at training time would switch it off). Keys, each optional, in the order applied:

- ``speed``: resampling factor (0.9-1.1) that moves pitch and formants together, like a
  different vocal tract (Kaldi's speed perturbation);
- ``pad``: ``[lead_s, trail_s]`` of silence around the speech (the noise below fills it);
- ``room``: ``{"room": i, "rt60": s, "drr_db": dB}``: convolution with the impulse response of
  one of 200 seeded random shoebox rooms (each with its own reverberation time), simulated by
  ``pyroomacoustics`` (image sources for the early reflections, ray tracing for the tail);
  ``drr_db`` mixes the reverberant part against the dry signal;
- ``noise``: ``{"snr_db": dB, "colour": exponent, "hum_hz": 50|60|None, "modulated": bool}``:
  coloured noise (1/f^colour), mains hum, optionally with a slowly varying level;
- ``mic``: ``{"highpass": Hz, "lowpass": Hz or None, "eq": [[Hz, gain_dB, Q], ...]}``: the
  microphone's and preamp's response as biquads;
- ``telephone``: true for the 300-3400 Hz, 8 kHz, mu-law narrowband channel;
- ``level_db``: peak level in dBFS (-30 to -1);
- ``codec``: ``{"format": "mp3"|"opus", "quality": q}``: a round trip through a lossy codec
  with libsndfile (``quality`` is its compression level in [0, 1], 1 the lowest bitrate; MP3 at
  constant bitrate, where libsndfile refuses 1.0).

Room impulse responses come from pyroomacoustics, the maintained room-acoustics simulator; the
filters are torchaudio's biquads; the codecs are libsndfile's. What is written here is only the
drawing of parameters and their order, which no library provides for this purpose.
"""

from __future__ import annotations

import functools
import io
import random

import numpy as np
import torch

from ..augment import coloured_noise, peak_normalize, rms, telephone
from .codecs import best_lag

NUM_ROOMS = 200  # rooms per seed: each worker process simulates one the first time it is drawn


def draw_channel(rng: random.Random, clean_share: float = 0.1) -> dict:
    """Draw one utterance's channel; ``clean_share`` of them keep the studio sound (only padding and level)."""
    ch: dict = {"pad": [round(rng.uniform(0.05, 1.0), 3), round(rng.uniform(0.05, 1.0), 3)],
                "level_db": round(rng.uniform(-30.0, -1.0), 1)}
    if rng.random() < 0.5:
        ch["speed"] = round(rng.uniform(0.9, 1.1), 3)
    floor = {"snr_db": round(rng.uniform(35.0, 60.0), 1), "colour": round(rng.uniform(0.0, 2.0), 2)}
    if rng.random() < clean_share:  # a quiet studio: still a noise floor, never digital silence
        ch["noise"] = floor
        return ch
    if rng.random() < 0.6:
        room = rng.randrange(NUM_ROOMS)
        ch["room"] = {"room": room, "rt60": room_rt60(room), "drr_db": round(rng.uniform(-3.0, 12.0), 1)}
    ch["noise"] = floor
    if rng.random() < 0.75:
        ch["noise"] = {"snr_db": round(rng.uniform(0.0, 30.0), 1), "colour": round(rng.uniform(0.0, 2.0), 2),
                       "hum_hz": rng.choice([None, None, None, 50, 60]), "modulated": rng.random() < 0.4}
    if rng.random() < 0.7:
        eq = [[round(rng.uniform(150, 6000)), round(rng.uniform(-9.0, 9.0), 1), round(rng.uniform(0.5, 2.5), 2)]
              for _ in range(rng.randint(1, 3))]
        ch["mic"] = {"highpass": round(rng.uniform(40, 300)), "eq": eq,
                     "lowpass": round(rng.uniform(3500, 7500)) if rng.random() < 0.4 else None}
    if rng.random() < 0.1:
        ch["telephone"] = True
    if rng.random() < 0.5:  # at 16 kHz: MP3 (constant bitrate) 0.6 ~ 71 kbit/s, 0.99 ~ 9; Opus 0.85 ~ 50, 1.0 ~ 12
        fmt = rng.choice(["mp3", "opus"])
        low, high = (0.6, 0.99) if fmt == "mp3" else (0.85, 1.0)
        ch["codec"] = {"format": fmt, "quality": round(rng.uniform(low, high), 3)}
    return ch


def room_rt60(room: int) -> float:
    """The reverberation time of room ``room`` (0.15-0.9 s): fixed per room, so each worker process simulates a
    room once and reuses its impulse response."""
    return round(random.Random(f"room-{room}").uniform(0.15, 0.9), 3)


@functools.lru_cache(maxsize=NUM_ROOMS)
def room_impulse_response(room: int, rt60: float, sample_rate: int = 16000) -> np.ndarray:
    """Impulse response ``(taps,)`` of seeded random shoebox room ``room`` with reverberation time ``rt60``.

    Room size (3x2.5x2.4 m to 12x9x4 m), source and microphone positions come from ``room``;
    wall absorption is set by Sabine's formula for ``rt60``. The response starts at the direct path.
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng([room, int(rt60 * 1000)])
    dims = rng.uniform([3.0, 2.5, 2.4], [12.0, 9.0, 4.0])
    try:
        absorption, _ = pra.inverse_sabine(rt60, dims)
    except ValueError:  # too reverberant for this room's size: the most Sabine allows
        absorption = 0.01
    shoebox = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(absorption)), max_order=3,
                          ray_tracing=True, air_absorption=True)
    shoebox.set_ray_tracing(n_rays=2000)
    margin = 0.5
    source = rng.uniform(margin, dims - margin)
    mic = rng.uniform(margin, dims - margin)
    shoebox.add_source(source)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(rir) > 0.5 * np.abs(rir).max()))  # direct path first: no delay
    rir = rir[start:]
    return (rir / (np.abs(rir[0]) + 1e-12)).astype(np.float32)


def reverberate_room(wave: torch.Tensor, sample_rate: int, room: dict) -> torch.Tensor:
    """Dry speech plus the room's reverberant part at direct-to-reverberant ratio ``drr_db``; input length kept."""
    import torchaudio.functional as AF

    rir = torch.from_numpy(room_impulse_response(int(room["room"]), float(room["rt60"]), sample_rate))
    direct, tail = rir[:1], rir.clone()
    tail[0] = 0.0
    wet = AF.fftconvolve(wave, tail)[: wave.numel()]
    dry = wave * direct
    gain = rms(dry) / (rms(wet) + 1e-12) / (10 ** (float(room.get("drr_db", 0.0)) / 20))
    out = dry + wet * gain
    return out * (rms(wave) / (rms(out) + 1e-12))


def add_channel_noise(wave: torch.Tensor, sample_rate: int, noise: dict, rng: np.random.Generator
                      ) -> torch.Tensor:
    """Coloured noise (plus hum, optionally with a slowly varying level) at ``snr_db`` below the speech."""
    n = wave.numel()
    x = coloured_noise(n, rng, float(noise.get("colour", 0.0)))
    if noise.get("hum_hz"):
        t = torch.arange(n) / sample_rate
        hum = sum(torch.sin(2 * np.pi * k * float(noise["hum_hz"]) * t + float(rng.uniform(0, 6.3))) / k
                  for k in (1, 2, 3))
        x = x + 2.0 * hum / (rms(hum) + 1e-12)
    if noise.get("modulated"):
        t = torch.arange(n) / sample_rate
        rate = float(rng.uniform(0.1, 0.7))
        x = x * (1.0 + 0.8 * torch.sin(2 * np.pi * rate * t + float(rng.uniform(0, 6.3))))
    x = x / (rms(x) + 1e-12)
    return wave + x * (rms(wave) / (10 ** (float(noise["snr_db"]) / 20)))


def microphone(wave: torch.Tensor, sample_rate: int, mic: dict) -> torch.Tensor:
    """High-pass, peaking equaliser bands and an optional low-pass: a microphone and preamp's colouring."""
    import torchaudio.functional as AF

    x = AF.highpass_biquad(wave, sample_rate, float(mic.get("highpass", 50)))
    for freq, gain, q in mic.get("eq", []):
        x = AF.equalizer_biquad(x, sample_rate, float(freq), float(gain), float(q))
    if mic.get("lowpass"):
        x = AF.lowpass_biquad(x, sample_rate, float(mic["lowpass"]))
    return x


def codec_round_trip(wave: torch.Tensor, sample_rate: int, codec: dict) -> torch.Tensor:
    """Encode and decode with libsndfile's MP3 or Opus encoder; the output keeps the input's length."""
    import soundfile as sf

    fmt, subtype = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}[codec["format"]]
    buf = io.BytesIO()
    x = wave.clamp(-1.0, 1.0).numpy()
    options = {"bitrate_mode": "CONSTANT"} if fmt == "MP3" else {}
    sf.write(buf, x, sample_rate, format=fmt, subtype=subtype, compression_level=float(codec["quality"]), **options)
    buf.seek(0)
    y, sr = sf.read(buf, dtype="float32", always_2d=True)
    y = torch.from_numpy(y.mean(axis=1))
    if sr != sample_rate:
        from ..audio import resample

        y = resample(y, sr, sample_rate)
    if y.numel() > wave.numel():  # the MP3 encoder's delay (about 70 ms at 16 kHz): align on the best lag
        lag = best_lag(wave, y, int(0.15 * sample_rate))
        y = y[lag:lag + wave.numel()]
    return torch.nn.functional.pad(y, (0, wave.numel() - y.numel()))


def apply_channel(wave: torch.Tensor, sample_rate: int, channel: dict, seed: int) -> torch.Tensor:
    """Render ``channel`` (see the module docstring) on a clean mono waveform ``(samples,)``; returns ``(samples',)``.

    Deterministic in (``wave``, ``channel``, ``seed``). The result's peak is ``level_db`` dBFS.
    """
    rng = np.random.default_rng(seed)
    x = wave.float()
    if channel.get("speed") and channel["speed"] != 1.0:
        from ..audio import resample

        x = resample(x, int(round(sample_rate * float(channel["speed"]))), sample_rate)
    if channel.get("pad"):
        lead, trail = (int(float(s) * sample_rate) for s in channel["pad"])
        x = torch.nn.functional.pad(x, (lead, trail))
    if channel.get("room"):
        x = reverberate_room(x, sample_rate, channel["room"])
    if channel.get("noise"):
        x = add_channel_noise(x, sample_rate, channel["noise"], rng)
    if channel.get("mic"):
        x = microphone(x, sample_rate, channel["mic"])
    if channel.get("telephone"):
        x = telephone(x, sample_rate)
    x = peak_normalize(x, 10 ** (float(channel.get("level_db", -1.0)) / 20))
    # the converter's own noise, one 16-bit step: a quiet recording is never digital silence once written as PCM
    x = x + torch.from_numpy(rng.standard_normal(x.numel()).astype(np.float32)) * 2.0**-15
    if channel.get("codec"):
        x = codec_round_trip(x, sample_rate, channel["codec"])
    return x
