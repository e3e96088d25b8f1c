"""GE2E from resemblyzer's weights: the same embeddings as resemblyzer itself, three freezable layers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech_tl.audio import load_audio
from speech_tl.backbones import BackboneError, load_backbone
from speech_tl.backbones.ge2e import embed_utterance, partial_slices

REPO = Path(__file__).resolve().parents[2]
# resemblyzer itself with the wheel-only webrtcvad, kept out of the venv (`make venv` puts them there)
RESEMBLYZER_DIR = REPO / ".make" / "resemblyzer"
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"


def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(f0 + 30 * np.sin(2 * np.pi * 0.8 * t)) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def ge2e():
    return load_backbone("ge2e:resemblyzer").eval()


def test_three_lstm_layers_and_pretrained_weights(ge2e):
    assert len(ge2e.layers) == 3 and ge2e.output_dim == 256
    scratch = load_backbone("ge2e:resemblyzer", pretrained=False)
    assert not torch.allclose(scratch.layers[0].weight_ih_l0, ge2e.layers[0].weight_ih_l0)


@pytest.mark.skipif(not (RESEMBLYZER_DIR / "resemblyzer").is_dir(),
                    reason="needs resemblyzer itself in .make/resemblyzer: `make venv` puts it there, or `pip install "
                    "--no-deps --target .make/resemblyzer resemblyzer==0.1.4 webrtcvad-wheels`")
def test_embedding_equals_resemblyzer(ge2e, tmp_path):
    waves = [voice(3.0, 140, 0), voice(1.2, 210, 1), voice(5.3, 110, 2)]
    for i, w in enumerate(waves):
        np.save(tmp_path / f"w{i}.npy", w)
    script = (
        "import sys, numpy as np, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from resemblyzer import VoiceEncoder\n"
        "enc = VoiceEncoder('cpu', verbose=False)\n"
        f"for i in range({len(waves)}):\n"
        f"    np.save(r'{tmp_path}/r%d.npy' % i, enc.embed_utterance(np.load(r'{tmp_path}/w%d.npy' % i)))\n")
    env = {**os.environ, "PYTHONPATH": str(RESEMBLYZER_DIR)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for i, w in enumerate(waves):
        with torch.no_grad():
            ours = embed_utterance(ge2e, torch.from_numpy(w)).numpy()
        ref = np.load(tmp_path / f"r{i}.npy")
        assert np.abs(ours - ref).max() < 1e-4 and float(ours @ ref) > 0.99999


def test_partial_windows_follow_resemblyzer():
    assert partial_slices(16000) == [(0, 160)]  # shorter than a window: one, zero-padded
    slices = partial_slices(16000 * 5)
    assert slices[0] == (0, 160) and slices[1] == (77, 237) and all(b - a == 160 for a, b in slices)


def test_padded_batch_and_prefix_split_are_exact(ge2e):
    a, b = torch.from_numpy(voice(2.0, 150, 3)), torch.from_numpy(voice(1.0, 180, 4))
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    with torch.no_grad():
        out, lengths = ge2e(batch, torch.tensor([a.numel(), b.numel()]))
        alone, alone_len = ge2e(b[None], torch.tensor([b.numel()]))
        hidden, hl = ge2e.forward_to(2, b[None], torch.tensor([b.numel()]))
        resumed = ge2e.forward_from(2, hidden, hl)
    n = int(alone_len)
    assert int(lengths[1]) == n == 101
    assert (out[1, :n] - alone[0]).abs().max() < 1e-5
    assert torch.equal(resumed, alone)


def test_bad_sources(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        load_backbone(f"ge2e:{tmp_path / 'missing.pt'}")
    torch.save({"model_state": {"foo": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(BackboneError, match="no GE2E weights"):
        load_backbone(f"ge2e:{tmp_path / 'other.pt'}")


@pytest.mark.skipif(not FSDD.is_dir(), reason="Free Spoken Digit Dataset not found beside the repo (../shared)")
def test_real_speakers_are_closer_to_themselves(ge2e):
    """FSDD (real speech, 8 kHz, resampled): same-speaker cosine beats different-speaker cosine on average."""
    speakers = ["george", "jackson", "nicolas"]
    emb = {}
    with torch.no_grad():
        for s in speakers:
            emb[s] = torch.stack([embed_utterance(ge2e, load_audio(FSDD / f"{d}_{s}_{k}.wav"))
                                  for d in (1, 4, 7) for k in (0, 1)])
    same = np.mean([float((emb[s] @ emb[s].T)[~torch.eye(6, dtype=bool)].mean()) for s in speakers])
    diff = np.mean([float((emb[a] @ emb[b].T).mean()) for a in speakers for b in speakers if a != b])
    assert same > diff + 0.05
    assert sf.info(str(FSDD / "1_george_0.wav")).samplerate == 8000
