"""The speaker probe on real GE2E weights (resemblyzer) and four tone 'voices'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speech_tl.probe.speaker import fit_lda, probe_speaker
from tests.overwrite_check import refused_unless_overwrite


def test_probe_reports_every_depth_on_held_out_speakers(pitch_speakers, tmp_path):
    p = probe_speaker("ge2e:resemblyzer", pitch_speakers / "train.jsonl", tmp_path / "probe.json",
                      log=lambda m: None)
    assert json.loads((tmp_path / "probe.json").read_text()) == p
    assert p["num_layers"] == 3 and [r["depth"] for r in p["layers"]] == [0, 1, 2, 3]
    assert p["eval_speakers"] == 2 and p["train_speakers"] == 2
    assert [r["dim"] for r in p["layers"]] == [40, 256, 256, 256]
    assert all(0 <= r["eer"] <= 1 and r["lda_dim"] == 1 for r in p["layers"])
    # distinct pitches: the mel statistics alone separate the held-out speakers
    assert p["layers"][0]["eer_no_lda"] < 0.2


def test_eval_speakers_must_be_new(pitch_speakers, tmp_path):
    with pytest.raises(ValueError, match="also in"):
        probe_speaker("ge2e:resemblyzer", pitch_speakers / "train.jsonl", tmp_path / "p.json",
                      eval_manifest=pitch_speakers / "dev.jsonl", log=lambda m: None)


def test_cli_refuses_an_existing_output_unless_overwrite(pitch_speakers, tmp_path):
    out = tmp_path / "probe.json"
    args = ["probe", "speaker", "ge2e:resemblyzer", str(pitch_speakers / "train.jsonl"), "--out", str(out),
            "--device", "cpu"]
    refused_unless_overwrite(args, [out], tmp_path)
    assert json.loads(out.read_text())["probe"] == "speaker"


def test_lda_finds_the_discriminative_direction():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    x = rng.standard_normal((150, 5)) * [5, 5, 5, 5, 0.1]
    x[:, 4] += labels  # only the last (low-variance) dimension separates the classes
    proj = fit_lda(x, labels, shrinkage=0.0)
    assert proj.shape == (5, 2)
    assert np.argmax(np.abs(proj[:, 0])) == 4
