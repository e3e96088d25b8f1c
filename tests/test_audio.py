"""Audio reading, resampling, checks and writing, on tiny real files written with soundfile."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech_tl.audio import (
    TARGET_SAMPLE_RATE,
    AudioChecks,
    AudioError,
    audio_info,
    check_waveform,
    load_audio,
    load_checked,
    read_audio,
    resample,
    to_mono,
    write_audio,
)

from .conftest import tone, write_tone
from .ffmpeg_tools import encode, requires_ffmpeg, snr_db


def peak_hz(wave, sr: int) -> float:
    """Frequency of the largest FFT bin (Hann window)."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[int(np.argmax(spec))])


def write_float_wav(path: Path, data, sr: int = 16000) -> Path:
    """Write exact float32 samples (NaN/Inf survive) as a 32-bit float WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(data, dtype=np.float32), sr, format="WAV", subtype="FLOAT")
    return path


def assert_names_file(err: AudioError, path: Path) -> None:
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: ")


# --------------------------------------------------------------------------- reading

@pytest.mark.parametrize("suffix, lossy", [(".wav", False), (".flac", False), (".ogg", True), (".mp3", True)])
def test_read_each_format(tmp_path, make_tone, suffix, lossy):
    path = make_tone(tmp_path / f"a{suffix}", seconds=0.5, freq=440.0)
    info = audio_info(path)
    assert info.sample_rate == 16000 and info.channels == 1
    assert info.duration == pytest.approx(0.5, abs=0.03)
    data, sr = read_audio(path)
    assert sr == 16000 and data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == 1
    assert abs(data.shape[0] - 8000) <= 0.03 * 16000
    wave = load_audio(path)
    assert isinstance(wave, torch.Tensor) and wave.dtype == torch.float32 and wave.ndim == 1
    assert wave.shape[0] == data.shape[0]
    assert peak_hz(wave.numpy(), 16000) == pytest.approx(440.0, abs=4.0)
    ref = tone(0.5, 16000, freq=440.0)
    if not lossy:  # 16-bit PCM: equal up to quantisation
        np.testing.assert_allclose(wave.numpy(), ref, atol=1.0 / 32768 + 1e-6)
    else:
        assert float(wave.abs().max()) == pytest.approx(float(np.abs(ref).max()), rel=0.25)


def test_uppercase_suffix_and_opus(tmp_path, make_tone):
    path = make_tone(tmp_path / "UPPER.WAV")
    assert audio_info(path).frames == 8000
    opus = tmp_path / "a.opus"
    sf.write(str(opus), tone(0.5, 48000, freq=1000.0), 48000, format="OGG", subtype="OPUS")
    wave = load_audio(opus)
    assert abs(wave.shape[0] - 8000) <= 400
    assert peak_hz(wave.numpy(), 16000) == pytest.approx(1000.0, abs=10.0)


def test_stereo_is_downmixed_by_averaging(tmp_path):
    n = 16000
    left = 0.5 * np.sin(2 * np.pi * 300 * np.arange(n) / 16000)
    right = np.full(n, 0.25)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1).astype(np.float32), 16000, subtype="FLOAT")
    info = audio_info(path)
    assert (info.channels, info.frames) == (2, n)
    data, _ = read_audio(path)
    assert data.shape == (n, 2)
    wave = load_audio(path)
    assert wave.shape == (n,)
    np.testing.assert_allclose(wave.numpy(), ((left + right) / 2).astype(np.float32), atol=1e-6)


def test_to_mono_shapes():
    x = np.array([[1.0, 3.0], [0.0, -2.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(x), np.array([2.0, -1.0], dtype=np.float32))
    one_d = np.array([0.1, 0.2], dtype=np.float32)
    assert to_mono(one_d) is one_d


@pytest.mark.parametrize("sr, seconds, freq", [(8000, 1.0, 440.0), (44100, 1.0, 1000.0), (44100, 0.75, 3000.0),
                                               (22050, 0.5, 700.0), (48000, 0.5, 5000.0)])
def test_resampling_to_16k_keeps_length_and_frequency(tmp_path, make_tone, sr, seconds, freq):
    path = make_tone(tmp_path / f"t{sr}.wav", seconds=seconds, sr=sr, freq=freq)
    assert audio_info(path).sample_rate == sr
    wave = load_audio(path)
    assert wave.shape[0] == round(seconds * TARGET_SAMPLE_RATE)
    assert wave.dtype == torch.float32
    assert peak_hz(wave.numpy(), TARGET_SAMPLE_RATE) == pytest.approx(freq, abs=3.0)
    # the amplitude is kept too (the tone is well under Nyquist)
    mid = wave[len(wave) // 4: 3 * len(wave) // 4]
    assert float(mid.abs().max()) == pytest.approx(0.3, abs=0.05)


def test_load_audio_to_other_rate(tmp_path, make_tone):
    path = make_tone(tmp_path / "a.wav", seconds=0.5, freq=500.0)
    wave = load_audio(path, sample_rate=8000)
    assert wave.shape[0] == 4000
    assert peak_hz(wave.numpy(), 8000) == pytest.approx(500.0, abs=3.0)


def test_resample_same_rate_is_identity():
    w = torch.randn(100)
    assert resample(w, 16000, 16000) is w
    assert resample(torch.zeros(2, 8000), 8000).shape == (2, 16000)


def test_offset_and_duration_read_exact_samples(tmp_path):
    n = 16000
    ramp = (np.arange(n) / n).astype(np.float32)
    path = write_float_wav(tmp_path / "ramp.wav", ramp)
    data, sr = read_audio(path, offset=0.25, duration=0.1)
    assert sr == 16000
    np.testing.assert_array_equal(data[:, 0], ramp[4000:5600])
    data, _ = read_audio(path, offset=0.5)
    np.testing.assert_array_equal(data[:, 0], ramp[8000:])
    data, _ = read_audio(path, duration=0.2)
    np.testing.assert_array_equal(data[:, 0], ramp[:3200])
    data, _ = read_audio(path, offset=0.9, duration=5.0)  # a segment running past the end is cut at the end
    np.testing.assert_array_equal(data[:, 0], ramp[14400:])
    wave = load_audio(path, offset=0.25, duration=0.1)
    np.testing.assert_array_equal(wave.numpy(), ramp[4000:5600])


def test_offset_segment_resampled_and_frequency(tmp_path):
    sr = 8000
    t = np.arange(sr) / sr
    x = np.where(t < 0.5, 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 1200 * t)).astype(np.float32)
    path = tmp_path / "two.flac"
    sf.write(str(path), x, sr, subtype="PCM_16")
    first = load_audio(path, offset=0.0, duration=0.5)
    second = load_audio(path, offset=0.5, duration=0.5)
    assert first.shape[0] == second.shape[0] == 8000
    assert peak_hz(first.numpy(), 16000) == pytest.approx(300.0, abs=3.0)
    assert peak_hz(second.numpy(), 16000) == pytest.approx(1200.0, abs=3.0)


def test_offset_at_or_past_the_end(tmp_path, make_tone):
    path = make_tone(tmp_path / "a.wav", seconds=0.5)
    for offset in (0.5, 0.6, 3.0):
        with pytest.raises(AudioError) as e:
            read_audio(path, offset=offset)
        assert_names_file(e.value, path)
        assert f"no samples at offset {offset:g} s" in str(e.value)


@pytest.mark.parametrize("sr, seconds, channels", [(16000, 0.5, 1), (44100, 1.25, 2), (8000, 2.0, 1)])
def test_audio_info_from_header(tmp_path, make_tone, sr, seconds, channels):
    for suffix in (".wav", ".flac"):
        path = make_tone(tmp_path / f"a{sr}{suffix}", seconds=seconds, sr=sr, channels=channels)
        info = audio_info(path)
        assert info.sample_rate == sr
        assert info.frames == round(seconds * sr)
        assert info.channels == channels
        assert info.duration == pytest.approx(seconds)
        assert info.format == suffix[1:].upper()


def test_audio_info_duration_property():
    from speech_tl.audio import AudioInfo

    assert AudioInfo(sample_rate=8000, frames=12000, channels=1, format="WAV").duration == 1.5
    assert AudioInfo(sample_rate=0, frames=12000, channels=1, format="WAV").duration == 0.0


# --------------------------------------------------------------------------- errors name the file

def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    for fn in (audio_info, read_audio, load_audio, load_checked):
        with pytest.raises(AudioError) as e:
            fn(path)
        assert_names_file(e.value, path)
        assert "file not found" in str(e.value)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_corrupt_file(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for fn in (audio_info, load_audio):
        with pytest.raises(AudioError) as e:
            fn(path)
        assert_names_file(e.value, path)
        assert "unreadable or corrupt audio" in str(e.value)


def test_truncated_wav_header(tmp_path, make_tone):
    path = make_tone(tmp_path / "cut.wav")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert_names_file(e.value, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as e:
        audio_info(path)
    assert_names_file(e.value, path)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_empty_file_zero_frames(tmp_path, subtype):
    # a valid WAV header with no samples (libsndfile writes an empty FLAC as 0 bytes: see test_zero_byte_file)
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), 16000, subtype=subtype)
    assert path.stat().st_size > 0
    for fn in (audio_info, read_audio, load_checked):
        with pytest.raises(AudioError) as e:
            fn(path)
        assert_names_file(e.value, path)
        assert "empty audio (no samples)" in str(e.value)


@pytest.mark.parametrize("name", ["voice.m4a", "voice.M4A", "voice.aac", "voice.mp4"])
def test_m4a_without_ffmpeg_says_to_install_it(tmp_path, no_ffmpeg, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A ")  # ffmpeg is looked for before the file is read
    for fn in (audio_info, read_audio, load_audio, load_checked):
        with pytest.raises(AudioError) as e:
            fn(path)
        assert_names_file(e.value, path)
        assert e.value.reason == ("m4a/aac/mp4 audio is decoded with ffmpeg, which is not installed (no `ffprobe` on "
                                  "$PATH)")
        assert "install ffmpeg (apt install ffmpeg)" in str(e.value) and "convert" in str(e.value)
    with pytest.raises(AudioError, match="file not found"):
        audio_info(tmp_path / "missing.m4a")


def aac_source(tmp_path: Path, sr: int = 16000, seconds: float = 1.0, channels: int = 1) -> tuple[Path, np.ndarray]:
    """A WAV of spelled tones (``(samples,)`` or ``(samples, channels)``, the channels at different levels)."""
    from tests.tiny_asr import spell

    x = spell("abcab cba", sr=sr, seg=seconds / 9)
    data = np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1) if channels > 1 else x
    path = tmp_path / f"src-{sr}-{channels}.wav"
    sf.write(str(path), data, sr, subtype="FLOAT")
    return path, data


@requires_ffmpeg
@pytest.mark.parametrize("sr, channels", [(16000, 1), (44100, 2)])
def test_m4a_decoded_through_ffmpeg(tmp_path, sr, channels):
    src, original = aac_source(tmp_path, sr, 1.0, channels)
    m4a = encode(src, tmp_path / "voice.m4a")
    info = audio_info(m4a)
    # MP4 states the length (its edit list trims the encoder's padding), to the millisecond
    assert (info.sample_rate, info.channels) == (sr, channels)
    assert abs(info.frames - original.shape[0]) <= sr // 1000
    assert "AAC" in info.format and "ffmpeg" in info.format
    data, rate = read_audio(m4a)
    assert rate == sr and data.dtype == np.float32 and data.shape == (info.frames, channels)
    n = original.shape[0]
    assert snr_db(original.reshape(n, channels), data[:n]) > 25  # AAC at 128 kbit/s, aligned sample for sample
    # a segment is that part of the file, from its first sample: the decoder's first frame after a seek lacks the
    # frame before it (AAC overlaps frames), so a pre-roll is decoded and dropped (without it the first 10 ms
    # here come out at about 20 dB). Not bit-exact against the whole file's decoding: the decoder fills noisy
    # bands with noise of its own (AAC's perceptual noise substitution).
    reference = original.reshape(n, channels)
    for offset, duration in ((0.37, 0.25), (0.8, 0.15)):
        seg, _ = read_audio(m4a, offset=offset, duration=duration)
        start, k = int(round(offset * sr)), sr // 100
        assert seg.shape == (int(round(duration * sr)), channels)
        assert snr_db(reference[start:start + k], seg[:k]) > 25
        assert snr_db(reference[start:start + seg.shape[0]], seg) > 25
    tail, _ = read_audio(m4a, offset=0.8)  # to the end: the container's length, not the encoder's padding
    start = int(round(0.8 * sr))
    assert tail.shape == (info.frames - start, channels)
    assert snr_db(reference[start:], tail[: n - start]) > 25
    wave = load_checked(m4a)  # mono, 16 kHz, checked like any clip
    assert wave.shape == (16000,)
    with pytest.raises(AudioError, match="no samples at offset 1.5 s"):
        read_audio(m4a, offset=1.5)


@requires_ffmpeg
def test_aac_and_mp4_decoded_through_ffmpeg(tmp_path):
    src, original = aac_source(tmp_path)
    adts = encode(src, tmp_path / "raw.aac")
    data, sr = read_audio(adts)
    # ADTS keeps the encoder's priming (1024 samples at the start) and states no exact length: compare the signal
    # where it is, and the length roughly
    lag = 1024
    assert sr == 16000 and abs(data.shape[0] - original.size) <= 2 * lag
    assert snr_db(original[: original.size - lag], data[lag:original.size, 0]) > 25
    assert audio_info(adts).duration == pytest.approx(1.0, abs=0.15)
    mp4 = encode(src, tmp_path / "clip.mp4")
    data, _ = read_audio(mp4)
    assert snr_db(original, data[: original.size, 0]) > 25


@requires_ffmpeg
def test_m4a_problems_with_ffmpeg_installed(tmp_path, monkeypatch):
    from speech_tl.audio import MAX_SECONDS_ENV

    corrupt = tmp_path / "phone.m4a"
    corrupt.write_bytes(b"\x00\x00\x00\x20ftypM4A not really")
    for fn in (audio_info, load_audio):
        with pytest.raises(AudioError) as e:
            fn(corrupt)
        assert_names_file(e.value, corrupt)
        assert e.value.reason.startswith("unreadable or corrupt audio (ffprobe: ")
    video = tmp_path / "silent-film.mp4"  # a video stream and no sound
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=0.5:size=32x32",
                    "-c:v", "mpeg4", str(video)], check=True)
    with pytest.raises(AudioError, match="no audio stream"):
        read_audio(video)
    src, _ = aac_source(tmp_path, seconds=3.0)
    m4a = encode(src, tmp_path / "long.m4a")
    monkeypatch.setenv(MAX_SECONDS_ENV, "2.5")  # checked against ffprobe's duration before anything is decoded
    with pytest.raises(AudioError, match=r"long.m4a: 3 s of audio to decode at once, more than the limit of 2 s"):
        load_audio(m4a)
    assert load_audio(m4a, offset=0.5, duration=2.0).numel() == 32000


@requires_ffmpeg
def test_a_playlist_named_m4a_is_refused_not_followed(tmp_path):
    """ffmpeg picks its reader from the content: an ffconcat or HLS playlist named ``.m4a`` (an upload, say) would
    make it read the file the playlist names. Only MP4/MOV and ADTS are read, so both are refused, naming the file."""
    src, _ = aac_source(tmp_path)
    target = encode(src, tmp_path / "secret.m4a")  # real audio elsewhere on the machine
    assert read_audio(target)[0].shape[0] == 16000
    playlists = {
        "concat.m4a": f"ffconcat version 1.0\nfile '{target.name}'\nduration 1.0\n",
        "hls.m4a": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target.name}\n#EXT-X-ENDLIST\n",
        "hls.aac": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target.name}\n#EXT-X-ENDLIST\n",
    }
    for name, text in playlists.items():
        path = tmp_path / name
        path.write_text(text)
        demuxer = "concat" if "ffconcat" in text else "hls"
        for fn in (audio_info, read_audio, load_checked):
            with pytest.raises(AudioError) as e:
                fn(path)
            assert_names_file(e.value, path)
            assert e.value.reason.startswith(f"not m4a/mp4 or ADTS AAC audio (its content is '{demuxer}' to ffmpeg")


@requires_ffmpeg
def test_adts_decoding_is_bounded_by_the_limit_not_the_estimate(tmp_path, monkeypatch):
    """ADTS states no length: ffprobe estimates one from the first frames' bit rate. A file loud at first (high bit
    rate) and long after is estimated short; decoding still stops at the limit, and says so."""
    from speech_tl.audio import MAX_SECONDS_ENV

    rng = np.random.default_rng(0)
    loud, quiet = tmp_path / "loud.wav", tmp_path / "quiet.wav"
    sf.write(str(loud), (rng.uniform(-0.5, 0.5, 16000)).astype(np.float32), 16000)
    sf.write(str(quiet), tone(6.0, 16000, 300.0), 16000)
    parts = [encode(loud, tmp_path / "loud.aac", "-b:a", "256k"), encode(quiet, tmp_path / "quiet.aac", "-b:a", "16k")]
    adts = tmp_path / "long.aac"
    adts.write_bytes(b"".join(p.read_bytes() for p in parts))  # ADTS frames simply follow each other
    estimate = audio_info(adts).duration
    assert estimate < 6.0  # the estimate is short of the 7 s there are
    assert read_audio(adts)[0].shape[0] > 6.9 * 16000  # without a limit in the way, all of it is decoded
    monkeypatch.setenv(MAX_SECONDS_ENV, "6")
    with pytest.raises(AudioError) as e:
        read_audio(adts)  # the estimate passes the check before decoding; the decoding itself stops at 6 s
    assert_names_file(e.value, adts)
    assert e.value.reason.startswith("more than 6 s of audio to decode at once, the limit")
    assert read_audio(adts, offset=1.0, duration=4.0)[0].shape[0] == 64000


@requires_ffmpeg
def test_ffprobe_that_never_finishes_is_stopped(tmp_path, monkeypatch):
    """A named pipe nobody writes to, named .m4a: ffprobe waits on it forever; it is killed after the timeout and
    the error names the file."""
    import os

    import speech_tl.audio as audio

    fifo = tmp_path / "stuck.m4a"
    os.mkfifo(fifo)
    monkeypatch.setattr(audio, "_MIN_TIMEOUT", 1.0)  # the real floor is 60 s; the hang is the same
    with pytest.raises(AudioError) as e:
        audio_info(fifo)
    assert_names_file(e.value, fifo)
    assert e.value.reason == "unreadable audio (ffprobe did not finish within 1 s)"


def test_too_short(tmp_path, make_tone):
    path = make_tone(tmp_path / "short.wav", seconds=0.05)
    with pytest.raises(AudioError) as e:
        load_checked(path)
    assert_names_file(e.value, path)
    assert "too short: 0.050 s, at least 0.1 s needed" in str(e.value)
    # a lower threshold accepts it
    assert load_checked(path, checks=AudioChecks(min_duration=0.01)).shape[0] == 800


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(tmp_path, bad):
    x = tone(0.5)
    x[1234] = bad
    path = write_float_wav(tmp_path / "bad.wav", x)
    with pytest.raises(AudioError) as e:
        load_checked(path)
    assert_names_file(e.value, path)
    assert "NaN or Inf" in str(e.value)


def test_all_silence(tmp_path):
    path = write_float_wav(tmp_path / "silent.wav", np.zeros(16000))
    with pytest.raises(AudioError) as e:
        load_checked(path)
    assert_names_file(e.value, path)
    assert "all silence" in str(e.value) and "recording level" in str(e.value)
    pcm = tmp_path / "silent16.flac"
    sf.write(str(pcm), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="all silence"):
        load_checked(pcm)
    # quiet but not silent passes
    quiet = write_float_wav(tmp_path / "quiet.wav", tone(0.5, amp=0.001) * 0.1 + 0.0005)
    assert load_checked(quiet).shape[0] == 8000


def test_heavy_clipping(tmp_path):
    t = np.arange(16000) / 16000
    square = np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32)  # 99% of samples at full scale
    path = tmp_path / "clipped.wav"
    sf.write(str(path), square, 16000, subtype="PCM_16")
    with pytest.raises(AudioError) as e:
        load_checked(path)
    assert_names_file(e.value, path)
    assert "heavily clipped" in str(e.value) and "lower gain" in str(e.value)


def test_light_clipping_passes_and_threshold(tmp_path):
    x = tone(1.0, amp=0.3)
    x[:80] = 1.0  # 0.5% at full scale: under the 1% limit
    path = write_float_wav(tmp_path / "light.wav", x)
    assert load_checked(path).shape[0] == 16000
    x[:320] = -1.0  # 2%
    path = write_float_wav(tmp_path / "heavy.wav", x)
    with pytest.raises(AudioError, match=r"heavily clipped: 2\.0% of samples"):
        load_checked(path)


def test_clipping_is_judged_before_resampling(tmp_path):
    # a full-scale square at 8 kHz: resampling overshoots/undershoots, the raw file is what counts
    sr = 8000
    t = np.arange(sr) / sr
    square = np.sign(np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    path = write_float_wav(tmp_path / "sq8k.wav", square, sr)
    with pytest.raises(AudioError, match="heavily clipped"):
        load_checked(path)


def test_load_checked_good_file_resamples(tmp_path, make_tone):
    path = make_tone(tmp_path / "ok.wav", seconds=0.5, sr=8000, freq=440.0)
    wave = load_checked(path)
    assert wave.shape[0] == 8000
    assert peak_hz(wave.numpy(), 16000) == pytest.approx(440.0, abs=4.0)


def test_load_checked_segment(tmp_path):
    x = np.concatenate([np.zeros(8000), tone(0.5)]).astype(np.float32)
    path = write_float_wav(tmp_path / "half.wav", x)
    load_checked(path)  # the whole file is fine
    assert load_checked(path, offset=0.5, duration=0.5).shape[0] == 8000
    with pytest.raises(AudioError, match="all silence"):
        load_checked(path, offset=0.0, duration=0.5)


def test_check_waveform_direct():
    with pytest.raises(AudioError, match=r"^x\.wav: empty audio"):
        check_waveform(np.zeros(0), 16000, "x.wav")
    with pytest.raises(AudioError, match=r"^<audio>: too short"):
        check_waveform(torch.full((100,), 0.1), 16000)
    check_waveform(np.asarray(tone(0.2), dtype=np.float64), 16000, "ok.wav")  # float64 numpy accepted
    check_waveform(torch.tensor(tone(0.2, channels=2)), 16000)  # any shape: flattened
    e = AudioError("f.wav", "broken", "fix it")
    assert str(e) == "f.wav: broken (fix it)" and e.reason == "broken" and e.path == "f.wav"
    assert str(AudioError(Path("g.wav"), "broken")) == "g.wav: broken"
    assert isinstance(e, ValueError)


# --------------------------------------------------------------------------- writing

@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_write_audio_round_trip_and_no_temp_files(tmp_path, suffix):
    x = tone(0.5, freq=440.0)
    out = tmp_path / "sub" / f"w{suffix}"
    write_audio(out, torch.from_numpy(x), 16000)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    info = audio_info(out)
    assert info.sample_rate == 16000 and info.channels == 1
    wave = load_audio(out)
    assert abs(wave.shape[0] - 8000) <= 480
    assert peak_hz(wave.numpy(), 16000) == pytest.approx(440.0, abs=4.0)
    if suffix in (".wav", ".flac"):
        np.testing.assert_allclose(wave.numpy(), x, atol=1.0 / 32768 + 1e-6)


def test_write_audio_numpy_grad_tensor_and_subtype(tmp_path):
    x = tone(0.25)
    write_audio(tmp_path / "np.wav", x, 16000)
    assert sf.info(str(tmp_path / "np.wav")).subtype == "PCM_16"
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    write_audio(tmp_path / "f.wav", t, 16000, subtype="FLOAT")
    assert sf.info(str(tmp_path / "f.wav")).subtype == "FLOAT"
    np.testing.assert_array_equal(read_audio(tmp_path / "f.wav")[0][:, 0], x)


def test_write_audio_replaces_existing_file(tmp_path, make_tone):
    out = make_tone(tmp_path / "x.wav", seconds=1.0)
    write_audio(out, np.zeros(1600, dtype=np.float32), 8000)
    assert (audio_info(out).frames, audio_info(out).sample_rate) == (1600, 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_write_audio_failure_keeps_old_file_and_leaves_no_temp(tmp_path, make_tone):
    out = make_tone(tmp_path / "x.wav", seconds=0.5)
    before = out.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - soundfile's own error for an impossible subtype
        write_audio(out, tone(0.1), 16000, subtype="VORBIS")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


@pytest.mark.parametrize("name", ["x.m4a", "x.aiff", "x.txt", "noext"])
def test_write_audio_rejects_unknown_suffix(tmp_path, name):
    out = tmp_path / name
    with pytest.raises(AudioError) as e:
        write_audio(out, tone(0.1), 16000)
    assert_names_file(e.value, out)
    assert "cannot write format" in str(e.value) and ".wav" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_longer_than_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    from speech_tl.audio import MAX_SECONDS_ENV, AudioError, load_audio

    path = write_tone(tmp_path / "long.wav", seconds=3.0)
    monkeypatch.setenv(MAX_SECONDS_ENV, "2.5")
    with pytest.raises(AudioError, match=r"long.wav: 3 s of audio to decode at once, more than the limit of 2 s"):
        load_audio(path)
    assert load_audio(path, offset=1.0).numel() == 32000  # a segment within the limit is fine
    assert load_audio(path, offset=0.5, duration=2.0).numel() == 32000
    monkeypatch.setenv(MAX_SECONDS_ENV, "lots")
    with pytest.raises(ValueError, match="expected a number of seconds"):
        load_audio(path)
