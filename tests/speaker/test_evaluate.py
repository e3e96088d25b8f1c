"""End to end: ``evaluate speaker ge2e:resemblyzer`` on synthetic TTS voices and on real speech (FSDD)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from speech_tl.audio import resample
from speech_tl.cli import main
from speech_tl.manifest import read_manifest
from speech_tl.prepare.tts import ToolMissing, Voice, require_voice, synthesize
from speech_tl.speaker.evaluate import evaluate_speaker
from tests.overwrite_check import refused_unless_overwrite

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"
VOICES = [Voice("mbrola", "mb-de2", "de"), Voice("mbrola", "mb-fr1", "en"), Voice("pico", "en-GB", "en"),
          Voice("espeak", "en+m3", "en")]
COHORT_VOICES = [Voice("espeak", "en+f2", "en"), Voice("pico", "en-US", "en")]
TEXTS = {"de": ["Der Zug nach Berlin hat heute Verspätung.", "Wir treffen uns morgen früh am Bahnhof.",
                "Das Wetter bleibt die ganze Woche sonnig.", "Bitte schließen Sie die Tür hinter sich."],
         "en": ["The train to London is running late today.", "We will meet tomorrow morning at the station.",
                "The weather stays sunny for the whole week.", "Please close the door behind you."]}


def _write_corpus(folder: Path, voices: list[Voice], clips: int) -> Path:
    rows = []
    for v in voices:
        for k, text in enumerate(TEXTS[v.language][:clips]):
            wave, sr = synthesize(v, text)
            audio = f"{v.id}/{k:02d}.wav"
            (folder / v.id).mkdir(parents=True, exist_ok=True)
            sf.write(folder / audio, resample(torch.from_numpy(wave), sr).numpy(), 16000, subtype="PCM_16")
            rows.append({"id": f"{v.id}-{k:02d}", "audio": audio, "duration": len(wave) / sr, "text": text,
                         "speaker": v.id, "language": v.language})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    try:
        for v in VOICES + COHORT_VOICES:
            require_voice(v)
    except ToolMissing as e:
        pytest.skip(f"text-to-speech voices missing (espeak-ng, mbrola, pico2wave): {e}")
    root = tmp_path_factory.mktemp("tts")
    return _write_corpus(root / "eval", VOICES, 4), _write_corpus(root / "cohort", COHORT_VOICES, 3)


def _strict_json(path: Path) -> dict:
    def no_constant(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)


def test_tts_speakers_end_to_end(tts, tmp_path):
    manifest, _ = tts
    out = tmp_path / "results.json"
    r = evaluate_speaker("ge2e:resemblyzer", manifest, out)
    assert _strict_json(out) == json.loads(json.dumps(r))
    print(f"TTS: EER {r['eer']:.4f} {r['eer_ci95']}, minDCF {r['min_dcf']:.4f}, "
          f"identification {r['identification_accuracy']}")
    assert r["eer"] < 0.2  # 4 clearly different voices; chance is 0.5
    assert r["num_target_trials"] == 4 * 6 and r["num_trials"] == 120  # all C(16, 2) pairs: 24 target, 96 non
    assert r["num_trials"] == r["num_target_trials"] + r["num_nontarget_trials"]
    for key in ("eer", "min_dcf", "eer_threshold", "min_dcf_threshold", "embed_seconds"):
        assert isinstance(r[key], float), key
    assert 0 <= r["min_dcf"] <= 1 and r["eer_ci95"][0] <= r["eer"] <= r["eer_ci95"][1]
    assert 0.0 <= r["identification_accuracy"] <= 1.0 and 0.0 <= r["identification_top5_accuracy"] <= 1.0
    assert r["identification"] == {"enroll_per_speaker": 3, "num_enrolled_speakers": 4, "num_tests": 4}
    assert set(r["per_speaker"]) == {v.id for v in VOICES}
    assert r["model"] == "ge2e:resemblyzer" and len(r["fingerprint"]) == 16 and r["score"] == "cosine"
    assert r["asnorm"] is None and r["manifest"] == str(manifest)
    cal = r["calibration"]
    assert len(cal["thresholds"]) == len(cal["far"]) == len(cal["frr"]) <= 1000
    assert np.all(np.diff(cal["thresholds"]) > 0) and np.all(np.diff(cal["far"]) <= 0)
    assert len(r["det"]["far"]) == len(r["det"]["frr"]) and r["det"]["far"][0] == 1.0
    h = r["score_histogram"]
    assert sum(h["target"]) == 24 and sum(h["nontarget"]) == 96 and len(h["bins"]) == len(h["target"]) + 1
    saved = torch.load(tmp_path / "results.embeddings.pt", weights_only=True)
    assert saved["ids"] == [u.id for u in read_manifest(manifest)] and saved["embeddings"].shape == (16, 256)
    assert torch.allclose(saved["embeddings"].norm(dim=1), torch.ones(16), atol=1e-5)


def test_cli_with_trial_file_and_asnorm_cohort(tts, tmp_path):
    manifest, cohort = tts
    utts = read_manifest(manifest)
    trials = tmp_path / "trials.txt"  # VoxCeleb style, paths relative to the corpus
    trials.write_text("".join(f"{int(a.speaker == b.speaker)} {a.audio} {b.audio}\n"
                              for i, a in enumerate(utts) for b in utts[i + 1:]
                              if i % 3 == 0 or a.speaker == b.speaker),
                      encoding="utf-8")
    n_lines = len(trials.read_text().splitlines())
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["evaluate", "speaker", "ge2e:resemblyzer", str(manifest), "--out", str(out),
                                    "--trials", str(trials), "--cohort", str(cohort), "--asnorm-top-k", "4",
                                    "--enroll-per-speaker", "2"])
    assert res.exit_code == 0, res.output
    assert "EER" in res.output and "AS-Norm EER" in res.output
    r = _strict_json(out)
    assert r["num_trials"] == n_lines and r["trials"] == {"source": str(trials), "label_disagrees_with_manifest": 0}
    a = r["asnorm"]
    assert a["top_k"] == 4 and a["cohort_size"] == 6 and a["cohort_speakers_also_evaluated"] == 0
    # a 2-voice cohort is far too small to help (raw cosine separates these voices perfectly); the arithmetic
    # is checked against brute force in test_scoring.py, here only that the AS-Norm block is complete
    assert 0.0 <= a["eer"] < 0.5 and a["eer_ci95"][0] <= a["eer"] <= a["eer_ci95"][1]
    assert len(a["calibration"]["thresholds"]) > 0 and sum(a["score_histogram"]["target"]) == r["num_target_trials"]
    assert r["identification"]["num_tests"] == 8  # 4 speakers x (4 - 2)


def test_cli_errors_before_embedding(tts, tmp_path):
    manifest, _ = tts
    bad = tmp_path / "trials.txt"
    bad.write_text("1 espeak-en-m3/00.wav espeak-en-m3/01.wav\n0 espeak-en-m3/00.wav nobody/07.wav\n")
    res = CliRunner().invoke(main, ["evaluate", "speaker", "ge2e:resemblyzer", str(manifest), "--out",
                                    str(tmp_path / "r.json"), "--trials", str(bad)])
    assert res.exit_code == 1 and f"{bad}:2:" in res.output and "nobody/07.wav" in res.output
    res = CliRunner().invoke(main, ["evaluate", "speaker", "ge2e:resemblyzer", str(manifest), "--out",
                                    str(tmp_path / "r.json"), "--cohort", str(manifest)])
    assert res.exit_code == 1 and "also evaluated" in res.output
    assert not (tmp_path / "r.json").exists()


def test_unusable_clip_names_the_manifest_line(tmp_path):
    rows = []
    for k, amp in enumerate([0.3, 0.3, 0.0]):  # the third clip is all silence
        t = np.arange(16000) / 16000
        sf.write(tmp_path / f"{k}.wav", (amp * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
        rows.append({"id": f"u{k}", "audio": f"{k}.wav", "duration": 1.0, "text": "", "speaker": "ab"[k % 2],
                     "language": "en"})
    rows.append({**rows[0], "id": "u3", "speaker": "b"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = CliRunner().invoke(main, ["evaluate", "speaker", "ge2e:resemblyzer", str(manifest), "--out",
                                    str(tmp_path / "r.json")])
    assert res.exit_code == 1 and "all silence" in res.output and f"{manifest}:3" in res.output


@pytest.mark.skipif(not FSDD.is_dir(), reason="Free Spoken Digit Dataset not found beside the repo (../shared)")
def test_fsdd_real_speakers(tmp_path):
    """Real speech: 6 speakers x 5 spoken digits (8 kHz, resampled to 16 kHz on loading)."""
    speakers = sorted({p.name.split("_")[1] for p in FSDD.glob("*.wav")})
    assert len(speakers) == 6
    rows = [{"id": f"{s}-{d}", "audio": str(FSDD / f"{d}_{s}_0.wav"), "duration": 0.5, "text": str(d),
             "speaker": s, "language": "en"} for s in speakers for d in range(5)]
    manifest = tmp_path / "fsdd.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = evaluate_speaker("ge2e:resemblyzer", manifest, tmp_path / "fsdd.json", enroll_per_speaker=3)
    print(f"FSDD: EER {r['eer']:.4f} {r['eer_ci95']}, minDCF {r['min_dcf']:.4f}, "
          f"identification {r['identification_accuracy']} / top-5 {r['identification_top5_accuracy']}")
    assert r["num_target_trials"] == 6 * 10 and r["num_trials"] == 435  # all C(30, 2) pairs
    assert r["eer"] < 0.3
    assert r["identification"]["num_tests"] == 12 and 0.0 <= r["identification_accuracy"] <= 1.0


def test_cli_refuses_existing_results_unless_overwrite(pitch_speakers, tmp_path):
    out = tmp_path / "r.json"
    emb = tmp_path / "r.embeddings.pt"
    args = ["evaluate", "speaker", "ge2e:resemblyzer", str(pitch_speakers / "dev.jsonl"), "--out", str(out),
            "--device", "cpu", "--enroll-per-speaker", "1"]
    refused_unless_overwrite(args, [out, emb], tmp_path)  # the embeddings beside OUT are an output as well
    assert _strict_json(out)["num_trials"] > 0 and emb.stat().st_size > 100
