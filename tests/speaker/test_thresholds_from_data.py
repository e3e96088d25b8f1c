"""Thresholds without extra work (issue: who spoke when should name the people): the enrolled clips calibrate the
threshold once there are enough, else GE2E's shipped calibration, else the placeholder; each answer says where its
threshold came from, and a set threshold stays until `speakers calibrate --auto`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.metrics import eer
from speech_tl.speaker.registry import DEFAULT_PROVENANCE, DEFAULT_THRESHOLD, ModelInfo, SpeakerRegistry
from speech_tl.speaker.registry.auto_threshold import MIN_TARGET_TRIALS, PROBE_MARGIN, SHIPPED, UNIT_SLACK
from tests.speaker.enroll_helpers import ENROLLED, voice_clips, voice_id  # noqa: F401  (fixture)


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def loo_thresholds(groups: list[np.ndarray]) -> tuple[float, float]:
    """The EER thresholds the module docstring promises, computed here from scratch: leave-one-out clip vs
    centroid of the speaker's other clips against clip vs other speakers' centroids; and clip vs clip."""
    cents = unit(np.stack([g.mean(0) for g in groups]))
    tgt = [float(g[i] @ unit(np.delete(g, i, 0).mean(0))) for g in groups for i in range(len(g))]
    non = [float(x @ cents[t]) for s, g in enumerate(groups) for x in g for t in range(len(groups)) if t != s]
    same = [float(g[i] @ g[j]) for g in groups for i in range(len(g)) for j in range(i + 1, len(g))]
    diff = [float(x @ y) for s, g in enumerate(groups) for h in groups[s + 1:] for x in g for y in h]
    thr = eer(np.r_[tgt, non], np.r_[np.ones(len(tgt)), np.zeros(len(non))])[1]
    pair = eer(np.r_[same, diff], np.r_[np.ones(len(same)), np.zeros(len(diff))])[1]
    return thr, pair


def test_the_threshold_comes_from_the_enrolled_clips_shipped_or_placeholder_and_says_which(voice_clips,  # noqa: F811
                                                                                            tmp_path):
    from speech_tl.audio import load_audio
    from speech_tl.speaker.embedder import load_embedder

    embedder = load_embedder("ge2e:resemblyzer")
    groups = {}
    db = tmp_path / "s.db"
    with SpeakerRegistry(db) as reg:
        first = voice_id(ENROLLED[0])
        groups[first] = embedder.embed_many([load_audio(c) for c in voice_clips[first][:3]]).numpy()
        reg.enroll(first, list(groups[first]), [str(c) for c in voice_clips[first][:3]], model=embedder)
        m = reg.meta()  # one speaker: no non-target trials yet, so GE2E's shipped calibration
        assert m["threshold_origin"] == "shipped" and "Common Voice" in m["threshold_provenance"]
        assert m["threshold"] == pytest.approx(SHIPPED[embedder.fingerprint]["threshold"] + PROBE_MARGIN)
        for spec in ENROLLED[1:]:
            v = voice_id(spec)
            groups[v] = embedder.embed_many([load_audio(c) for c in voice_clips[v][:3]]).numpy()
            reg.enroll(v, list(groups[v]), [str(c) for c in voice_clips[v][:3]], model=embedder)
        m = reg.meta()
        thr, pair = loo_thresholds(list(groups.values()))
        assert 9 >= MIN_TARGET_TRIALS and m["threshold_origin"] == "enrolled"
        assert m["threshold"] == pytest.approx(thr + PROBE_MARGIN, abs=1e-6)
        assert m["cluster_threshold"] == pytest.approx(pair - UNIT_SLACK, abs=1e-6)
        assert "9 leave-one-out target and 18 non-target trials" in m["threshold_provenance"]
        probe = groups[first][0]
        assert reg.identify(probe, model=embedder)["threshold"] == pytest.approx(thr + PROBE_MARGIN, abs=1e-6)
    code, out, _ = run("speakers", "list", "--db", db, "--json")
    listed = json.loads(out)
    assert code == 0 and listed["threshold_origin"] == "enrolled" and listed["threshold"] == pytest.approx(
        thr + PROBE_MARGIN, abs=1e-6)
    code, out, _ = run("speakers", "list", "--db", db)
    assert code == 0 and f"threshold {thr + PROBE_MARGIN:.4f} (enrolled): calibrated on the enrolled clips" in out

    # a threshold someone sets stays, through later enrollments, until --auto
    with SpeakerRegistry(db) as reg:
        reg.set_threshold(0.8, "test: chosen by hand")
        reg.enroll(first, [groups[first][0] * 0.9 + 0.1 * groups[voice_id(ENROLLED[1])][0]], ["mix.wav"],
                   model=embedder)
        assert (reg.meta()["threshold"], reg.meta()["threshold_origin"]) == (0.8, "user")
    code, out, _ = run("speakers", "calibrate", "--db", db, "--auto")
    assert code == 0 and "(enrolled: calibrated on the enrolled clips" in out
    with SpeakerRegistry(db, readonly=True) as reg:
        assert reg.meta()["threshold_origin"] == "enrolled"
    code, _, err = run("speakers", "calibrate", "--db", db)
    assert code == 2 and "give RESULTS.json, or --auto" in err


def test_a_model_without_a_shipped_calibration_keeps_the_placeholder_until_enough_clips(tmp_path):
    model = ModelInfo("random:test", "0000000000000001", 8)
    rng = np.random.default_rng(0)
    with SpeakerRegistry(tmp_path / "s.db") as reg:
        reg.enroll("a", list(rng.normal(size=(2, 8))), ["a0", "a1"], model=model)
        reg.enroll("b", list(rng.normal(size=(2, 8))), ["b0", "b1"], model=model)
        m = reg.meta()  # 4 leave-one-out trials < MIN_TARGET_TRIALS
        assert (m["threshold"], m["threshold_origin"], m["threshold_provenance"]) == (
            DEFAULT_THRESHOLD, "default", DEFAULT_PROVENANCE)
        reg.enroll("c", list(rng.normal(size=(2, 8))), ["c0", "c1"], model=model)
        assert reg.meta()["threshold_origin"] == "enrolled"
        reg.remove("c")
        assert reg.meta()["threshold_origin"] == "default"


def test_a_few_easy_enrolled_voices_never_lower_the_threshold_below_the_shipped_one(tmp_path):
    """Three well-separated voices put the enrolled clips' own EER threshold low; strangers score like the
    shipped calibration's non-targets, so the threshold stays at the shipped one, and says why."""
    fingerprint = next(iter(SHIPPED))
    model = ModelInfo("ge2e:resemblyzer", fingerprint, 8)
    rng = np.random.default_rng(1)
    with SpeakerRegistry(tmp_path / "s.db") as reg:
        for k, name in enumerate("abc"):
            base = np.eye(8)[k] * 4
            reg.enroll(name, list(base + rng.normal(size=(3, 8))), [f"{name}{i}" for i in range(3)], model=model)
        m = reg.meta()
        assert m["threshold_origin"] == "shipped"
        assert m["threshold"] == pytest.approx(SHIPPED[fingerprint]["threshold"] + PROBE_MARGIN)
        assert "the enrolled clips' own threshold" in m["threshold_provenance"]
        assert "is lower" in m["threshold_provenance"]
