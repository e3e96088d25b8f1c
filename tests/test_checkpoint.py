"""Checkpoint folders: a kill at each step of a save leaves a complete checkpoint; damaged files are named."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from speech_tl.asr.task import AsrTask
from speech_tl.checkpoint import (
    CheckpointError,
    clean_stale,
    find_checkpoint,
    load_tensors,
    save_checkpoint,
)
from speech_tl.train import Trainer
from tests.tiny_asr import asr_config


def files(version: int) -> dict:
    return {"model.pt": {"w": torch.full((3,), float(version))}, "meta.json": {"step": version}}


def version_of(folder) -> int:
    meta = json.loads((folder / "meta.json").read_text())
    assert load_tensors(folder / "model.pt")["w"][0].item() == meta["step"], "a folder mixing two saves"
    return meta["step"]


def save_killed_at(folder, version: int, kill_at: int) -> bool:
    """Run a save in a forked child that dies (``os._exit``, no clean-up) at its ``kill_at``-th rename,
    delete or directory sync. True when the save finished before that point."""
    pid = os.fork()
    if pid == 0:  # the child: count the file-system steps of the save and die at one
        calls = {"n": 0}

        def dying(fn):
            def step(*a, **k):
                if calls["n"] == kill_at:
                    os._exit(9)
                calls["n"] += 1
                return fn(*a, **k)
            return step

        import speech_tl.checkpoint as ck
        os.replace = dying(os.replace)
        shutil.rmtree = dying(shutil.rmtree)
        ck._sync_dir = dying(ck._sync_dir)
        save_checkpoint(folder, files(version))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_a_kill_at_any_step_of_a_save_leaves_a_complete_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint"
    version = 1
    save_checkpoint(folder, files(version))
    for kill_at in range(20):  # every step of a save, then the save that follows it
        finished = save_killed_at(folder, version + 1, kill_at)
        found = find_checkpoint(folder)
        assert found is not None, f"no checkpoint after a kill at step {kill_at}"
        assert version_of(found) in (version, version + 1)
        version = version_of(found)
        # the next save (after a kill at the same point) must not lose the only copy either
        finished_again = save_killed_at(folder, version + 1, kill_at)
        found = find_checkpoint(folder)
        assert found is not None and version_of(found) in (version, version + 1), kill_at
        version = version_of(found)
        if finished and finished_again:
            break
    else:
        pytest.fail("a save has more steps than the test tries")
    save_checkpoint(folder, files(version + 1))  # a clean save removes what the kills left
    assert version_of(folder) == version + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_stale_temporary_folders_are_removed_but_not_other_folders(tmp_path):
    folder = tmp_path / "best"
    (tmp_path / ".best.tmp-abc").mkdir()
    (tmp_path / ".best.old.trash-1234").mkdir()
    legacy = tmp_path / ".best.k2j4_x9q"  # a temporary folder of an older version: checkpoint files only
    legacy.mkdir()
    (legacy / "model.pt").write_bytes(b"x")
    mine = tmp_path / ".best.notes123"  # 8 characters too, but it holds a user's file
    mine.mkdir()
    (mine / "notes.md").write_text("keep me")
    removed = clean_stale(folder)
    assert sorted(p.name for p in removed) == [".best.k2j4_x9q", ".best.old.trash-1234", ".best.tmp-abc"]
    assert (mine / "notes.md").read_text() == "keep me"


def test_a_truncated_file_is_named(tmp_path):
    folder = save_checkpoint(tmp_path / "c", files(1))
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c/model\.pt: cannot be read .* truncated or corrupt"):
        load_tensors(folder / "model.pt")


def quiet(*_a, **_k):
    pass


def test_resume_falls_back_to_the_previous_copy_when_a_file_is_truncated(tone_corpus, tiny_whisper, tmp_path):
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "run", max_steps=9, checkpoint_every=3)
    Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet).run(stop_at_step=3)
    run = tmp_path / "run"
    shutil.copytree(run / "checkpoint", run / ".checkpoint.old")  # the copy a kill inside the next save keeps
    opt = run / "checkpoint" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    logs = []
    Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, logs.append).run()
    assert any(f"{opt}: cannot be read" in m and "trying the previous copy" in m for m in logs), logs
    assert any("resuming from step 3" in m and ".checkpoint.old" in m for m in logs), logs
    assert json.loads((run / "checkpoint" / "meta.json").read_text())["step"] == 9

    opt.write_bytes(opt.read_bytes()[:100])  # no previous copy now: a clear error naming the file
    with pytest.raises(CheckpointError, match=r"no readable checkpoint to resume .*optimizer\.pt"):
        Trainer(AsrTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet).run()


def test_fingerprint_covers_zero_dim_tensors_like_batchnorm_counters():
    """BatchNorm keeps num_batches_tracked as a 0-dim tensor (ECAPA-TDNN has many): fingerprinted, not a crash."""
    from speech_tl.checkpoint import fingerprint

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    before = fingerprint(net)
    assert before == fingerprint({k: v.clone() for k, v in net.state_dict().items()})
    net.train()(torch.randn(5, 3))  # counts a batch (and moves the running statistics)
    assert fingerprint(net) != before
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["1.num_batches_tracked"] += 1
    assert fingerprint(state) != fingerprint(net)
