"""Speaker embeddings many utterances per forward pass: the same embeddings as one at a time, through the
library and the commands (`evaluate speaker --batch-size`, `enroll --batch-size`, `--device`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from speech_tl.audio import load_audio
from speech_tl.backbones import load_backbone
from speech_tl.backbones.ge2e import embed_utterance
from speech_tl.cli import main
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.model import SpeakerModel


def _waves(pitch_speakers) -> list[torch.Tensor]:
    """Clips of different lengths: whole 2 s clips, cut ones, and a 7 s one (several GE2E windows each)."""
    clips = [load_audio(p) for p in sorted(pitch_speakers.glob("s*_*.wav"))[:6]]
    return [clips[0], clips[1][:21_000], clips[2][:9_000], torch.cat(clips[3:6] + [clips[0][:16_000]]),
            clips[4], clips[5][:30_001]]


def test_ge2e_embeds_a_batch_as_one_utterance_at_a_time(pitch_speakers):
    emb = load_embedder("ge2e:resemblyzer")
    waves = _waves(pitch_speakers)
    one = torch.stack([emb.embed(w) for w in waves])
    bb = load_backbone("ge2e:resemblyzer").eval()
    with torch.no_grad():
        reference = torch.stack([embed_utterance(bb, w) for w in waves])
    for bs in (1, 2, 4, 16):
        assert torch.allclose(emb.embed_many(waves, bs), one, atol=1e-5), bs
    assert torch.allclose(one, reference, atol=1e-5)  # still resemblyzer's embedding


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_speaker_model_embeds_a_padded_batch_as_one_utterance_at_a_time(pitch_speakers, pooling):
    torch.manual_seed(0)
    model = SpeakerModel(load_backbone("ge2e:resemblyzer", pretrained=False), 4, pooling=pooling,
                         embedding_dim=16).eval()
    waves = _waves(pitch_speakers)
    with torch.no_grad():
        one = torch.stack([model.embed_utterance(w) for w in waves])
        batch = model.embed_batch(waves)
    assert batch.shape == (len(waves), 16)
    assert torch.allclose(batch, one, atol=1e-5)


def test_evaluate_speaker_gives_the_same_result_at_any_batch_size(pitch_speakers, tmp_path):
    results = {}
    for bs in (1, 5):
        out = tmp_path / f"bs{bs}.json"
        r = CliRunner().invoke(main, ["evaluate", "speaker", "ge2e:resemblyzer", str(pitch_speakers / "train.jsonl"),
                                      "--out", str(out), "--batch-size", str(bs), "--device", "cpu",
                                      "--enroll-per-speaker", "2"])
        assert r.exit_code == 0, r.output
        results[bs] = json.loads(out.read_text())
        assert results[bs]["batch_size"] == bs and results[bs]["device"] == "cpu"
    a, b = results[1], results[5]
    assert a["eer"] == pytest.approx(b["eer"], abs=1e-9) and a["min_dcf"] == pytest.approx(b["min_dcf"], abs=1e-9)
    assert a["identification_accuracy"] == b["identification_accuracy"]
    ea, eb = (torch.load(tmp_path / f"bs{bs}.embeddings.pt", weights_only=True)["embeddings"] for bs in (1, 5))
    assert torch.allclose(ea, eb, atol=1e-5)


def test_enroll_in_batches_stores_the_embeddings_of_one_at_a_time(pitch_speakers, tmp_path):
    import sqlite3

    clips = sorted(pitch_speakers.glob("s1_*.wav"))
    db = tmp_path / "spk.db"
    r = CliRunner().invoke(main, ["enroll", "--db", str(db), "--speaker", "s1", "--batch-size", "4",
                                  "--device", "cpu", *map(str, clips)])
    assert r.exit_code == 0, r.output
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT clip, embedding FROM embeddings ORDER BY id").fetchall()
    emb = load_embedder("ge2e:resemblyzer")
    assert [c for c, _ in rows] == [str(p.resolve()) for p in clips]
    for (_, blob), path in zip(rows, clips, strict=True):
        stored = torch.from_numpy(np.frombuffer(blob, dtype="<f4").copy())
        assert torch.allclose(stored, emb.embed_file(path), atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(pitch_speakers, tmp_path):
    clip = str(pitch_speakers / "s0_0.wav")
    for args in (["enroll", "--db", str(tmp_path / "x.db"), "--speaker", "a", clip],
                 ["evaluate", "speaker", "ge2e:resemblyzer", str(pitch_speakers / "dev.jsonl"), "--out",
                  str(tmp_path / "r.json")]):
        r = CliRunner().invoke(main, [*args, "--device", "cuda"])
        assert r.exit_code == 1 and "no CUDA GPU is available" in r.output, r.output
    assert not (tmp_path / "x.db").exists()
    r = CliRunner().invoke(main, ["enroll", "--db", str(tmp_path / "x.db"), "--speaker", "a", clip, "--device", "tpu"])
    assert r.exit_code == 2 and "expected auto, cpu, cuda or cuda:N" in r.output
