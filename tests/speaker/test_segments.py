"""Who spoke when: Silero VAD regions and labelled segments of a recording made of real speakers' clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech_tl.audio import load_audio
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.registry import SpeakerRegistry
from speech_tl.speaker.segments import label_recording, speech_regions, to_rttm, windows
from tests.speaker.enroll_helpers import voice_clips  # noqa: F401  (fixture)
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
    text = to_rttm([{"start": 0.5, "end": 2.0, "speaker": "Anna Maria", "score": 0.8, "cluster": 0},
                    {"start": 2.5, "end": 3.0, "speaker": "unknown", "score": 0.5, "cluster": 3}], "meeting 1")
    assert text == ("SPEAKER meeting_1 1 0.500 1.500 <NA> <NA> Anna_Maria <NA> <NA>\n"
                    "SPEAKER meeting_1 1 2.500 0.500 <NA> <NA> unknown-3 <NA> <NA>\n")


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
    segments = label_recording(wave, embedder.embed_many, reg.judge(embedder))
    total = sum(b - a for a, b, _ in truth)
    right = sum(overlap(a, b, s["start"], s["end"]) for a, b, name in truth for s in segments if s["speaker"] == name)
    assert right / total >= 0.9, (right / total, segments)
    # the recording's turns: one segment per clip at most one pause off, in order
    starts = np.array([s["start"] for s in segments])
    assert all(np.min(np.abs(starts - a)) < 0.25 for a, _, _ in truth), "a clip's start is not a segment boundary"
    assert [s["speaker"] for s in segments] == [name for *_, name in truth]
    assert all(s["end"] > s["start"] and 0 <= s["score"] <= 1 for s in segments)


def test_cluster_units_keeps_confidently_named_voices_apart_and_joins_the_rest():
    from speech_tl.speaker.segments import cluster_units

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    units = np.stack([a + 0.1 * rng.normal(size=16) for _ in range(3)] + [b + 0.1 * rng.normal(size=16)
                                                                           for _ in range(3)])
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    ids = cluster_units(units, 0.5, np.array([0, -1, -1, 1, -1, -1]))
    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1 and ids[0] != ids[3]
    # whatever the threshold, units named as different enrolled speakers never end up together
    ids = cluster_units(units, -1.0, np.array([0, -1, 1, 1, -1, 0]))
    assert ids[0] == ids[5] and ids[2] == ids[3] and ids[0] != ids[2] and len(set(ids)) == 2
    # a stretch that cannot be speaker 0 (a stranger's) stays out of 0's cluster, however alike the voices
    allowed = np.ones((6, 2), dtype=bool)
    allowed[1, 0] = allowed[1, 1] = False
    ids = cluster_units(units, -1.0, np.array([0, -1, -1, 1, -1, -1]), allowed)
    assert ids[1] not in (ids[0], ids[3])


@pytest.fixture(scope="module")
def known_turns(voice_clips, tmp_path_factory):  # noqa: F811
    """Three enrolled text-to-speech voices (3 clips each; the threshold from those clips) and a recording of
    their other clip, twice round, plus a stranger's, with pauses: ``(db, registry, embedder, wave, truth)``."""
    from tests.speaker.enroll_helpers import ENROLLED, STRANGER, voice_id

    embedder = load_embedder("ge2e:resemblyzer")
    db = tmp_path_factory.mktemp("turns") / "s.db"
    reg = SpeakerRegistry(db)
    for spec in ENROLLED:
        v = voice_id(spec)
        clips = voice_clips[v][:3]
        reg.enroll(v, list(embedder.embed_many([load_audio(c) for c in clips])), [str(c) for c in clips],
                   model=embedder)
    parts, truth, t = [], [], 0.0
    gap = torch.zeros(int(GAP * 16000))
    order = [voice_id(s) for s in (*ENROLLED, *ENROLLED, STRANGER)]
    for v in order:
        wave = load_audio(voice_clips[v][3])
        truth += [(t + a, t + b, v if v != voice_id(STRANGER) else "unknown") for a, b in speech_regions(wave)]
        parts += [wave, gap]
        t += (wave.numel() + gap.numel()) / 16000
    import soundfile as sf

    path = db.parent / "turns.wav"
    sf.write(path, torch.cat(parts).numpy(), 16000)
    return db, reg, embedder, torch.cat(parts), truth, path


