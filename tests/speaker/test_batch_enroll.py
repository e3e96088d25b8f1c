"""Batch enrollment (`enroll --from-folder`, `--from-manifest`) and who spoke when (`identify --segments`) through
the real command, with real voices and the real GE2E model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.speaker.registry import SpeakerRegistry
from speech_tl.speaker.service import SpeakerService, speech_only
from tests.speaker.enroll_helpers import (  # noqa: F401  (fixtures)
    BAD_REASONS,
    ENROLLED,
    STRANGER,
    voice_clips,
    voice_id,
    write_bad_clips,
)


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def speaker_folder(root, voice_clips, bad=None):  # noqa: F811
    """root/<voice>/<clips 0-2>; with ``bad``, one unusable clip of each kind in the first voice's folder."""
    for spec in ENROLLED:
        v = voice_id(spec)
        (root / v).mkdir(parents=True)
        for c in voice_clips[v][:3]:
            shutil.copy(c, root / v / c.name)
    if bad:
        for path in bad.values():
            shutil.copy(path, root / voice_id(ENROLLED[0]) / f"bad-{path.name}")
    (root / voice_id(ENROLLED[0]) / "notes.txt").write_text("not audio, not a clip: ignored\n")
    return root


def test_from_folder_enrolls_everyone_lists_bad_clips_and_skips_what_is_enrolled(tmp_path, voice_clips):  # noqa: F811
    bad = write_bad_clips(tmp_path / "bad")
    folder = speaker_folder(tmp_path / "people", voice_clips, bad)
    db = tmp_path / "s.db"
    code, out, err = run("enroll", "--db", db, "--from-folder", folder, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert sorted((x["speaker"], x["added"]) for x in r["speakers"]) == sorted((voice_id(s), 3) for s in ENROLLED)
    assert r["enrolled_clips"] == 9 and r["skipped"] == []
    reasons = {x["clip"].rsplit("bad-", 1)[1]: x["reason"] for x in r["refused"]}
    assert sorted(reasons) == sorted(p.name for p in bad.values())
    for kind, words in BAD_REASONS.items():
        assert words in reasons[bad[kind].name], reasons
    assert "4 clip(s) refused" in err and err.count("not enrolled: ") == 4
    with SpeakerRegistry(db, readonly=True) as reg:
        assert [(n, k) for n, k, _ in reg.speakers()] == sorted((voice_id(s), 3) for s in ENROLLED)
    # again, with one more clip: only that one is embedded and added
    extra = voice_clips[voice_id(ENROLLED[1])][3]
    shutil.copy(extra, folder / voice_id(ENROLLED[1]) / extra.name)
    code, out, _ = run("enroll", "--db", db, "--from-folder", folder)
    assert code == 0 and out.startswith(f"enrolled 1 clip(s) of 1 speaker(s) -> {db}; skipped 9 already enrolled")
    # the enrolled speakers are found
    code, out, _ = run("identify", "--db", db, voice_clips[voice_id(ENROLLED[2])][3], "--json")
    assert json.loads(out)["speaker"] == voice_id(ENROLLED[2])


def test_from_manifest_uses_the_speaker_field_and_segments(tmp_path, voice_clips):  # noqa: F811
    a, b = voice_id(ENROLLED[0]), voice_id(ENROLLED[1])
    wa, sr = sf.read(voice_clips[a][0], dtype="float32")
    wb, _ = sf.read(voice_clips[b][0], dtype="float32")
    both = tmp_path / "both.wav"
    sf.write(both, np.concatenate([wa, wb]), sr)
    rows = [{"id": "a0", "audio": "both.wav", "duration": round(len(wa) / sr, 3), "offset": 0.0, "text": "",
             "speaker": "Anna", "language": "de"},
            {"id": "b0", "audio": "both.wav", "duration": round(len(wb) / sr, 3), "offset": round(len(wa) / sr, 3),
             "text": "", "speaker": "Bert", "language": "en"},
            {"id": "a1", "audio": str(voice_clips[a][1]), "duration": 2.0, "text": "", "speaker": "Anna",
             "language": "de"},
            {"id": "gone", "audio": "gone.wav", "duration": 1.0, "text": "", "speaker": "Carl", "language": "de"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run("enroll", "--db", tmp_path / "s.db", "--from-manifest", manifest, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert sorted((x["speaker"], x["n_clips"]) for x in r["speakers"]) == [("Anna", 2), ("Bert", 1)]
    assert [(x["speaker"], "file not found" in x["reason"]) for x in r["refused"]] == [("Carl", True)]
    code, out, _ = run("identify", "--db", tmp_path / "s.db", voice_clips[b][2], "--json")
    assert json.loads(out)["speaker"] == "Bert"


def test_batch_enroll_argument_errors(tmp_path, voice_clips):  # noqa: F811
    clip = voice_clips[voice_id(ENROLLED[0])][0]
    assert run("enroll", "--db", tmp_path / "s.db", "--from-folder", tmp_path, "--speaker", "x", clip)[0] == 2
    assert run("enroll", "--db", tmp_path / "s.db", clip)[0] == 2  # clips without --speaker
    (tmp_path / "empty" / "anna").mkdir(parents=True)
    code, _, err = run("enroll", "--db", tmp_path / "s.db", "--from-folder", tmp_path / "empty")
    assert code == 1 and "no audio files" in err and "'anna'" in err
    # every clip refused: exit 1, nothing created
    bad = write_bad_clips(tmp_path / "only-bad" / "anna")
    code, _, err = run("enroll", "--db", tmp_path / "s.db", "--from-folder", tmp_path / "only-bad")
    assert code == 1 and f"nothing enrolled: all {len(bad)} clip(s) refused" in err
    assert not (tmp_path / "s.db").exists()


def test_identify_segments_json_and_rttm(tmp_path, voice_clips):  # noqa: F811
    """A recording of enrolled voices and a stranger, with pauses: at least 90% of its speech time labelled right."""
    folder = speaker_folder(tmp_path / "people", voice_clips)
    db = tmp_path / "s.db"
    assert run("enroll", "--db", db, "--from-folder", folder)[0] == 0
    order = [voice_id(ENROLLED[0]), voice_id(STRANGER), voice_id(ENROLLED[1]), voice_id(ENROLLED[2]),
             voice_id(ENROLLED[0])]
    parts, truth, t = [], [], 0.0
    for k, v in enumerate(order):
        x, sr = sf.read(voice_clips[v][3 if k < 4 else 2], dtype="float32")
        regions = [(a, b) for a, b in _regions(x)]
        truth += [(t + a, t + b, v if v != voice_id(STRANGER) else "unknown") for a, b in regions]
        gap = np.zeros(int(0.7 * sr), np.float32)
        parts += [x, gap]
        t += (len(x) + len(gap)) / sr
    recording = tmp_path / "meeting.wav"
    sf.write(recording, np.concatenate(parts), sr)
    with SpeakerRegistry(db) as reg:  # the stranger scores <= 0.67 against the enrolled voices (enroll_helpers)
        reg.set_threshold(0.72, "test: between this stranger's and the voices' own GE2E scores")
    rttm = tmp_path / "meeting.rttm"
    code, out, err = run("identify", "--db", db, recording, "--segments", "--json", "--rttm", rttm)
    assert code == 0, err
    r = json.loads(out)
    segments = r["segments"]
    assert all(set(s) == {"start", "end", "speaker", "score", "cluster"} for s in segments)
    assert r["threshold"] == 0.72 and r["threshold_origin"] == "user" and r["open_set"] is True
    total = sum(b - a for a, b, _ in truth)
    right = sum(max(0.0, min(b, s["end"]) - max(a, s["start"])) for a, b, name in truth for s in segments
                if s["speaker"] == name)
    assert right / total >= 0.9, (right / total, segments, truth)
    lines = rttm.read_text().splitlines()
    assert len(lines) == len(segments) and all(x.startswith("SPEAKER meeting 1 ") for x in lines)
    # the RTTM is not replaced without --overwrite
    code, _, err = run("identify", "--db", db, recording, "--segments", "--rttm", rttm)
    assert code == 1 and "--overwrite" in err


def _regions(x: np.ndarray) -> list[tuple[float, float]]:
    from speech_tl.speaker.segments import speech_regions

    return speech_regions(torch.from_numpy(x))


def test_speech_only_drops_silence_but_keeps_a_clip_with_little_speech(voice_clips):  # noqa: F811
    x, sr = sf.read(voice_clips[voice_id(ENROLLED[0])][0], dtype="float32")
    wave = torch.from_numpy(np.concatenate([np.zeros(2 * sr, np.float32), x, np.zeros(2 * sr, np.float32)]))
    trimmed = speech_only(wave)
    assert len(x) * 0.6 < trimmed.numel() < len(x) + 0.5 * sr  # about the speech, without the 4 s of silence
    tiny = torch.from_numpy(x[: sr // 4].copy())
    assert torch.equal(speech_only(tiny), tiny)


def test_uploaded_audio_is_checked_and_named_as_uploaded(tmp_path, voice_clips):  # noqa: F811
    folder = speaker_folder(tmp_path / "people", voice_clips)
    db = tmp_path / "s.db"
    assert run("enroll", "--db", db, "--from-folder", folder)[0] == 0
    from speech_tl.audio import AudioError
    from speech_tl.speaker.service import ClipTooLongError, Limits

    service = SpeakerService(db, readonly=True, limits=Limits(max_seconds=2.0))
    with pytest.raises(AudioError, match=r"^phone\.wav: unreadable") as e:
        service.load_bytes(b"RIFF nonsense", "phone.wav")
    assert "speech-tl-upload" not in str(e.value)
    with pytest.raises(ClipTooLongError, match=r"^long\.wav: .*limit of 2 s"):
        service.load_bytes(voice_clips[voice_id(ENROLLED[0])][0].read_bytes(), "long.wav")


def test_audio_soundfile_cannot_read_is_refused_with_the_reason_not_skipped(tmp_path, voice_clips,  # noqa: F811
                                                                             no_ffmpeg):
    """An m4a on a machine without ffmpeg (which decodes m4a) is refused with the reason, not skipped."""
    folder = speaker_folder(tmp_path / "people", voice_clips)
    (folder / voice_id(ENROLLED[0]) / "phone.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    code, out, err = run("enroll", "--db", tmp_path / "s.db", "--from-folder", folder, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert [(x["clip"].rsplit("/", 1)[1], "convert it first" in x["reason"]) for x in r["refused"]] == \
        [("phone.m4a", True)]
    assert r["enrolled_clips"] == 9
