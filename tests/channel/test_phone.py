"""Phone channels: drawn reproducibly from a seed, rendered at 8 kHz through the handset's band, a level, a real
codec, talker noise or babble at the drawn SNR, and packet loss at the drawn rate."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from speech_tl.augment import rms
from speech_tl.channel import CODECS, PHONE_RATE, apply_phone, draw_phone_channel
from speech_tl.channel.codecs import check_bitrate, codec_available
from speech_tl.channel.phone import FRAME, add_talker_noise, babble, packet_loss
from tests.channel.speech import SR, band_power, one_torch_thread, speech, speech_clips  # noqa: F401


def needs(name: str) -> None:
    why = codec_available(name)
    if why:
        pytest.skip(why)


def white(seconds: float, seed: int = 0, sr: int = SR) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)) * 0.1


def db(x: float) -> float:
    return float(10 * np.log10(x))


# --------------------------------------------------------------------------- drawing

def test_same_seed_same_draw_and_draws_are_json():
    talkers = [f"utt{i}" for i in range(8)]
    for seed in range(20):
        a = draw_phone_channel(random.Random(seed), talkers)
        assert a == draw_phone_channel(random.Random(seed), talkers)
        assert json.loads(json.dumps(a)) == a
    draws = [json.dumps(draw_phone_channel(random.Random(s)), sort_keys=True) for s in range(20)]
    assert len(set(draws)) == 20


def test_draws_cover_the_documented_ranges():
    many = [draw_phone_channel(random.Random(s)) for s in range(600)]
    for ch in many:
        assert ch["kind"] == "phone"
        noise = ch["noise"]
        assert noise["kind"] == "noise" and (0 <= noise["snr_db"] <= 20 or 30 <= noise["snr_db"] <= 45)
        assert 0 <= noise["colour"] <= 2
        low, high = ch["band"]
        assert 200 <= low <= 400 and 3000 <= high <= 3600
        assert ("level_db" in ch) != ("clip_db" in ch)
        assert -26 <= ch.get("level_db", -6) <= -3 and 2 <= ch.get("clip_db", 2) <= 12
        assert 3 <= ch.get("drift_db", 3) <= 10
        name, kbps = ch["codec"]["name"], ch["codec"]["kbps"]
        assert check_bitrate(name, kbps) == kbps
        if "loss" in ch:
            assert 0.01 <= ch["loss"]["rate"] <= 0.1 and 1 <= ch["loss"]["burst"] <= 3
    share = lambda pred: sum(map(pred, many)) / len(many)  # noqa: E731
    assert {ch["codec"]["name"] for ch in many} == set(CODECS)
    assert 0.25 < share(lambda c: c["codec"]["name"] == "amr-nb") < 0.45
    assert len({c["codec"]["kbps"] for c in many if c["codec"]["name"] == "amr-nb"}) == 8
    assert 0.2 < share(lambda c: "loss" in c) < 0.4 and 0.2 < share(lambda c: "drift_db" in c) < 0.4
    assert 0.08 < share(lambda c: "clip_db" in c) < 0.22
    assert 0.65 < share(lambda c: c["noise"]["snr_db"] <= 20) < 0.85
    forced = [draw_phone_channel(random.Random(s), codec="opus")["codec"] for s in range(50)]
    assert {c["name"] for c in forced} == {"opus"} and len({c["kbps"] for c in forced}) > 3


def test_babble_is_drawn_only_with_enough_talkers_and_names_them():
    assert not any(draw_phone_channel(random.Random(s), ["a", "b"])["noise"]["kind"] == "babble" for s in range(300))
    talkers = [f"utt{i}" for i in range(10)]
    many = [draw_phone_channel(random.Random(s), talkers)["noise"] for s in range(600)]
    babbles = [n for n in many if n["kind"] == "babble"]
    assert 0.2 < len(babbles) / len(many) < 0.4  # 75 % noisy calls x 40 % babble
    for n in babbles:
        assert 3 <= len(n["talkers"]) <= 6 and len(set(n["talkers"])) == len(n["talkers"])
        assert set(n["talkers"]) <= set(talkers) and 0 <= n["snr_db"] <= 20


# --------------------------------------------------------------------------- rendering

FULL = {"kind": "phone", "noise": {"kind": "noise", "snr_db": 15.0, "colour": 1.0, "modulated": True},
        "band": [300, 3400], "drift_db": 6.0, "level_db": -9.0, "codec": {"name": "amr-nb", "kbps": 7.4},
        "loss": {"rate": 0.1, "burst": 2.0}}


def test_same_channel_and_seed_give_the_same_audio():
    needs("amr-nb")
    x = speech(3.0)
    a = apply_phone(x, SR, FULL, seed=11)
    assert a.dtype == torch.float32 and a.numel() == x.numel() // 2  # 16 kHz in, 8 kHz out
    assert torch.equal(a, apply_phone(x, SR, FULL, seed=11))
    b = apply_phone(x, SR, FULL, seed=12)
    assert a.shape == b.shape and not torch.equal(a, b)
    assert float((a - b).abs().max()) > 0.01  # another noise, drift and loss pattern, not a rounding difference
    assert not torch.equal(apply_phone(x, SR, {**FULL, "codec": {"name": "amr-nb", "kbps": 12.2}}, seed=11), a)


@pytest.mark.parametrize("seed", range(6))
def test_drawn_channels_render(seed):
    for name in CODECS:
        needs(name)
    x = speech(2.0)
    ch = draw_phone_channel(random.Random(seed))
    y = apply_phone(x, SR, ch, seed)
    assert y.numel() == x.numel() // 2 and torch.isfinite(y).all() and float(y.abs().max()) <= 1.0
    assert rms(y) > 1e-3  # speech at a call's level, not silence
    assert torch.equal(y, apply_phone(x, SR, ch, seed))


def test_speech_comes_out_in_the_phone_band():
    """Real speech at 16 kHz through a G.711 call: 8 kHz out, and what lies under the band's low edge (rumble,
    a low voice's fundamental) is cut far below the 300-3000 Hz pass band."""
    needs("mulaw")
    x = speech(4.0)
    y = apply_phone(x, SR, {"kind": "phone", "band": [300, 3400], "level_db": -6.0,
                            "codec": {"name": "mulaw", "kbps": 64.0}}, seed=0)
    ratio_in = band_power(x, SR, 0, 150) / band_power(x, SR, 300, 3000)
    ratio_out = band_power(y, PHONE_RATE, 0, 150) / band_power(y, PHONE_RATE, 300, 3000)
    assert ratio_out < 0.05, ratio_out
    assert ratio_out < ratio_in / 20, (ratio_in, ratio_out)
    # the speech itself passes: the pass band keeps its share of the signal
    assert band_power(y, PHONE_RATE, 300, 3000) > 0.3 * band_power(y, PHONE_RATE, 0, 4000)