def test_clustering_never_merges_two_enrolled_speakers_turns(known_turns):
    """Even when clustering would put every stretch of the recording together (cluster threshold -1), turns of
    two enrolled speakers are never one voice, and each enrolled speaker's turns are named right."""
    from dataclasses import replace

    _, reg, embedder, wave, truth, _ = known_turns
    judge = reg.judge(embedder)
    assert judge.origin == "enrolled"
    for j in (judge, replace(judge, cluster_threshold=-1.0)):
        segments = label_recording(wave, embedder.embed_many, j)
        voices_of = {}
        for a, b, name in truth:
            for s in segments:
                if overlap(a, b, s["start"], s["end"]) > 0.2 and name != "unknown":
                    voices_of.setdefault(s["cluster"], set()).add(name)
        assert all(len(names) == 1 for names in voices_of.values()), voices_of
        enrolled = [(a, b, n) for a, b, n in truth if n != "unknown"]
        right = sum(overlap(a, b, s["start"], s["end"]) for a, b, n in enrolled for s in segments
                    if s["speaker"] == n)
        assert right / sum(b - a for a, b, _ in enrolled) >= 0.9


def test_open_set_false_names_every_segment_and_the_default_leaves_the_stranger_unknown(known_turns):
    from click.testing import CliRunner

    from speech_tl.cli import main

    db, _, _, _, truth, path = known_turns
    r = CliRunner().invoke(main, ["identify", "--db", str(db), str(path), "--segments", "--json"])
    assert r.exit_code == 0, r.stderr
    default = json.loads(r.stdout)
    assert default["open_set"] is True and default["threshold_origin"] == "enrolled"
    stranger = [(a, b) for a, b, n in truth if n == "unknown"]
    unknown = sum(overlap(a, b, s["start"], s["end"]) for a, b in stranger for s in default["segments"]
                  if s["speaker"] == "unknown")
    assert unknown / sum(b - a for a, b in stranger) >= 0.8
    r = CliRunner().invoke(main, ["identify", "--db", str(db), str(path), "--segments", "--json", "--open-set",
                                  "false"])
    assert r.exit_code == 0, r.stderr
    closed = json.loads(r.stdout)
    enrolled = {n for *_, n in truth if n != "unknown"}
    assert closed["open_set"] is False and closed["segments"]
    assert all(s["speaker"] in enrolled for s in closed["segments"])
    r = CliRunner().invoke(main, ["identify", "--db", str(db), str(path), "--open-set", "false"])
    assert r.exit_code == 2 and "--open-set and --min-score are for --segments" in r.stderr
    r = CliRunner().invoke(main, ["identify", "--db", str(db), str(path), "--segments", "--min-score", "0.99"])
    assert r.exit_code == 0 and "named above 0.990 (min_score)" in r.stdout
    assert all(line.split()[2] == "unknown" for line in r.stdout.splitlines()[1:])


def test_a_stranger_answering_without_a_pause_is_not_given_the_enrolled_name(known_turns, voice_clips):  # noqa: F811
    """One stretch of speech (0.05 s between the voices: one VAD region): an enrolled voice, then a stranger whose
    best enrolled match is that voice. The change of voice splits the stretch; the stranger's part is unknown."""
    from tests.speaker.enroll_helpers import ENROLLED, STRANGER, voice_id

    _, reg, embedder, _, _, _ = known_turns
    judge = reg.judge(embedder)
    second = load_audio(voice_clips[voice_id(STRANGER)][3])
    windows_of_second = embedder.embed_many([second[i:i + 24000] for i in range(0, second.numel() - 24000, 12000)])
    a = judge.names[int(np.bincount(judge.score(windows_of_second.numpy()).argmax(1)).argmax())]
    assert a in {voice_id(s) for s in ENROLLED}  # the enrolled voice the stranger's windows are most like
    first = load_audio(voice_clips[a][3])
    first = first[: int(speech_regions(first)[-1][1] * 16000)]  # the clips' own silences cut: no pause between
    second = second[int(speech_regions(second)[0][0] * 16000):]
    wave = torch.cat([first, torch.zeros(800), second])
    assert len(speech_regions(wave)) == 1
    split = (first.numel() + 400) / 16000
    segments = label_recording(wave, embedder.embed_many, judge)
    end = wave.numel() / 16000
    named = sum(overlap(0, split, s["start"], s["end"]) for s in segments if s["speaker"] == a)
    unknown = sum(overlap(split, end, s["start"], s["end"]) for s in segments if s["speaker"] == "unknown")
    speech_a = sum(b - x for x, b in speech_regions(first))
    speech_s = sum(b - x for x, b in speech_regions(second))
    assert named / speech_a >= 0.8 and unknown / speech_s >= 0.6, segments
