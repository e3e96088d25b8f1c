"""Training survives SIGKILL at any moment.

A real ``speech-tl train asr`` process is killed with SIGKILL many times, at random moments and
inside checkpoint saves, and started again each time. Each restart must resume from a checkpoint
no more than one checkpoint interval behind the last step the killed run logged, and the finished
run must equal an uninterrupted one: the same weights, the same loss at every step, each step
logged once, no temporary folders left.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from speech_tl.checkpoint import load_tensors
from speech_tl.config import dump_config
from tests.tiny_asr import asr_config

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY, KILLS = 40, 2, 5


def settings(tone_corpus, tiny_whisper, out):
    return asr_config(tone_corpus, tiny_whisper, out, max_steps=STEPS, checkpoint_every=EVERY, eval_every=15,
                      log_every=1, num_workers=0, tensorboard=False)


def checkpoint_step(run: Path) -> int:
    """The step of the newest complete checkpoint (``checkpoint/`` or, mid-save, ``.checkpoint.old``)."""
    for folder in (run / "checkpoint", run / ".checkpoint.old"):
        try:
            return json.loads((folder / "meta.json").read_text())["step"]
        except (OSError, ValueError):
            continue
    return 0


def saving_now(run: Path) -> bool:
    """A save of ``checkpoint/`` is under way: its temporary folder exists."""
    return any(p.name != ".checkpoint.old" for p in run.glob(".checkpoint.*"))


def logged(run: Path) -> list[dict]:
    path = run / "train_log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def wait_for(condition, proc, timeout=60.0) -> bool:
    """Poll ``condition`` every millisecond; False when the process ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    raise AssertionError("the training process made no progress")


def test_training_survives_sigkill_anywhere(tone_corpus, tiny_whisper, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the uninterrupted run, in a process of its own like the killed ones (the test process's torch settings,
    # e.g. its thread count, may differ, and with them the last bits of a float sum)
    dump_config(settings(tone_corpus, tiny_whisper, tmp_path / "straight"), tmp_path / "straight.yaml")
    done = subprocess.run([sys.executable, "-m", "speech_tl.cli", "train", "asr", str(tmp_path / "straight.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    dump_config(settings(tone_corpus, tiny_whisper, run), config)
    rng = random.Random(12)
    kills, in_save, last_logged, finished = 0, 0, None, False
    for attempt in range(KILLS + 1):
        out = tmp_path / f"attempt{attempt}.log"
        with open(out, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "speech_tl.cli", "train", "asr", str(config)], cwd=REPO,
                                    env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if attempt < KILLS:
                start = checkpoint_step(run)
                wait_for(lambda s=start: checkpoint_step(run) > s, proc)  # progress: this attempt saved a checkpoint
                if attempt % 2:  # inside a save: a few milliseconds after its temporary folder appears
                    for _ in range(50):
                        if not wait_for(lambda: saving_now(run), proc):
                            break
                        time.sleep(rng.uniform(0, 0.004))
                        with contextlib.suppress(ProcessLookupError):  # frozen, so the state seen is the one killed
                            os.killpg(proc.pid, signal.SIGSTOP)
                        if saving_now(run) or (run / ".checkpoint.old").exists():
                            break
                        with contextlib.suppress(ProcessLookupError):  # that save was over: wait for the next one
                            os.killpg(proc.pid, signal.SIGCONT)
                else:
                    time.sleep(rng.uniform(0, 0.15))
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGSTOP)
                saving = saving_now(run) or (run / ".checkpoint.old").exists()
                with contextlib.suppress(ProcessLookupError):  # the run may have ended already
                    os.killpg(proc.pid, signal.SIGKILL)
            finished = proc.wait(timeout=120) == 0
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        text = out.read_text()
        if last_logged is not None:  # the run before this one was killed
            match = re.search(r"resuming from step (\d+)", text)
            resumed = int(match.group(1)) if match else 0
            assert resumed >= last_logged - EVERY, (resumed, last_logged, text[-2000:])
        if finished:
            break
        assert proc.returncode == -signal.SIGKILL, text[-3000:]
        kills += 1
        in_save += saving
        last_logged = max((r["step"] for r in logged(run)), default=0)
    assert finished and kills >= KILLS - 1 and in_save >= KILLS // 2 - 1, (finished, kills, in_save)

    straight, killed = logged(tmp_path / "straight"), logged(run)
    steps = [r["step"] for r in killed if "loss" in r]
    assert steps == list(range(1, STEPS + 1)), "each step must be logged once, in order"
    assert [r["loss"] for r in killed if "loss" in r] == [r["loss"] for r in straight if "loss" in r]
    for name in ("checkpoint", "best"):
        a = load_tensors(tmp_path / "straight" / name / "model.pt")
        b = load_tensors(run / name / "model.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{name}/ differs"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
