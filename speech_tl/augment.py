"""Waveform augmentation: additive noise, reverberation, telephone band, level.

All functions take and return a mono float32 waveform ``(samples,)`` and draw their
randomness from an explicit ``numpy.random.Generator`` so results are reproducible.
"""

from __future__ import annotations

import numpy as np
import torch


def rms(wave: torch.Tensor) -> float:
    return float(wave.pow(2).mean().sqrt())


def coloured_noise(n: int, rng: np.random.Generator, exponent: float = 0.0) -> torch.Tensor:
    """Noise with power spectrum ``1 / f**exponent`` (0 white, 1 pink, 2 brown), unit RMS, ``(n,)``."""
    white = rng.standard_normal(n)
    if exponent:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (exponent / 2)
        white = np.fft.irfft(spec, n)
    white /= np.sqrt(np.mean(white**2)) + 1e-12
    return torch.from_numpy(white.astype(np.float32))


def add_noise(wave: torch.Tensor, snr_db: float, rng: np.random.Generator, exponent: float | None = None
              ) -> torch.Tensor:
    """Add noise at ``snr_db`` relative to the signal's RMS; colour drawn in [0, 2] unless given."""
    colour = float(rng.uniform(0.0, 2.0)) if exponent is None else exponent
    noise = coloured_noise(wave.numel(), rng, colour)
    return wave + noise * (rms(wave) / (10 ** (snr_db / 20)))


def synthetic_rir(sample_rate: int, rt60: float, rng: np.random.Generator) -> torch.Tensor:
    """An exponentially decaying noise room impulse response with a direct path, ``(taps,)``."""
    taps = max(1, int(rt60 * sample_rate))
    t = np.arange(taps) / sample_rate
    decay = np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    rir = rng.standard_normal(taps) * decay * 0.3
    rir[0] = 1.0
    rir /= np.sqrt(np.sum(rir**2))
    return torch.from_numpy(rir.astype(np.float32))


def reverberate(wave: torch.Tensor, sample_rate: int, rt60: float, rng: np.random.Generator) -> torch.Tensor:
    """Convolve with :func:`synthetic_rir`; output has the input's length and RMS."""
    import torchaudio.functional as AF

    rir = synthetic_rir(sample_rate, rt60, rng)
    out = AF.fftconvolve(wave, rir)[: wave.numel()]
    return out * (rms(wave) / (rms(out) + 1e-12))


def telephone(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Narrowband channel: 300-3400 Hz band-pass, through 8 kHz and back, light mu-law companding."""
    import torchaudio.functional as AF

    x = AF.highpass_biquad(wave, sample_rate, 300.0)
    x = AF.lowpass_biquad(x, sample_rate, 3400.0)
    if sample_rate > 8000:
        x = AF.resample(AF.resample(x, sample_rate, 8000), 8000, sample_rate)[: wave.numel()]
    peak = float(x.abs().max()) + 1e-12
    q = AF.mu_law_decoding(AF.mu_law_encoding(x / peak, 256), 256) * peak
    return q


def peak_normalize(wave: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale so that the largest absolute sample is ``peak`` (silence is returned unchanged)."""
    m = float(wave.abs().max()) if wave.numel() else 0.0
    return wave if m < 1e-8 else wave * (peak / m)
