"""ECAPA-TDNN through SpeechBrain, on a tiny random model saved the way SpeechBrain publishes them."""

from __future__ import annotations

import pytest
import torch

from speech_tl.backbones import BackboneError, load_backbone
from speech_tl.speaker.model import SpeakerModel

HYPERPARAMS = """\
n_mel_filt: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mel_filt>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mel_filt>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    se_channels: 8
    res2net_scale: 2
    lin_neurons: 12
"""


@pytest.fixture(scope="module")
def tiny_ecapa(tmp_path_factory):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    folder = tmp_path_factory.mktemp("ecapa")
    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8, res2net_scale=2,
                       lin_neurons=12).eval()
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS)
    return folder, model


def test_embedding_equals_speechbrain(tiny_ecapa):
    folder, reference = tiny_ecapa
    bb = load_backbone(f"speechbrain:{folder}").eval()
    assert len(bb.layers) == 4 and bb.output_dim == 12
    wave = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        feats, lengths = bb(wave, torch.tensor([16000]))
        ours = bb.pool(feats, lengths)
        fbank, _ = bb.frontend(wave, torch.tensor([16000]))
        ref = reference(fbank, torch.ones(1))[:, 0]
    assert ours.shape == (1, 12)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_prefix_split_and_speaker_model_pooling(tiny_ecapa):
    folder, _ = tiny_ecapa
    bb = load_backbone(f"speechbrain:{folder}").eval()
    wave, lengths = torch.randn(1, 12000) * 0.1, torch.tensor([12000])
    with torch.no_grad():
        full, fl = bb(wave, lengths)
        hidden, hl = bb.forward_to(2, wave, lengths)
        assert torch.allclose(bb.forward_from(2, hidden, hl), full)
        model = SpeakerModel(bb, num_speakers=3).eval()
        assert model.pooling == "backbone" and model.embedding_dim == 12
        emb = model.embed_utterance(wave[0])
    assert emb.shape == (12,) and abs(float(emb.norm()) - 1) < 1e-5


def test_bad_folders(tmp_path):
    with pytest.raises(BackboneError, match="no hyperparams.yaml"):
        load_backbone(f"speechbrain:{tmp_path}")
    (tmp_path / "hyperparams.yaml").write_text("embedding_model: !new:some.Other\n  x: 1\n")
    with pytest.raises(BackboneError, match="no ECAPA_TDNN"):
        load_backbone(f"speechbrain:{tmp_path}")
    (tmp_path / "hyperparams.yaml").write_text(HYPERPARAMS.replace("<n_mel_filt>", "<missing>"))
    with pytest.raises(BackboneError, match="cannot resolve"):
        load_backbone(f"speechbrain:{tmp_path}")
