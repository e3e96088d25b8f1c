"""Tiny speaker corpus for training tests: four tone 'voices' written as real WAV files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from speech_tl.config import build
from speech_tl.speaker.task import SpeakerConfig


@pytest.fixture(scope="session")
def pitch_speakers(tmp_path_factory):
    """Four 'speakers', each a voice-like tone at its own pitch and timbre, 6 clips of 2 s."""
    root = tmp_path_factory.mktemp("spk")
    rows = {"train": [], "dev": []}
    for s, (f0, harmonics) in enumerate([(110, 3), (160, 6), (220, 2), (300, 5)]):
        for k in range(6):
            rng = np.random.default_rng(100 * s + k)
            t = np.arange(32000) / 16000
            f = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
            phase = 2 * np.pi * np.cumsum(f) / 16000
            x = sum(np.sin(h * phase) / h for h in range(1, harmonics + 1)) * 0.1 + 0.01 * rng.standard_normal(t.size)
            name = f"s{s}_{k}.wav"
            sf.write(root / name, x.astype(np.float32), 16000)
            split = "dev" if k >= 4 else "train"
            rows[split].append({"id": name[:-4], "audio": name, "duration": 2.0, "text": "", "speaker": f"s{s}",
                                "language": "und"})
    for split, r in rows.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in r))
    return root


def speaker_config(root, out, **train):
    """A short bottom-2 GE2E adaptation on :func:`pitch_speakers`."""
    return build(SpeakerConfig, {
        "out_dir": str(out), "data": {"train": str(root / "train.jsonl"), "dev": str(root / "dev.jsonl"),
                                      "batch_seconds": 16.0},
        "freeze": {"mode": "bottom", "bottom_layers": 2},
        "train": {"lr": 2e-3, "warmup_steps": 2, "max_steps": 12, "eval_every": 6, "checkpoint_every": 6,
                  "log_every": 3, **train}})
