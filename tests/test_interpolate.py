"""WiSE-FT interpolation of a real (short) GE2E adaptation towards resemblyzer's pretrained weights."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from speech_tl.backbones import load_backbone
from speech_tl.checkpoint import CheckpointError, load_tensors, read_meta
from speech_tl.cli import main
from speech_tl.interpolate import interpolate_checkpoint, interpolate_state
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.task import train_speaker
from tests.tiny_speakers import speaker_config


@pytest.fixture(scope="module")
def adapted(pitch_speakers, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapt") / "run"
    train_speaker(speaker_config(pitch_speakers, out, max_steps=6, eval_every=6, lr=5e-3), lambda *a: None)
    return out


def test_alpha_walks_the_line_between_pretrained_and_finetuned(adapted, tmp_path):
    pre = load_backbone("ge2e:resemblyzer").state_dict()
    ft = load_tensors(adapted / "best" / "model.pt")
    name = "backbone.layers.2.weight_hh_l0"
    assert name in ft and not torch.equal(ft[name], pre[name[len("backbone."):]])
    for alpha in (0.0, 0.5, 1.0):
        meta = interpolate_checkpoint(adapted, alpha, tmp_path / f"a{alpha}")
        got = load_tensors(tmp_path / f"a{alpha}" / "model.pt")
        want = pre[name[9:]] + alpha * (ft[name] - pre[name[9:]])
        assert torch.allclose(got[name], want, atol=1e-6)
        frozen = "backbone.layers.0.weight_ih_l0"
        assert torch.equal(got[frozen], pre[frozen[9:]])  # frozen layers stay pretrained
        assert torch.equal(got["head.weight"], ft["head.weight"])  # the new head has no pretrained value
        assert meta["interpolation"]["alpha"] == alpha and meta["task"] == "speaker"
        assert not (tmp_path / f"a{alpha}" / "optimizer.pt").exists()
    # alpha 0 embeds exactly like the unadapted model; alpha 1 like the adapted one
    wave = torch.randn(24000) * 0.1
    base, tuned = load_embedder("ge2e:resemblyzer"), load_embedder(str(adapted))
    zero, one = load_embedder(str(tmp_path / "a0.0")), load_embedder(str(tmp_path / "a1.0"))
    assert torch.allclose(zero.embed(wave), base.embed(wave), atol=1e-5)
    assert torch.allclose(one.embed(wave), tuned.embed(wave), atol=1e-6)
    half = load_embedder(str(tmp_path / "a0.5"))
    assert len({base.fingerprint, tuned.fingerprint, half.fingerprint}) == 3
    assert half.fingerprint == read_meta(tmp_path / "a0.5")["fingerprint"]


def test_cli_writes_a_checkpoint_and_refuses_bad_requests(adapted, tmp_path):
    r = CliRunner().invoke(main, ["interpolate", str(adapted), "--alpha", "0.25", "--out", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert "alpha 0.25" in r.output
    assert json.loads((tmp_path / "w" / "meta.json").read_text())["interpolation"]["alpha"] == 0.25
    assert (tmp_path / "w" / "speakers.json").is_file() and (tmp_path / "w" / "config.yaml").is_file()
    r = CliRunner().invoke(main, ["interpolate", str(adapted), "--alpha", "1.5", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "1.5" in r.output  # a usage error (click's range check)
    r = CliRunner().invoke(main, ["interpolate", str(adapted), "--out", str(adapted)])  # would replace the run
    assert r.exit_code == 1 and "also an input" in r.output and (adapted / "best" / "model.pt").is_file()
    r = CliRunner().invoke(main, ["interpolate", str(adapted), "--out", str(tmp_path / "w")])
    assert r.exit_code == 1 and "exists" in r.output


def test_cli_overwrite_replaces_the_output_only_when_the_new_one_is_complete(adapted, tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    args = ["interpolate", str(adapted), "--as-run", "--alpha", "0.5", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith("error: ") and str(out) in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    r = CliRunner().invoke(main, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["best", "config.yaml", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["interpolation"]["alpha"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary folder left beside it
    # never onto (or into) what it reads, even with --overwrite
    for target in (adapted, adapted / "best"):
        r = CliRunner().invoke(main, ["interpolate", str(adapted), "--out", str(target), "--overwrite"])
        assert r.exit_code == 1 and "also an input" in r.output, r.output
        assert (adapted / "best" / "model.pt").is_file() and (adapted / "summary.json").is_file()


def test_cli_cleans_up_what_a_killed_run_left_beside_the_output(adapted, tmp_path):
    """A run SIGKILLed while writing OUT leaves its temporary folder beside it: the next run removes it. One killed
    inside the final swap leaves the old OUT moved away: the next run puts it back (so without --overwrite it is
    refused, as OUT exists). Hidden entries of other names stay."""
    from tests.killed_write import killed_while_writing

    out = tmp_path / "w"
    killed_while_writing(out, "dir")
    kept = killed_while_writing(tmp_path / "w2", "dir")
    (tmp_path / ".w.notes").write_text("mine")
    args = ["interpolate", str(adapted), "--alpha", "0.5", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert sorted(tmp_path.iterdir()) == sorted([out, tmp_path / ".w.notes", *kept])
    meta = (out / "meta.json").read_bytes()

    left = killed_while_writing(out, "swap")  # .w.old-* (the output) and .w.tmp-* (the new folder)
    assert not out.exists() and len(left) == 2
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and str(out) in r.output and "--overwrite" in r.output, r.output
    assert (out / "meta.json").read_bytes() == meta
    assert sorted(tmp_path.iterdir()) == sorted([out, tmp_path / ".w.notes", *kept])
    r = CliRunner().invoke(main, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(tmp_path.iterdir()) == sorted([out, tmp_path / ".w.notes", *kept])


def test_shape_mismatch_names_the_tensor():
    with pytest.raises(CheckpointError, match="backbone.w: fine-tuned shape"):
        interpolate_state({"backbone.w": torch.zeros(3)}, {"w": torch.zeros(4)}, 0.5)
