"""tune-decoder: a grid over greedy and beam search with the LM, the best saved into the checkpoint and used."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from speech_tl.cli import main
from tests.asr.test_cli_asr import trained  # noqa: F401  (the module's trained tiny run)


def test_tune_decoder_writes_decoder_json_and_evaluate_follows_it(trained, tone_corpus, tmp_path):  # noqa: F811
    dev = str(tone_corpus / "dev.jsonl")
    result = CliRunner().invoke(main, ["tune-decoder", str(trained), dev, "--beam", "4", "--lm-weights", "0,0.5",
                                       "--word-scores", "0"])
    assert result.exit_code == 0, result.output
    tuned = json.loads((trained / "best" / "decoder.json").read_text())
    assert tuned["tuned_on"] == dev and tuned["metric"] == "cer" and tuned["num_utterances"] > 0
    grid = tuned["grid"]
    assert grid[0]["beam"] == 0 and len(grid) == 3  # greedy, then a char LM: one word score per weight
    assert tuned["cer"] == min(r["cer"] for r in grid)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["evaluate", "asr", str(trained), dev, "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    expected = "greedy" if tuned["beam"] == 0 else f"beam {tuned['beam']}"
    assert r["decoding"].startswith(expected) and r["cer"] == tuned["cer"]
    forced = CliRunner().invoke(main, ["evaluate", "asr", str(trained), dev, "--out", str(out), "--beam", "0",
                                       "--overwrite"])
    assert forced.exit_code == 0 and json.loads(out.read_text())["decoding"] == "greedy"


def test_tune_decoder_refuses_bad_grids(trained, tone_corpus):  # noqa: F811
    result = CliRunner().invoke(main, ["tune-decoder", str(trained), str(tone_corpus / "dev.jsonl"),
                                       "--lm-weights", "a,b"])
    assert result.exit_code != 0 and "comma-separated numbers" in result.output


def test_tune_decoder_refuses_to_replace_a_tuning_unless_overwrite(trained, tone_corpus, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    decoder = run / "best" / "decoder.json"
    decoder.write_text('{"beam": 0, "lm_weight": 0, "word_score": 0}')
    before = decoder.read_bytes()
    args = ["tune-decoder", str(run), str(tone_corpus / "dev.jsonl"), "--beam", "4", "--lm-weights", "0.5",
            "--word-scores", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and str(decoder) in line and "--overwrite" in line
    assert decoder.read_bytes() == before
    result = CliRunner().invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(decoder.read_text())["tuned_on"] == str(tone_corpus / "dev.jsonl")
