"""The ASR probe on the tone-spelling corpus with a tiny random Whisper saved locally."""

from __future__ import annotations

import json

from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.probe.recommend import recommend_depth
from tests.overwrite_check import refused_unless_overwrite


def test_probe_learns_the_letters_and_recommends_a_depth(tone_corpus, tiny_whisper, tmp_path):
    out = tmp_path / "probe.json"
    r = CliRunner().invoke(main, ["probe", "asr", tiny_whisper, str(tone_corpus / "train.jsonl"), "--eval",
                                  str(tone_corpus / "dev.jsonl"), "--out", str(out), "--steps", "250"])
    assert r.exit_code == 0, r.output
    p = json.loads(out.read_text())
    assert p["task"] == "probe" and p["probe"] == "asr" and p["num_layers"] == 2
    assert [row["depth"] for row in p["layers"]] == [0, 1, 2]
    cers = [row["cer"] for row in p["layers"]]
    assert min(cers) < 0.5  # the pitch of each segment spells a letter: some depth must carry it
    assert p["best_depth"] == cers.index(min(cers))
    assert p["recommended_freeze_depth"] == recommend_depth(cers, p["tolerance"])
    assert f"depth {p['recommended_freeze_depth']}: CER" in r.output and "recommended" in r.output
    assert p["train_utterances"] == 24 and p["eval_utterances"] == 8


def test_probe_without_eval_holds_out_utterances(tone_corpus, tiny_whisper, tmp_path):
    from speech_tl.probe.asr import probe_asr

    p = probe_asr(tiny_whisper, tone_corpus / "train.jsonl", tmp_path / "p.json", steps=5, log=lambda m: None)
    assert p["eval_utterances"] == 6 and "held-out utterances" in p["eval"]  # 3 speakers: utterances, not speakers


def test_probe_refuses_an_existing_output_unless_overwrite(tone_corpus, tiny_whisper, tmp_path):
    out = tmp_path / "probe.json"
    args = ["probe", "asr", tiny_whisper, str(tone_corpus / "train.jsonl"), "--out", str(out), "--steps", "2",
            "--max-utterances", "8"]
    refused_unless_overwrite(args, [out], tmp_path)
    assert json.loads(out.read_text())["probe"] == "asr"
