"""Who spoke when: Silero VAD regions and labelled segments of a recording made of real speakers' clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speech_tl.audio import load_audio
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.registry import SpeakerRegistry
from speech_tl.speaker.segments import label_recording, speech_regions, to_rttm, windows
from tests.speaker.real_speech import needs_commonvoice, speakers_with_clips

GAP = 0.6  # seconds of silence between the clips of the recording


def test_windows_cover_the_span_and_a_short_span_is_one_window():
    assert windows(0.0, 1.0, 1.5, 0.75) == [(0.0, 1.0)]
    w = windows(2.0, 6.0, 1.5, 0.75)
    assert w[0] == (2.0, 3.5) and w[-1] == (4.5, 6.0)
    assert all(b - a == pytest.approx(1.5) for a, b in w)
    assert all(b[0] - a[0] <= 0.75 + 1e-9 for a, b in zip(w, w[1:], strict=False))


def test_vad_finds_no_speech_in_silence():
    assert speech_regions(torch.zeros(32000)) == []


def test_rttm_lines():
    text = to_rttm([{"start": 0.5, "end": 2.0, "speaker": "Anna Maria", "score": 0.8}], "meeting 1")
    assert text == "SPEAKER meeting_1 1 0.500 1.500 <NA> <NA> Anna_Maria <NA> <NA>\n"


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@pytest.fixture(scope="module")
def meeting(tmp_path_factory):
    """Three enrolled real speakers (3 clips each) and a recording of two other clips of each of them and
    of a fourth, unenrolled speaker, with pauses: ``(registry, embedder, wave, truth [(start, end, name)])``."""
    picks = {"ana": speakers_with_clips("es")[0], "bo": speakers_with_clips("sv-SE")[0],
             "cas": speakers_with_clips("nl")[0], "unknown": speakers_with_clips("pl")[0]}
    embedder = load_embedder("ge2e:resemblyzer")
    reg = SpeakerRegistry(tmp_path_factory.mktemp("seg") / "speakers.db")
    for name in ("ana", "bo", "cas"):
        clips = picks[name][:3]
        reg.enroll(name, list(embedder.embed_many([load_audio(c) for c in clips])), clips, model=embedder)
    reg.set_threshold(0.7, "test: between same- and other-speaker GE2E scores of these clips")
    parts, truth, t = [], [], 0.0
    gap = torch.zeros(int(GAP * 16000))
    for name, clips in picks.items():
        for clip in clips[3:5]:
            wave = load_audio(clip)
            truth += [(t + a, t + b, name) for a, b in speech_regions(wave)]  # the clip's own speech
            parts += [wave, gap]
            t += (wave.numel() + gap.numel()) / 16000
    return reg, embedder, torch.cat(parts), truth


@needs_commonvoice
def test_segments_attribute_the_speech_time_of_a_recording(meeting):
    reg, embedder, wave, truth = meeting
    segments = label_recording(wave, embedder.embed_many, lambda e: reg.identify(e, model=embedder))
    total = sum(b - a for a, b, _ in truth)
    right = sum(overlap(a, b, s["start"], s["end"]) for a, b, name in truth for s in segments if s["speaker"] == name)
    assert right / total >= 0.9, (right / total, segments)
    # the recording's turns: one segment per clip at most one pause off, in order
    starts = np.array([s["start"] for s in segments])
    assert all(np.min(np.abs(starts - a)) < 0.25 for a, _, _ in truth), "a clip's start is not a segment boundary"
    assert [s["speaker"] for s in segments] == [name for *_, name in truth]
    assert all(s["end"] > s["start"] and 0 <= s["score"] <= 1 for s in segments)
