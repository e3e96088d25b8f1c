"""speech-tl enroll / identify / verify / speakers: real voices, the real GE2E model, click's CliRunner."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.speaker.registry import SpeakerRegistry
from tests.speaker.enroll_helpers import (  # noqa: F401  (fixtures)
    BAD_REASONS,
    ENROLLED,
    STRANGER,
    ge2e_checkpoint_of_other_weights,
    ge2e_embedder,
    voice_clips,
    voice_id,
    write_bad_clips,
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def db(tmp_path, voice_clips):  # noqa: F811
    """A database with the three ENROLLED voices (3 clips each) made through `speech-tl enroll`."""
    path = tmp_path / "speakers.db"
    for spec in ENROLLED:
        v = voice_id(spec)
        code, out, err = run("enroll", "--db", path, "--speaker", v, *voice_clips[v][:3])
        assert code == 0, err
        assert f"enrolled 3 clip(s) for {v} (new speaker, 3 in total) -> {path}" in out
        assert "uncalibrated placeholder" not in err  # GE2E: its shipped calibration, then the enrolled clips'
    assert SpeakerRegistry(path, readonly=True).meta()["threshold_origin"] == "enrolled"
    return path


def test_enroll_then_identify_and_verify(db, voice_clips):  # noqa: F811
    a, b, c = (voice_id(s) for s in ENROLLED)
    threshold = SpeakerRegistry(db, readonly=True).threshold  # from the enrolled clips
    code, out, _ = run("identify", "--db", db, voice_clips[a][3])
    assert code == 0
    first, *cands = out.strip().splitlines()
    assert first.startswith(f"{voice_clips[a][3]}: {a} (score 0.") and f"threshold {threshold:.3f}" in first
    assert len(cands) == 3 and cands[0].split()[1] == a

    code, out, _ = run("identify", "--db", db, voice_clips[b][3], "--json", "--top", "2")
    r = json.loads(out)
    assert code == 0 and list(r) == ["speaker", "score", "threshold", "candidates"]
    assert r["speaker"] == b and r["threshold"] == threshold and r["score"] > 0.85
    assert len(r["candidates"]) == 2 and all(list(x) == ["speaker", "score"] for x in r["candidates"])
    assert r["candidates"][0] == {"speaker": b, "score": r["score"]}

    code, out, _ = run("verify", "--db", db, "--speaker", c, voice_clips[c][3])
    assert code == 0 and out.startswith(f"accept: {voice_clips[c][3]} is {c} (score 0.")
    code, out, _ = run("verify", "--db", db, "--speaker", c, voice_clips[a][3], "--json")
    r = json.loads(out)
    assert code == 1 and list(r) == ["speaker", "accepted", "score", "threshold"]
    assert r["speaker"] == c and r["accepted"] is False and r["score"] < r["threshold"] == threshold
    code, out, _ = run("verify", "--db", db, "--speaker", c, voice_clips[a][3])
    assert code == 1 and out.startswith("reject: ")
    code, _, err = run("verify", "--db", db, "--speaker", "nobody", voice_clips[a][3])
    # an error of verify exits 2 (1 means "rejected"), as one line
    assert code == 2 and err.startswith("error: ") and "no speaker 'nobody'" in err
    assert len(err.strip().splitlines()) == 1


def test_stranger_is_unknown_after_calibration(db, voice_clips, tmp_path, ge2e_embedder):  # noqa: F811
    results = tmp_path / "results.json"
    calibration = {"thresholds": [0.5, 0.7, 0.8, 0.9], "far": [0.3, 0.1, 0.01, 0.005]}
    results.write_text(json.dumps({"eer_threshold": 0.8, "model_fingerprint": ge2e_embedder.fingerprint,
                                   "calibration": calibration}))
    code, out, _ = run("speakers", "calibrate", "--db", db, results)
    assert code == 0 and out.startswith("threshold 0.8000 (EER threshold of")
    stranger = voice_clips[voice_id(STRANGER)][0]
    code, out, _ = run("identify", "--db", db, stranger)
    assert code == 0 and out.startswith(f"{stranger}: unknown (best ") and "threshold 0.800" in out
    r = json.loads(run("identify", "--db", db, stranger, "--json")[1])
    assert r["speaker"] == "unknown" and r["threshold"] == 0.8 and r["score"] <= 0.8
    code, out, _ = run("speakers", "calibrate", "--db", db, results, "--target-far", "0.05")
    assert code == 0 and out.startswith("threshold 0.8000 (FAR <= 0.05 (FAR 0.01 at this threshold)")
    code, out, _ = run("speakers", "calibrate", "--db", db, results, "--target-far", "0.005")
    assert code == 0 and out.startswith("threshold 0.9000 (FAR <= 0.005 (FAR 0.005 at this threshold)")
    code, _, err = run("speakers", "calibrate", "--db", db, results, "--target-far", "0.001")
    assert code == 1 and "no listed threshold reaches FAR <= 0.001 (lowest FAR 0.005 at threshold 0.9000)" in err
    assert SpeakerRegistry(db).threshold == 0.9


@pytest.mark.parametrize("kind", sorted(BAD_REASONS))
def test_a_bad_clip_refuses_the_whole_call(kind, db, voice_clips, tmp_path):  # noqa: F811
    bad = write_bad_clips(tmp_path / "bad")[kind]
    good = voice_clips[voice_id(STRANGER)]
    with SpeakerRegistry(db) as reg:
        before = (reg.speakers(), reg.meta())
    code, out, err = run("enroll", "--db", db, "--speaker", "stranger", good[0], bad, good[1])
    assert code == 1 and out == ""
    assert err.startswith("error: nothing enrolled: 1 of 3 clip(s) refused: ") and str(bad) in err
    assert BAD_REASONS[kind] in err and len(err.strip().splitlines()) == 1
    with SpeakerRegistry(db) as reg:
        assert (reg.speakers(), reg.meta()) == before
    # into a new database: no file is left behind
    fresh = tmp_path / "fresh.db"
    code, _, err = run("enroll", "--db", fresh, "--speaker", "stranger", bad)
    assert code == 1 and str(bad) in err and not fresh.exists()


def test_missing_clip_is_named(db, tmp_path):
    code, _, err = run("enroll", "--db", db, "--speaker", "x", tmp_path / "nope.wav")
    assert code == 1 and f"{tmp_path / 'nope.wav'}: file not found" in err


def test_the_database_keeps_its_model(tmp_path, voice_clips, db, ge2e_embedder):  # noqa: F811
    other = ge2e_checkpoint_of_other_weights(tmp_path / "other_ge2e.pt")
    v = voice_id(STRANGER)
    code, _, err = run("enroll", "--db", db, "--speaker", v, "--model", other, voice_clips[v][0])
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "ge2e:resemblyzer" in err and ge2e_embedder.fingerprint in err and other in err
    assert v not in [n for n, _, _ in SpeakerRegistry(db).speakers()]

    # a database made with another model keeps using it when --model is not given
    db2 = tmp_path / "other.db"
    assert run("enroll", "--db", db2, "--model", other, "--speaker", v, *voice_clips[v][:2])[0] == 0
    code, out, err = run("enroll", "--db", db2, "--speaker", v, voice_clips[v][2])
    assert code == 0, err
    assert "1 clip(s) for" in out and "3 in total" in out
    with SpeakerRegistry(db2) as reg:
        assert reg.model.source == other and reg.model.fingerprint != ge2e_embedder.fingerprint
    r = json.loads(run("identify", "--db", db2, voice_clips[v][3], "--json")[1])
    assert r["speaker"] == v
    code, _, err = run("enroll", "--db", db2, "--speaker", v, "--model", "ge2e:resemblyzer", voice_clips[v][3])
    assert code == 1 and "refusing model ge2e:resemblyzer" in err


def test_speakers_list_rename_remove(db, voice_clips):  # noqa: F811
    a, b, c = (voice_id(s) for s in ENROLLED)
    code, out, _ = run("speakers", "list", "--db", db)
    assert code == 0
    threshold = SpeakerRegistry(db, readonly=True).threshold
    assert "model ge2e:resemblyzer (fingerprint " in out and f"threshold {threshold:.4f} (enrolled): calibrated on " \
        "the enrolled clips" in out and out.strip().endswith("3 speaker(s), 9 clip(s)")
    listing = json.loads(run("speakers", "list", "--db", db, "--json")[1])
    assert [(s["speaker"], s["clips"]) for s in listing["speakers"]] == sorted((v, 3) for v in (a, b, c))
    assert listing["model_source"] == "ge2e:resemblyzer" and listing["embedding_dim"] == 256

    assert run("speakers", "rename", "--db", db, a, "anna") == (0, f"renamed {a} -> anna in {db}\n", "")
    code, _, err = run("speakers", "rename", "--db", db, "anna", b)
    assert code == 1 and f"speaker '{b}' already exists" in err
    code, _, err = run("speakers", "rename", "--db", db, a, "x")
    assert code == 1 and f"no speaker '{a}'" in err
    assert json.loads(run("identify", "--db", db, voice_clips[a][3], "--json")[1])["speaker"] == "anna"

    assert run("speakers", "remove", "--db", db, b)[:2] == (0, f"removed {b} (3 clip(s)) from {db}\n")
    code, _, err = run("speakers", "remove", "--db", db, b)
    assert code == 1 and f"no speaker '{b}'" in err
    listing = json.loads(run("speakers", "list", "--db", db, "--json")[1])
    assert sorted(s["speaker"] for s in listing["speakers"]) == sorted(["anna", c])
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 6


def test_commands_on_a_missing_database(tmp_path, voice_clips):  # noqa: F811
    missing = tmp_path / "missing.db"
    clip = voice_clips[voice_id(STRANGER)][0]
    for args in (["identify", "--db", missing, clip], ["verify", "--db", missing, "--speaker", "x", clip],
                 ["speakers", "list", "--db", missing], ["speakers", "remove", "--db", missing, "x"],
                 ["speakers", "rename", "--db", missing, "x", "y"],
                 ["speakers", "calibrate", "--db", missing, tmp_path / "r.json"]):
        code, _, err = run(*args)
        assert code == (2 if args[0] == "verify" else 1), (args, err)  # verify: 1 means "rejected"
        assert "no speaker database here" in err and len(err.strip().splitlines()) == 1
    assert not missing.exists()
    code, _, err = run("identify", "--db", tmp_path / "x.db", clip, "--top", "0")
    assert code == 2 and "--top" in err


def test_reading_commands_open_the_database_read_only(db, voice_clips, monkeypatch):  # noqa: F811
    """identify, verify and `speakers list` open the database read-only (so they work where it cannot be written,
    see tests/speaker/test_registry.py) and leave it as it was; names are normalised as everywhere."""
    from speech_tl.speaker import registry, service

    opened = []

    class Spy(registry.SpeakerRegistry):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self.readonly)

    monkeypatch.setattr(registry, "SpeakerRegistry", Spy)
    monkeypatch.setattr(service, "SpeakerRegistry", Spy)
    before = db.read_bytes()
    a = voice_id(ENROLLED[0])
    code, out, _ = run("identify", "--db", db, voice_clips[a][3], "--json")
    assert code == 0 and json.loads(out)["speaker"] == a
    code, out, _ = run("verify", "--db", db, "--speaker", f"  {a} ", voice_clips[a][3])
    assert code == 0 and out.startswith(f"accept: {voice_clips[a][3]} is {a} (score")
    code, out, _ = run("speakers", "list", "--db", db, "--json")
    assert code == 0 and len(json.loads(out)["speakers"]) == 3
    assert len(opened) >= 3 and set(opened) == {True}  # every connection of the three commands was read-only
    assert db.read_bytes() == before
    assert run("speakers", "rename", "--db", db, f" {a}  ", " Anna  Smith ")[:2] == \
        (0, f"renamed {a} -> Anna Smith in {db}\n")
    assert opened[-1] is False
