"""Real narrowband codecs (sox, ffmpeg) round-trip speech at 8 kHz: length and level kept, aligned, lossy as much as
their bit rate says; a missing encoder is a clear error, never a clean copy."""

from __future__ import annotations

import shutil
import stat

import pytest
import torch

from speech_tl.audio import resample
from speech_tl.augment import rms
from speech_tl.channel import codecs
from speech_tl.channel.codecs import (
    CODECS,
    CodecMissing,
    best_lag,
    check_bitrate,
    check_codecs,
    codec_available,
    codec_round_trip_8k,
)
from tests.channel.speech import SR, log_spectral_distance, one_torch_thread, snr_db, speech  # noqa: F401

RATES = [("amr-nb", 4.75), ("amr-nb", 12.2), ("gsm", 13.0), ("mulaw", 64.0), ("alaw", 64.0), ("opus", 6.0),
         ("opus", 24.0), ("speex", 4.0), ("speex", 16.0)]


def require(name: str) -> None:
    why = codec_available(name)
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def speech8k() -> torch.Tensor:
    """4 s of speech at 8 kHz, peak 0.5 (a call's level: no clipping in any codec)."""
    return resample(speech(4.0), SR, 8000)


@pytest.fixture(scope="module")
def round_trips(speech8k) -> dict[tuple[str, float], torch.Tensor]:
    out = {}
    for name, kbps in RATES:
        if codec_available(name) is None:
            out[name, kbps] = codec_round_trip_8k(speech8k, {"name": name, "kbps": kbps})
    return out


@pytest.mark.skipif(not (shutil.which("sox") and shutil.which("ffmpeg")),
                    reason="sox or ffmpeg is not installed (`make system-deps` installs them)")
def test_every_codec_is_installed_with_sox_and_ffmpeg():
    """Debian's sox and ffmpeg (`make system-deps`) have every codec; a build without one would make the codec
    tests skip, and every phone preparation fail."""
    assert {name: codec_available(name) for name in CODECS} == {name: None for name in CODECS}


@pytest.mark.parametrize("name,kbps", RATES, ids=[f"{n}-{k:g}" for n, k in RATES])
def test_round_trip_keeps_length_and_level_and_is_aligned(speech8k, round_trips, name, kbps):
    require(name)
    y = round_trips[name, kbps]
    assert y.dtype == torch.float32 and y.shape == speech8k.shape
    assert torch.isfinite(y).all() and float(y.abs().max()) <= 1.0
    assert 0.5 < rms(y) / rms(speech8k) < 2.0
    # aligned on the input (the codec's delay removed): the strongest correlation is at lag 0, and it is strong
    assert best_lag(speech8k, torch.cat([y, torch.zeros(400)]), 400) == 0
    corr = float(torch.dot(speech8k, y) / (speech8k.norm() * y.norm()))
    assert abs(corr) > 0.6, corr
    # the speech is in the same place: 100 ms energy envelopes agree
    n = speech8k.numel() // 800 * 800
    floor = 1e-5 * float(speech8k[:n].pow(2).reshape(-1, 800).mean(1).max())  # 50 dB under the loudest 100 ms
    env = lambda x: x[:n].pow(2).reshape(-1, 800).mean(1).add(floor).log10()  # noqa: E731
    assert torch.corrcoef(torch.stack([env(speech8k), env(y)]))[0, 1] > 0.9


@pytest.mark.parametrize("name,kbps", RATES, ids=[f"{n}-{k:g}" for n, k in RATES])
def test_round_trip_is_deterministic(speech8k, round_trips, name, kbps):
    require(name)
    x = speech8k[: 8000]
    assert torch.equal(codec_round_trip_8k(x, {"name": name, "kbps": kbps}),
                       codec_round_trip_8k(x, {"name": name, "kbps": kbps}))


def test_g711_is_nearly_transparent_and_low_rate_codecs_are_not(speech8k, round_trips):
    for name in ("mulaw", "alaw", "amr-nb", "gsm", "opus", "speex"):
        require(name)
    lsd = {key: log_spectral_distance(speech8k, y) for key, y in round_trips.items()}
    snr = {key: snr_db(speech8k, y) for key, y in round_trips.items()}
    for g711 in (("mulaw", 64.0), ("alaw", 64.0)):  # 8-bit companding: ~38 dB SNR on speech at this level
        assert snr[g711] > 30.0 and lsd[g711] < 1.0, (g711, snr[g711], lsd[g711])
        assert not torch.equal(round_trips[g711], speech8k)  # still a real quantiser, not a copy
    # AMR-NB at its lowest mode changes the speech far more than G.711 does
    amr = ("amr-nb", 4.75)
    assert lsd[amr] > 2.0 and lsd[amr] > 4 * lsd["mulaw", 64.0], lsd
    assert snr[amr] < 15.0 and snr[amr] < snr["mulaw", 64.0] - 20.0, snr
    for lossy in (("gsm", 13.0), ("opus", 6.0), ("speex", 4.0)):
        assert lsd[lossy] > 2 * lsd["mulaw", 64.0], (lossy, lsd)
    # the bit rate reaches the encoder: fewer bits, more distortion
    for low, high in ((("amr-nb", 4.75), ("amr-nb", 12.2)), (("opus", 6.0), ("opus", 24.0)),
                      (("speex", 4.0), ("speex", 16.0))):
        assert lsd[low] > lsd[high] + 0.3, (low, high, lsd)


