"""Channel simulation on real synthetic speech: each part does what a recording does, reproducibly."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from speech_tl.augment import rms
from speech_tl.channel import (
    add_channel_noise,
    apply_channel,
    codec_round_trip,
    draw_channel,
    microphone,
    reverberate_room,
    room_impulse_response,
)

SR = 16000


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """A German sentence spoken by espeak-ng (a real TTS voice), or, when espeak-ng is missing, a harmonic tone in
    syllable-like bursts (4 per second, silence between: reverberation has gaps to fill, as in speech)."""
    if shutil.which("espeak-ng"):
        from speech_tl.audio import resample
        from speech_tl.prepare.tts import Voice, synthesize

        wave, sr = synthesize(Voice("espeak", "de+m1", "de"), "Der Zug fährt heute später ab als gestern.")
        return resample(torch.from_numpy(wave), sr, SR)
    t = torch.arange(2 * SR) / SR
    bursts = (torch.sin(2 * np.pi * 4 * t) > 0).float()
    return 0.3 * bursts * sum(torch.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))


def band_energy(x: torch.Tensor, low: float, high: float) -> float:
    spec = torch.fft.rfft(x).abs() ** 2
    f = torch.fft.rfftfreq(x.numel(), 1 / SR)
    return float(spec[(f >= low) & (f < high)].sum())


def test_draw_channel_is_seeded_and_varied():
    a = [draw_channel(random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    many = [draw_channel(random.Random(i)) for i in range(300)]
    for key in ("room", "mic", "codec", "telephone", "speed"):
        share = sum(key in c for c in many) / len(many)
        assert 0.02 < share < 0.9, key
    assert all("noise" in c and "pad" in c and -30 <= c["level_db"] <= -1 for c in many)
    assert {c["codec"]["format"] for c in many if "codec" in c} == {"mp3", "opus"}


def test_apply_channel_is_deterministic_and_sets_level_and_padding(speech):
    ch = {"pad": [0.5, 0.25], "level_db": -12.0, "noise": {"snr_db": 20.0, "colour": 1.0}}
    a = apply_channel(speech, SR, ch, seed=7)
    b = apply_channel(speech, SR, ch, seed=7)
    assert torch.equal(a, b)
    assert a.numel() == speech.numel() + int(0.5 * SR) + int(0.25 * SR)
    assert float(a.abs().max()) == pytest.approx(10 ** (-12 / 20), rel=1e-3)
    lead = a[: int(0.5 * SR) - 400]
    assert 0 < rms(lead) < 0.15 * rms(a)  # a noise floor (20 dB down) before the speech, not digital silence
    assert not torch.equal(apply_channel(speech, SR, ch, seed=8), a)


def test_noise_is_added_at_the_requested_snr(speech):
    rng = np.random.default_rng(0)
    noisy = add_channel_noise(speech, SR, {"snr_db": 10.0, "colour": 0.0}, rng)
    snr = 20 * np.log10(rms(speech) / rms(noisy - speech))
    assert snr == pytest.approx(10.0, abs=0.1)
    hum = add_channel_noise(speech, SR, {"snr_db": 0.0, "colour": 0.0, "hum_hz": 50}, rng) - speech
    assert band_energy(hum, 45, 55) > 20 * band_energy(hum, 70, 80)


def test_room_reverberation_smears_speech_in_time(speech):
    rir = room_impulse_response(5, 0.6)
    assert rir[0] == pytest.approx(1.0) and 0.2 * SR < rir.size < 2 * SR
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0] + 1e-12)
    t20 = int(np.argmax(decay_db < -20)) / SR
    assert 0.6 * 0.5 < 3 * t20 < 0.6 * 1.6  # RT60 from the T20 slope within the tolerance of the simulation
    wet = reverberate_room(speech, SR, {"room": 5, "rt60": 0.6, "drr_db": 0.0})
    assert wet.numel() == speech.numel()
    # the envelope decays more slowly: more energy right after each sound
    env = lambda x: x.abs().unfold(0, 160, 160).mean(1)  # noqa: E731
    assert float(env(wet).std() / env(wet).mean()) < float(env(speech).std() / env(speech).mean())


def test_microphone_colouring_cuts_lows_and_highs(speech):
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal(SR).astype(np.float32)) * 0.1
    out = microphone(noise, SR, {"highpass": 300, "lowpass": 3500, "eq": [[1000, 6.0, 1.0]]})
    assert band_energy(out, 20, 100) < 0.1 * band_energy(noise, 20, 100)
    assert band_energy(out, 6000, 8000) < 0.1 * band_energy(noise, 6000, 8000)
    assert band_energy(out, 900, 1100) > 1.5 * band_energy(noise, 900, 1100)


@pytest.mark.parametrize("fmt,quality", [("mp3", 0.99), ("opus", 1.0)])
def test_codec_round_trip_keeps_length_and_alignment_and_loses_detail(speech, fmt, quality):
    x = speech * 0.5
    y = codec_round_trip(x, SR, {"format": fmt, "quality": quality})
    assert y.numel() == x.numel()
    corr = float(torch.dot(x, y) / (x.norm() * y.norm()))
    assert corr > 0.6  # aligned (the MP3 encoder's delay is removed)
    assert float((x - y).abs().max()) > 1e-3  # lossy


def test_synth_plan_gives_channels_to_train_and_dev_only():
    from speech_tl.prepare.synth import ASR_MANY_TRAIN_VOICES, ASR_VOICES_DE, ENGINE_WEIGHTS, plan_asr

    sentences = [f"Satz Nummer {w} ist hier." for w in ("eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben",
                                                         "acht", "neun", "zehn", "elf", "zwölf")] * 4
    clean = plan_asr(sentences, ASR_VOICES_DE, 60, seed=2)
    voices = {**ASR_VOICES_DE, "train": ASR_MANY_TRAIN_VOICES["de"]}
    real = plan_asr(sentences, voices, 60, seed=2, channel_splits=("train", "dev"), engine_weights=ENGINE_WEIGHTS)
    assert all(i.channel for i in real if i.split in ("train", "dev"))
    assert not any(i.channel for i in real if i.split == "test") and not any(i.channel for i in clean)
    # the held-out split is the same utterances either way, so test results stay comparable
    assert [(i.voice, i.text, i.rate) for i in clean if i.split == "test"] == \
        [(i.voice, i.text, i.rate) for i in real if i.split == "test"]
    assert len({i.voice for i in real if i.split == "train"}) > len({i.voice for i in clean if i.split == "train"})
    assert {i.rel_path() for i in real}.isdisjoint({i.rel_path() for i in clean if i.split == "train"})
