"""Speech for the channel tests: real Common Voice clips (``../shared/data/commonvoice/de``, CC0) when the folder is
there, else German sentences spoken by espeak-ng, else (neither) harmonic syllable-like bursts.

Also :func:`one_torch_thread`, an autouse fixture for the modules that render phone calls: the codec alignment
(:func:`speech_tl.channel.codecs.best_lag`) takes 241 small ``torch.dot`` calls, each of which costs milliseconds
with several intra-op threads on a busy machine (seconds a call), microseconds with one, as the preparers'
worker processes run it.
"""

from __future__ import annotations

import csv
import functools
import shutil

import numpy as np
import pytest
import torch

from tests.speaker.real_speech import COMMONVOICE

SR = 16000
CV_DE = COMMONVOICE / "de"
SENTENCES = ["Der Zug fährt heute später ab als gestern.", "Wir treffen uns morgen früh am alten Bahnhof.",
             "Das Wetter ist schön, aber der Wind ist kalt.", "Bitte rufen Sie mich nach dem Essen zurück.",
             "Die Kinder spielen im Garten hinter dem Haus.", "Ich habe das Buch gestern Abend gelesen."]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def common_voice_clips() -> list:
    """Paths of the German Common Voice clips in validated.tsv order (those present); empty without ../shared."""
    if not (CV_DE / "validated.tsv").is_file():
        return []
    with open(CV_DE / "validated.tsv", encoding="utf-8", newline="") as f:
        paths = [CV_DE / "clips" / row["path"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [p for p in paths if p.is_file()]


@functools.lru_cache(maxsize=8)
def speech_clips(n: int, seconds: float = 3.0) -> tuple[tuple[torch.Tensor, ...], str]:
    """``n`` different utterances as 16 kHz mono float32 ``(samples,)``, the first ``seconds`` of each (leading
    silence trimmed; espeak-ng's may be shorter), peak-normalised to 0.5, and where they come from."""
    from speech_tl.audio import AudioError, load_audio, resample

    clips, source = [], ""
    for path in common_voice_clips():
        try:
            wave = load_audio(path, SR)
        except AudioError:  # a libsndfile without MP3: the fallbacks below
            break
        voiced = torch.nonzero(wave.abs() > 0.05 * wave.abs().max()).flatten()
        if voiced.numel() == 0:
            continue
        wave = wave[max(0, int(voiced[0]) - SR // 10):][: int(seconds * SR)]
        if wave.numel() == int(seconds * SR):  # long enough: every clip lasts ``seconds``
            clips.append(wave)
            source = f"Common Voice de clips ({CV_DE})"
        if len(clips) == n:
            break
    if len(clips) < n and shutil.which("espeak-ng"):
        from speech_tl.prepare.tts import Voice, synthesize

        clips = []
        for i in range(n):
            wave, sr = synthesize(Voice("espeak", f"de+{'mf'[i % 2]}{i % 4 + 1}", "de"), SENTENCES[i % len(SENTENCES)])
            clips.append(resample(torch.from_numpy(wave), sr, SR)[: int(seconds * SR)])
        source = "espeak-ng (no Common Voice sample in ../shared)"
    if len(clips) < n:  # voiced syllables: a gliding pitch, 1/k harmonics, a smooth envelope, a breath noise floor
        t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
        clips = []
        for i in range(n):
            f0 = (110.0 + 25.0 * i) * (1 + 0.1 * torch.sin(2 * np.pi * 0.7 * t))
            phase = 2 * np.pi * torch.cumsum(f0, 0) / SR
            envelope = torch.sin(2 * np.pi * (1.75 + 0.25 * i) * t).clamp(min=0) ** 0.5
            voiced = envelope * sum(torch.sin(k * phase) / k for k in range(1, 25) if k * float(f0.max()) < SR / 2)
            breath = 0.003 * torch.from_numpy(np.random.default_rng(i).standard_normal(t.numel()))
            clips.append((voiced + breath).float())
        source = "synthetic voiced syllables (neither Common Voice nor espeak-ng here)"
    return tuple(c / c.abs().max() * 0.5 for c in clips), source


def speech(seconds: float = 4.0) -> torch.Tensor:
    """One utterance at 16 kHz (see :func:`speech_clips`)."""
    return speech_clips(1, seconds)[0][0]


def band_power(x: torch.Tensor, sample_rate: int, low: float, high: float) -> float:
    """Mean power per frequency bin of ``x`` between ``low`` and ``high`` Hz (a density: bands of any width
    compare)."""
    spec = torch.fft.rfft(x.double()).abs() ** 2
    f = torch.fft.rfftfreq(x.numel(), 1 / sample_rate)
    return float(spec[(f >= low) & (f < high)].mean())


def log_spectral_distance(ref: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the frames that carry speech of the RMS over frequency of the difference of the log power
    spectra (dB), 32 ms frames at 8 kHz, with a floor 50 dB under the reference's peak (so the quantisation noise
    of near-silent bins does not count as distortion)."""
    win = torch.hann_window(256, dtype=torch.float64)
    spec = lambda x: torch.stft(x.double(), 256, 128, window=win, return_complex=True).abs() ** 2  # noqa: E731
    a, b = spec(ref), spec(y)
    floor = 1e-5 * float(a.max())
    frame_energy = a.sum(0)
    speech_frames = frame_energy > 1e-3 * frame_energy.max()
    d = 10 * torch.log10(a[:, speech_frames] + floor) - 10 * torch.log10(b[:, speech_frames] + floor)
    return float(d.pow(2).mean(0).sqrt().mean())


def snr_db(ref: torch.Tensor, y: torch.Tensor) -> float:
    """SNR of ``y`` against ``ref`` (same length, aligned), in either polarity (AMR-NB and Speex come back
    inverted, see :func:`speech_tl.channel.codecs.best_lag`)."""
    ref, y = ref.double(), y.double()
    err = min(float((ref - y).pow(2).sum()), float((ref + y).pow(2).sum()))
    return float(10 * np.log10(float(ref.pow(2).sum()) / max(err, 1e-20)))