def test_best_lag_finds_a_delay_in_either_polarity():
    x = torch.from_numpy(__import__("numpy").random.default_rng(0).standard_normal(4000).astype("float32"))
    delayed = torch.cat([torch.zeros(37), x])
    assert best_lag(x, delayed, 100) == 37
    assert best_lag(x, -delayed, 100) == 37
    assert best_lag(x, x, 100) == 0
    assert best_lag(x, x[:10], 100) == 0  # nothing to compare: no shift


def test_bit_rates_are_checked():
    assert check_bitrate("amr-nb", 4.75) == 4.75 and check_bitrate("opus", 12) == 12.0
    assert check_bitrate("mulaw", 64) == 64.0
    for name, kbps in (("amr-nb", 5.0), ("amr-nb", 13.0), ("opus", 30.0), ("speex", 2.0), ("gsm", 12.2),
                       ("alaw", 32.0)):
        with pytest.raises(ValueError, match=f"codec '{name}' runs at"):
            check_bitrate(name, kbps)
    with pytest.raises(ValueError, match="unknown phone codec 'g729'"):
        codec_round_trip_8k(torch.zeros(800), {"name": "g729"})
    with pytest.raises(ValueError, match="not 64"):
        codec_round_trip_8k(torch.zeros(800), {"name": "gsm", "kbps": 64})


def test_missing_ffmpeg_encoder_is_an_error_naming_it(monkeypatch):
    everything_but_gsm = frozenset({"pcm_mulaw", "pcm_alaw", "libopus", "libspeex", "pcm_s16le"})
    monkeypatch.setattr(codecs, "_ffmpeg_encoders", lambda: everything_but_gsm)
    x = torch.zeros(1600)
    with pytest.raises(CodecMissing, match=r"codec 'gsm' needs ffmpeg's libgsm encoder") as e:
        codec_round_trip_8k(x, {"name": "gsm", "kbps": 13})
    assert "install" in str(e.value)
    assert "libgsm" in codec_available("gsm") and codec_available("opus") is None
    with pytest.raises(CodecMissing, match="libgsm"):
        check_codecs(["mulaw", "gsm", "alaw"])
    monkeypatch.setattr(codecs, "_ffmpeg_encoders", lambda: frozenset())
    for name in ("opus", "speex", "mulaw"):
        with pytest.raises(CodecMissing, match=f"codec '{name}' needs ffmpeg's {CODECS[name]['encoder']}"):
            codec_round_trip_8k(x, {"name": name})


def test_missing_ffmpeg_or_sox_is_an_error_naming_the_codec(monkeypatch):
    which = shutil.which
    monkeypatch.setattr(codecs.shutil, "which", lambda tool, *a, **k: None if tool == "sox" else which(tool, *a, **k))
    with pytest.raises(CodecMissing, match=r"codec 'amr-nb' is encoded by sox, which is not installed"):
        codec_round_trip_8k(torch.zeros(1600), {"name": "amr-nb", "kbps": 4.75})
    with pytest.raises(CodecMissing, match="amr-nb"):
        check_codecs(["amr-nb"])
    monkeypatch.setattr(codecs.shutil, "which", lambda tool, *a, **k: None)
    with pytest.raises(CodecMissing, match=r"codec 'gsm' is encoded by ffmpeg, which is not installed"):
        codec_round_trip_8k(torch.zeros(1600), {"name": "gsm"})


def test_sox_without_amr_support_is_codec_missing(tmp_path, monkeypatch):
    """A sox that cannot load libopencore-amrnb (Debian's sox without libsox-fmt-all) fails on `-t amr-nb`: that is
    a CodecMissing error naming what to install, not a RuntimeError about a subprocess, nor the clean input."""
    fake = tmp_path / "bin" / "sox"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"sox FAIL formats: no handler for given file type \\`amr-nb'\" >&2\nexit 2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    with pytest.raises(CodecMissing, match=r"codec 'amr-nb'.*libopencore-amrnb"):
        codec_round_trip_8k(torch.zeros(1600), {"name": "amr-nb", "kbps": 4.75})
