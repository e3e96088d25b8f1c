"""AS-Norm in the speaker database: the cohort, its scores, the threshold that goes with them, schema version 3."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.speaker.registry import (
    DEFAULT_ASNORM_THRESHOLD,
    DEFAULT_ASNORM_TOP_K,
    DEFAULT_THRESHOLD,
    SCHEMA_VERSION,
    ModelInfo,
    SpeakerConflictError,
    SpeakerRegistry,
    SpeakerRegistryError,
)
from speech_tl.speaker.scoring import asnorm_scores
from tests.speaker.enroll_helpers import ENROLLED, STRANGER, voice_clips, voice_id  # noqa: F401  (fixtures)

MODEL = ModelInfo("random:cohort-test", "cohort0000000000", 32)


def unit(rng, n: int, dim: int = 32) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def reg(tmp_path):
    """Four speakers of one clip each, and a cohort of 150 other embeddings (more than top-k)."""
    rng = np.random.default_rng(0)
    speakers, cohort = unit(rng, 4), unit(rng, 150)
    r = SpeakerRegistry(tmp_path / "s.db")
    for i, e in enumerate(speakers):
        r.enroll(f"s{i}", [e], [f"s{i}.wav"], MODEL)
    yield r, speakers, cohort
    r.close()


def test_a_cohort_switches_scores_to_asnorm_as_scoring_py_computes_them(reg):
    r, speakers, cohort = reg
    probe = unit(np.random.default_rng(1), 1)[0]
    cosine = r.identify(probe, top_k=4, model=MODEL)
    assert cosine["threshold"] == DEFAULT_THRESHOLD
    out = r.add_cohort(list(cohort), [f"c{i}.wav" for i in range(len(cohort))], MODEL)
    assert out == {"added": 150, "cohort_size": 150, "score": "as-norm", "threshold": DEFAULT_ASNORM_THRESHOLD}
    got = r.identify(probe, top_k=4, model=MODEL)
    # the same trials through the evaluation's AS-Norm: rows 0-3 the enrolled speakers, row 4 the probe
    emb = np.vstack([speakers, probe[None]])
    want = asnorm_scores(emb, cohort, [0, 1, 2, 3], [4, 4, 4, 4], top_k=DEFAULT_ASNORM_TOP_K)
    by_name = {c["speaker"]: c["score"] for c in got["candidates"]}
    assert [by_name[f"s{i}"] for i in range(4)] == pytest.approx(want, abs=1e-5)
    assert got["threshold"] == DEFAULT_ASNORM_THRESHOLD
    assert got["speaker"] == (got["candidates"][0]["speaker"] if got["score"] > 0 else "unknown")
    v = r.verify("s2", probe, model=MODEL)
    assert v["score"] == pytest.approx(want[2], abs=1e-5) and v["accepted"] == (want[2] > 0)
    assert r.meta()["score"] == "as-norm"
    # clearing the cohort: cosine again, with the cosine placeholder
    assert r.clear_cohort() == 150
    assert r.identify(probe, top_k=4, model=MODEL) == cosine


def test_the_cohort_refuses_another_model_and_clips_twice(reg):
    r, _, cohort = reg
    r.add_cohort([cohort[0]], ["c0.wav"], MODEL)
    assert r.meta()["score"] == "cosine"  # one cohort embedding gives no standard deviation: still cosine
    with pytest.raises(SpeakerConflictError, match="already in the cohort: c0.wav"):
        r.add_cohort([cohort[1]], ["c0.wav"], MODEL)
    with pytest.raises(SpeakerConflictError, match="refusing model"):
        r.add_cohort([cohort[1]], ["c1.wav"], ModelInfo("random:other", "other00000000000", 32))
    assert r.cohort_clips() == ["c0.wav"]


def test_calibration_reads_the_asnorm_numbers_of_an_evaluation(reg, tmp_path):
    r, _, cohort = reg
    r.add_cohort(list(cohort[:10]), [f"c{i}.wav" for i in range(10)], MODEL)
    cosine_only = tmp_path / "cosine.json"
    cosine_only.write_text(json.dumps({"eer_threshold": 0.7, "asnorm": None}))
    with pytest.raises(SpeakerRegistryError, match="scores with AS-Norm .* no AS-Norm results"):
        r.calibrate_threshold(cosine_only)
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"eer_threshold": 0.7, "asnorm": {"eer_threshold": 1.85, "eer": 0.1,
                                                                 "calibration": {"thresholds": [0.5, 1.5, 2.5],
                                                                                 "far": [0.3, 0.05, 0.01]}}}))
    assert r.calibrate_threshold(both)["threshold"] == 1.85  # beyond [-1, 1]: AS-Norm scores are not cosines
    assert r.calibrate_threshold(both, target_far=0.05)["threshold"] == 1.5


def test_schema_2_is_migrated_to_3_and_read_as_it_is_when_read_only(reg, tmp_path):
    r, speakers, _ = reg
    r.close()
    old = tmp_path / "old.db"
    shutil.copy(tmp_path / "s.db", old)
    con = sqlite3.connect(old)
    con.execute("DROP TABLE cohort")
    con.execute("PRAGMA user_version = 2")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with SpeakerRegistry(old, readonly=True) as ro:  # read as it is: no cohort, cosine
        assert ro.schema_version == 2 and ro.cohort_size() == 0
        assert ro.identify(speakers[1], model=MODEL)["speaker"] == "s1"
    with SpeakerRegistry(old) as rw:  # opened for writing: brought to version 3 in one transaction
        assert rw.schema_version == SCHEMA_VERSION == 3 and rw.cohort_size() == 0
    con = sqlite3.connect(old)
    assert con.execute("PRAGMA user_version").fetchone() == (3,)
    assert [r[1] for r in con.execute("PRAGMA table_info(cohort)")] == ["id", "clip", "embedding", "added"]
    con.close()


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def test_speakers_cohort_command(tmp_path, voice_clips):  # noqa: F811
    db = tmp_path / "s.db"
    a, b = voice_id(ENROLLED[0]), voice_id(ENROLLED[1])
    assert run("enroll", "--db", db, "--speaker", a, *voice_clips[a][:2])[0] == 0
    folder = tmp_path / "others"
    for spec in (ENROLLED[1], ENROLLED[2], STRANGER):
        v = voice_id(spec)
        (folder / v).mkdir(parents=True)
        for c in voice_clips[v]:
            shutil.copy(c, folder / v / c.name)
    (folder / a).mkdir()
    shutil.copy(voice_clips[a][3], folder / a / "mine.wav")  # an enrolled speaker: refused
    code, out, err = run("speakers", "cohort", "--db", db, "--from-folder", folder, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["added"] == 12 and r["cohort_size"] == 12 and r["score"] == "as-norm"
    assert [x["clip"].endswith("mine.wav") and "is enrolled" in x["reason"] for x in r["refused"]] == [True]
    assert "uncalibrated placeholder" in err
    code, out, _ = run("speakers", "cohort", "--db", db, "--from-folder", folder)  # again: nothing new
    assert code == 0 and "0 clip(s) added, 12 in all" in out and "skipped 12 already there" in out
    code, out, _ = run("speakers", "list", "--db", db, "--json")
    assert {k: json.loads(out)[k] for k in ("score", "cohort_size", "threshold")} == \
        {"score": "as-norm", "cohort_size": 12, "threshold": 0.0}
    # the enrolled voice is accepted against AS-Norm's placeholder, another voice is not
    code, out, _ = run("verify", "--db", db, "--speaker", a, voice_clips[a][3], "--json")
    assert code == 0 and json.loads(out)["score"] > 1.0
    code, out, _ = run("verify", "--db", db, "--speaker", a, voice_clips[b][0], "--json")
    assert code == 1 and json.loads(out)["score"] < 0.0
    code, out, _ = run("speakers", "cohort", "--db", db, "--clear")
    assert code == 0 and out.startswith("removed the cohort (12 clip(s)); scores are cosine again")
    assert run("speakers", "cohort", "--db", db)[0] == 2  # nothing to do: a usage error