@pytest.mark.parametrize("band", [(200, 3000), (300, 3400), (400, 3600)])
def test_band_edges_on_white_noise(band):
    low, high = band
    y = apply_phone(white(4.0), SR, {"kind": "phone", "band": list(band), "level_db": -6.0}, seed=0)
    passband = band_power(y, PHONE_RATE, 1.5 * low, 0.9 * high)
    assert db(band_power(y, PHONE_RATE, 0, low / 2) / passband) < -25  # 24 dB/octave under the low edge
    assert -14 < db(band_power(y, PHONE_RATE, low / 2, low) / passband) < -6  # the slope, not a brick wall
    assert db(band_power(y, PHONE_RATE, 1.1 * high, PHONE_RATE / 2) / passband) < -10


def test_level_and_clipping():
    x = speech(2.0)
    y = apply_phone(x, SR, {"kind": "phone", "band": [300, 3400], "level_db": -12.0}, seed=0)
    assert float(y.abs().max()) == pytest.approx(10 ** (-12 / 20), rel=0.01)
    clipped = apply_phone(x, SR, {"kind": "phone", "band": [300, 3400], "clip_db": 8.0}, seed=0)
    assert float(clipped.abs().max()) == 1.0
    assert 0.002 < float((clipped.abs() >= 0.999).float().mean()) < 0.5


def test_drift_swings_the_level_by_its_peak_to_peak():
    y = apply_phone(white(12.0), SR, {"kind": "phone", "band": [300, 3400], "level_db": -6.0, "drift_db": 8.0}, 3)
    env = 20 * torch.log10(y.reshape(-1, 2000).pow(2).mean(1).sqrt())  # 250 ms windows
    assert 6.0 < float(env.max() - env.min()) < 10.0
    flat = apply_phone(white(12.0), SR, {"kind": "phone", "band": [300, 3400], "level_db": -6.0}, 3)
    env = 20 * torch.log10(flat.reshape(-1, 2000).pow(2).mean(1).sqrt())
    assert float(env.max() - env.min()) < 1.5


# --------------------------------------------------------------------------- packet loss

def lost_frames(before: torch.Tensor, after: torch.Tensor) -> list[bool]:
    n = before.numel() // FRAME
    return [not torch.equal(before[i * FRAME:(i + 1) * FRAME], after[i * FRAME:(i + 1) * FRAME]) for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1])
