"""A speaker checkpoint is self-contained too: moved, with the local model folder it was trained from deleted, it
embeds as before (see tests/asr/test_portable_checkpoint.py for the ASR side with the package hidden)."""

from __future__ import annotations

import shutil

import torch

from tests.backbones.test_whisper import speechlike
from tests.tiny_asr import save_tiny_whisper
from tests.tiny_speakers import speaker_config


def test_a_moved_speaker_checkpoint_embeds_without_its_source_folder(pitch_speakers, tmp_path):
    from speech_tl.config import build, to_dict
    from speech_tl.speaker.embedder import load_embedder
    from speech_tl.speaker.task import SpeakerConfig, train_speaker

    source = save_tiny_whisper(tmp_path / "models" / "tiny-whisper")
    d = to_dict(speaker_config(pitch_speakers, tmp_path / "run", max_steps=2, eval_every=2))
    d["model"].update(backbone=source, pooling="mean", embedding_dim=16)
    d["freeze"]["bottom_layers"] = 1
    train_speaker(build(SpeakerConfig, d))
    waves = [speechlike(1.5, seed=s) for s in range(3)]
    before = load_embedder(str(tmp_path / "run"))
    want = before.embed_many(waves)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    shutil.rmtree(tmp_path / "models")
    after = load_embedder(str(tmp_path / "moved"))
    assert after.fingerprint == before.fingerprint
    torch.testing.assert_close(after.embed_many(waves), want, rtol=0, atol=0)