def test_packet_loss_replaces_the_drawn_share_of_frames_in_bursts(seed):
    x = white(6000 * FRAME / PHONE_RATE, seed=5, sr=PHONE_RATE)  # 6,000 frames of 20 ms
    y = packet_loss(x, {"rate": 0.1, "burst": 2.0}, np.random.default_rng(seed))
    assert y.shape == x.shape
    lost = lost_frames(x, y)
    assert 0.08 < sum(lost) / len(lost) < 0.12
    runs, run = [], 0
    for bad in lost + [False]:
        if bad:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert 1.6 < np.mean(runs) < 2.4  # bursts of 2 frames on average, not isolated losses
    # concealment: a lost frame after a good one is that frame at half gain, the next at a quarter
    i = next(i for i in range(1, len(lost) - 1) if lost[i] and lost[i + 1] and not lost[i - 1])
    prev = x[(i - 1) * FRAME:i * FRAME]
    assert torch.allclose(y[i * FRAME:(i + 1) * FRAME], 0.5 * prev)
    assert torch.allclose(y[(i + 1) * FRAME:(i + 2) * FRAME], 0.25 * prev)
    assert torch.equal(y, packet_loss(x, {"rate": 0.1, "burst": 2.0}, np.random.default_rng(seed)))


def test_no_packet_loss_changes_nothing():
    x = white(10.0, sr=PHONE_RATE)
    assert torch.equal(packet_loss(x, {"rate": 0.0, "burst": 2.0}, np.random.default_rng(0)), x)
    assert torch.equal(packet_loss(x, {"rate": 0.0, "burst": 1.0}, np.random.default_rng(0)), x)


# --------------------------------------------------------------------------- talker noise and babble

def test_babble_without_talkers_is_an_error():
    ch = {"kind": "phone", "noise": {"kind": "babble", "snr_db": 5.0, "talkers": ["a", "b", "c"]},
          "band": [300, 3400], "level_db": -6.0}
    with pytest.raises(ValueError, match="babble channel needs its talkers' audio"):
        apply_phone(speech(1.0), SR, ch, seed=0)
    with pytest.raises(ValueError, match="babble"):
        apply_phone(speech(1.0), SR, ch, seed=0, talkers=[])
    with pytest.raises(ValueError, match="babble"):
        add_talker_noise(speech(1.0), SR, ch["noise"], np.random.default_rng(0), None)


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_babble_is_mixed_at_the_drawn_snr(snr):
    clips, _ = speech_clips(4, 3.0)
    wave, talkers = clips[0], list(clips[1:])
    noisy = add_talker_noise(wave, SR, {"kind": "babble", "snr_db": snr, "talkers": ["b", "c", "d"]},
                             np.random.default_rng(1), talkers)
    noise = noisy - wave
    assert db(rms(wave) ** 2 / rms(noise) ** 2) == pytest.approx(snr, abs=0.1)
    # the noise is those talkers: the babble the same random stream mixes, scaled
    mix = babble(talkers, wave.numel(), np.random.default_rng(1))
    assert float(torch.dot(noise, mix) / (noise.norm() * mix.norm())) > 0.999


@pytest.mark.parametrize("colour,modulated", [(0.0, False), (1.0, True), (2.0, False)])
def test_talker_noise_is_mixed_at_the_drawn_snr(colour, modulated):
    wave = speech(2.0)
    noisy = add_talker_noise(wave, SR, {"kind": "noise", "snr_db": 10.0, "colour": colour, "modulated": modulated},
                             np.random.default_rng(0))
    assert db(rms(wave) ** 2 / rms(noisy - wave) ** 2) == pytest.approx(10.0, abs=0.1)


def test_babble_loops_each_talker_at_equal_loudness():
    short = torch.sin(torch.arange(1000) / 7.0)
    loud = 10 * torch.sin(torch.arange(1500) / 3.0)
    n = 5000
    one = babble([short], n, np.random.default_rng(2))
    start = int(np.random.default_rng(2).integers(0, 1000))
    assert torch.allclose(one, short.repeat(7)[start:start + n] / rms(short))
    both = babble([short, loud], n, np.random.default_rng(2))
    assert both.numel() == n
    assert rms(both - one) == pytest.approx(1.0, rel=0.02)  # the loud talker brought to unit RMS too
    assert torch.equal(babble([short, torch.zeros(800)], n, np.random.default_rng(2)), one)  # silence adds nothing


def test_babble_channel_renders_with_its_talkers():
    clips, _ = speech_clips(4, 2.0)
    ch = {"kind": "phone", "noise": {"kind": "babble", "snr_db": 3.0, "talkers": ["b", "c", "d"]},
          "band": [300, 3400], "level_db": -6.0}
    quiet = {**ch, "noise": {"kind": "noise", "snr_db": 45.0, "colour": 0.0}}
    y = apply_phone(clips[0], SR, ch, seed=0, talkers=list(clips[1:]))
    assert y.numel() == clips[0].numel() // 2
    assert torch.equal(y, apply_phone(clips[0], SR, ch, seed=0, talkers=list(clips[1:])))
    clean = apply_phone(clips[0], SR, quiet, seed=0)
    # at 3 dB SNR the babble is loud: the call differs from the quiet one by much more than its noise floor
    assert rms(y / y.abs().max() - clean / clean.abs().max()) > 0.05
