"""wav2vec 2.0 / HuBERT / WavLM backbones: tiny random models against the libraries' own forward."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch

from speech_tl.backbones import BackboneError, load_backbone
from speech_tl.backbones.wav2vec2 import (
    TorchaudioWav2Vec2Backbone,
    Wav2Vec2Backbone,
    masked_group_norm,
    normalize_waves,
)

from .test_whisper import speechlike

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4, vocab_size=12)
WAVLM_BUCKETS = dict(num_buckets=32, max_bucket_distance=64)

# name -> (config class name, extra config); feat_extract_norm defaults to "group" (the base models' CNN)
HF_ARCHS = {
    "wav2vec2": ("Wav2Vec2Config", {}),
    "wav2vec2-stable": ("Wav2Vec2Config", dict(do_stable_layer_norm=True, feat_extract_norm="layer")),
    "hubert": ("HubertConfig", {}),
    "wavlm": ("WavLMConfig", WAVLM_BUCKETS),
    "wavlm-stable": ("WavLMConfig", dict(do_stable_layer_norm=True, feat_extract_norm="layer", **WAVLM_BUCKETS)),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second intra-op thread only adds its wake-up latency (100x on small CPUs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hf_config(name: str, **overrides):
    import transformers

    cls, extra = HF_ARCHS[name]
    return getattr(transformers, cls)(**{**TINY, **extra, **overrides})


def save_hf(folder, name: str, **overrides):
    from transformers import AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(hf_config(name, **overrides)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=list(HF_ARCHS))
def hf_pair(request, tmp_path_factory):
    """(our backbone, transformers' model) from the same tiny random checkpoint folder, in eval mode."""
    from transformers import AutoModel

    folder = save_hf(tmp_path_factory.mktemp(request.param), request.param)
    return load_backbone(f"hf:{folder}").eval(), AutoModel.from_pretrained(folder).eval(), request.param


def hf_input_values(wave: torch.Tensor) -> torch.Tensor:
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor()(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values


def padded(*waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([w.numel() for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    return batch, lengths


# --------------------------------------------------------------------------- transformers

def test_hf_structure(hf_pair):
    bb, model, name = hf_pair
    assert isinstance(bb, Wav2Vec2Backbone) and bb.source.startswith("hf:")
    assert bb.output_dim == 32 and len(bb.layers) == 2 and type(bb.layers[0]) is type(model.encoder.layers[0])
    assert bb.normalize  # no preprocessor_config.json: do_normalize defaults to True
    stable = name.endswith("-stable")  # pre-norm blocks: the encoder's layer norm comes last
    assert (bb.layer_norm is not None) == stable and (bb.frontend.layer_norm is None) == stable
    assert bb.relative_position_bias == name.startswith("wavlm")


def test_hf_matches_transformers(hf_pair):
    bb, model, _ = hf_pair
    wave = speechlike(0.25, seed=3)
    with torch.no_grad():
        ours, lengths = bb(wave[None], torch.tensor([wave.numel()]))
        ref = model(hf_input_values(wave)).last_hidden_state
    assert ours.shape == ref.shape == (1, 199, 32)  # the tiny CNN downsamples 20x
    assert lengths.tolist() == [199] == model._get_feat_extract_output_lengths(torch.tensor([4000])).tolist()
    assert (ours - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("k", [0, 1, 2])
def test_hf_prefix_split_is_exact(hf_pair, k):
    bb, _, _ = hf_pair
    batch, lengths = padded(speechlike(0.2, seed=4), speechlike(0.12, seed=5))
    with torch.no_grad():
        full, full_lengths = bb(batch, lengths)
        hidden, hidden_lengths = bb.forward_to(k, batch, lengths)
        resumed = bb.forward_from(k, hidden, hidden_lengths)
    assert torch.equal(full, resumed) and torch.equal(full_lengths, hidden_lengths)


def test_hf_padded_batch_equals_each_utterance_alone(hf_pair):
    """Exact for every architecture, the group-normed CNN of the base models included."""
    bb, model, _ = hf_pair
    waves = [speechlike(0.3, seed=6), speechlike(0.11, seed=7), speechlike(0.22, seed=8)]
    batch, lengths = padded(*waves)
    with torch.no_grad():
        out, out_lengths = bb(batch, lengths)
        for i, w in enumerate(waves):
            alone, alone_lengths = bb(w[None], torch.tensor([w.numel()]))
            n = int(alone_lengths)
            assert int(out_lengths[i]) == n == alone.shape[1]
            assert (out[i, :n] - alone[0]).abs().max().item() < 1e-4
    assert out_lengths.tolist() == model._get_feat_extract_output_lengths(lengths).tolist()


def test_hf_group_norm_cnn_needs_the_masked_statistics(tmp_path):
    """transformers' own padded forward lets the padding into the first conv layer's group norm."""
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    folder = save_hf(tmp_path / "w2v", "wav2vec2")
    bb, model = load_backbone(f"hf:{folder}").eval(), AutoModel.from_pretrained(folder).eval()
    long, short = speechlike(0.3, seed=18), speechlike(0.1, seed=19)
    batch, lengths = padded(long, short)
    hf_batch = Wav2Vec2FeatureExtractor()([long.numpy(), short.numpy()], sampling_rate=16000, padding=True,
                                          return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        alone = model(hf_input_values(short)).last_hidden_state[0]
        theirs = model(**hf_batch).last_hidden_state[1, : alone.shape[0]]
        ours = bb(batch, lengths)[0][1, : alone.shape[0]]
    assert (ours - alone).abs().max().item() < 1e-4
    assert (theirs - alone).abs().max().item() > 1e-2


def test_hf_random_init_has_the_same_architecture(hf_pair, tmp_path):
    bb, _, name = hf_pair
    scratch = load_backbone(f"hf:{save_hf(tmp_path / name, name)}", pretrained=False)
    ours = dict(bb.named_parameters())
    theirs = dict(scratch.named_parameters())
    assert list(theirs) == list(ours)
    assert not torch.allclose(theirs["layers.0.feed_forward.intermediate_dense.weight"],
                              ours["layers.0.feed_forward.intermediate_dense.weight"])


def test_hf_trains(hf_pair):
    bb, _, _ = hf_pair
    batch, lengths = padded(speechlike(0.15, seed=9), speechlike(0.08, seed=10))
    bb.train()
    try:
        out, out_lengths = bb(batch, lengths)
        (out[0, : out_lengths[0]].square().mean() + out[1, : out_lengths[1]].square().mean()).backward()
    finally:
        bb.eval()
        grads = {n: p.grad for n, p in bb.named_parameters()}
        bb.zero_grad(set_to_none=True)
    assert grads["frontend.feature_extractor.conv_layers.0.conv.weight"].abs().sum() > 0
    assert grads["layers.1.attention.q_proj.weight"].abs().sum() > 0


def test_hf_do_normalize_false_from_preprocessor_config(tmp_path):
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    folder = save_hf(tmp_path / "hubert", "hubert", feat_extract_norm="layer")
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    assert json.loads((folder / "preprocessor_config.json").read_text())["do_normalize"] is False
    bb = load_backbone(f"hf:{folder}").eval()
    assert not bb.normalize
    wave = 0.3 * speechlike(0.2, seed=11) + 0.05  # not zero-mean: normalising would change it
    with torch.no_grad():
        ours, _ = bb(wave[None], torch.tensor([wave.numel()]))
        ref = AutoModel.from_pretrained(folder).eval()(wave[None]).last_hidden_state
    assert (ours - ref).abs().max().item() < 1e-5


def test_hf_ctc_checkpoint_loads_its_encoder(tmp_path):
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(1)
    ctc = Wav2Vec2ForCTC(hf_config("wav2vec2")).eval()
    ctc.save_pretrained(tmp_path / "ctc")
    bb = load_backbone(f"hf:{tmp_path / 'ctc'}").eval()
    wave = speechlike(0.15, seed=12)
    with torch.no_grad():
        ours, _ = bb(wave[None], torch.tensor([wave.numel()]))
        ref = ctc.wav2vec2(hf_input_values(wave)).last_hidden_state
    assert (ours - ref).abs().max().item() < 1e-5


def test_hf_unsupported_model_type_lists_the_supported_ones(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(BackboneError, match=r"model type 'bert' is not supported.*hubert, wav2vec2, wavlm, whisper"):
        load_backbone(f"hf:{tmp_path / 'bert'}")


def test_too_short_an_utterance_is_refused(hf_pair):
    bb, _, _ = hf_pair  # receptive field of the tiny CNN: 10 + 2*5 + 2*2*5 = 40 samples
    with pytest.raises(ValueError, match=r"shorter than the CNN's receptive field \(40 samples\)"):
        bb(torch.zeros(2, 1000), torch.tensor([1000, 39]))


def test_normalisation_and_masked_group_norm_ignore_padding():
    wave = speechlike(0.2, seed=13) + 0.2
    batch, lengths = padded(wave, wave[:1000])
    normed = normalize_waves(batch, lengths, 1e-7)
    alone = normalize_waves(wave[None, :1000], torch.tensor([1000]), 1e-7)
    assert (normed[1, :1000] - alone[0]).abs().max() < 1e-5 and normed[1, 1000:].abs().max() == 0
    assert abs(float(normed[0].mean())) < 1e-5 and abs(float(normed[0].std(unbiased=False)) - 1) < 1e-4

    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 50)
    frames = torch.tensor([50, 20])
    ours = masked_group_norm(x, frames, norm)
    assert (ours[0] - norm(x[:1])[0]).abs().max() < 1e-5
    assert (ours[1, :, :20] - norm(x[1:, :, :20])[0]).abs().max() < 1e-5


# --------------------------------------------------------------------------- torchaudio

TA_BASE = dict(extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 3, 2)], extractor_conv_bias=False,
               encoder_embed_dim=32, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=16,
               encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=2, encoder_attention_dropout=0.1,
               encoder_ff_interm_features=64, encoder_ff_interm_dropout=0.1, encoder_dropout=0.1,
               encoder_layer_drop=0.0, aux_num_out=None)
TA_ARCHS = {
    # post-norm blocks, group-normed CNN: the *_BASE bundles
    "Wav2Vec2-base": ("Wav2Vec2", dict(extractor_mode="group_norm", encoder_layer_norm_first=False)),
    # pre-norm blocks, layer-normed CNN: the *_LARGE_LV60K / XLSR bundles
    "Wav2Vec2-large": ("Wav2Vec2", dict(extractor_mode="layer_norm", encoder_layer_norm_first=True)),
    "WavLM-base": ("WavLM", dict(extractor_mode="group_norm", encoder_layer_norm_first=False,
                                 encoder_num_buckets=32, encoder_max_distance=64)),
}


def ta_model(name: str, aux_num_out: int | None = None):
    from torchaudio.models import wav2vec2_model, wavlm_model

    model_type, extra = TA_ARCHS[name]
    torch.manual_seed(2)
    factory = wavlm_model if model_type == "WavLM" else wav2vec2_model
    params = {**TA_BASE, **extra, "aux_num_out": aux_num_out}
    return factory(**params).eval(), model_type, params


@pytest.fixture(scope="module", params=list(TA_ARCHS))
def ta_pair(request, tmp_path_factory):
    """(our backbone via ``torchaudio:custom@``, torchaudio's model) with the same tiny random weights."""
    model, model_type, params = ta_model(request.param)
    path = tmp_path_factory.mktemp("ta") / f"{request.param}.pt"
    torch.save({"params": params, "state_dict": model.state_dict(), "model_type": model_type}, path)
    return load_backbone(f"torchaudio:custom@{path}").eval(), model, request.param


def test_torchaudio_matches_torchaudio(ta_pair):
    bb, model, _ = ta_pair
    assert isinstance(bb, TorchaudioWav2Vec2Backbone) and bb.output_dim == 32 and len(bb.layers) == 2
    assert not bb.normalize  # custom checkpoints default to normalize_waveform=False
    wave = speechlike(0.25, seed=14)[None]
    with torch.no_grad():
        ours, lengths = bb(wave, torch.tensor([wave.shape[1]]))
        ref, _ = model(wave)  # torchaudio's WavLM attention refuses the mask that lengths would add
        per_layer, _ = model.extract_features(wave)
        hidden, _ = bb.forward_to(1, wave, torch.tensor([wave.shape[1]]))
    assert ours.shape == ref.shape == (1, 199, 32) and lengths.tolist() == [199]
    assert (ours - ref).abs().max().item() < 1e-5
    assert (hidden - per_layer[0]).abs().max().item() < 1e-5  # the output of layers[0]


def test_torchaudio_padded_batch_and_prefix_split(ta_pair):
    bb, model, _ = ta_pair
    waves = [speechlike(0.28, seed=15), speechlike(0.1, seed=16)]
    batch, lengths = padded(*waves)
    with torch.no_grad():
        out, out_lengths = bb(batch, lengths)
        hidden, hidden_lengths = bb.forward_to(1, batch, lengths)
        assert torch.equal(bb.forward_from(1, hidden, hidden_lengths), out)
        _, ref_lengths = model.feature_extractor(batch, lengths)
        for i, w in enumerate(waves):
            alone, _ = bb(w[None], torch.tensor([w.numel()]))
            assert (out[i, : out_lengths[i]] - alone[0]).abs().max().item() < 1e-4
    assert out_lengths.tolist() == ref_lengths.tolist()


@pytest.fixture
def tiny_bundle(monkeypatch):
    """A ``torchaudio.pipelines`` bundle named TINY_TEST with the tiny base architecture, normalising input."""
    import torchaudio.pipelines as pipelines

    _, model_type, params = ta_model("Wav2Vec2-base", aux_num_out=5)
    bundle = pipelines.Wav2Vec2ASRBundle(_path="tiny_test_w2v2.pth", _params=params, _sample_rate=16000,
                                         _normalize_waveform=True, _model_type=model_type, _labels=("a", "b", "c", "d"))
    monkeypatch.setattr(pipelines, "TINY_TEST", bundle, raising=False)
    return bundle


def test_torchaudio_bundle_with_a_state_dict_file(tiny_bundle, tmp_path):
    """``<BUNDLE>@<path>``: also the state dict of get_model()'s normalising wrapper ("model." keys, ASR head)."""
    from torchaudio.pipelines._wav2vec2.utils import _extend_model

    model, _, _ = ta_model("Wav2Vec2-base", aux_num_out=5)
    wrapped = _extend_model(model, normalize_waveform=True).eval()  # what bundle.get_model() returns
    torch.save(wrapped.state_dict(), tmp_path / "w.pt")
    assert all(k.startswith("model.") for k in wrapped.state_dict())
    bb = load_backbone(f"torchaudio:TINY_TEST@{tmp_path / 'w.pt'}").eval()
    assert bb.normalize and bb.source == f"torchaudio:TINY_TEST@{tmp_path / 'w.pt'}"
    wave = 0.2 * speechlike(0.2, seed=17)[None] + 0.1
    with torch.no_grad():
        ours, _ = bb(wave, torch.tensor([wave.shape[1]]))
        ref = wrapped.extract_features(wave)[0][-1]
        ref = model.encoder.transformer.layer_norm(ref) if not model.encoder.transformer.layer_norm_first else ref
    assert (ours - ref).abs().max().item() < 1e-5


def test_torchaudio_bundle_from_torch_hub_cache(tiny_bundle, tmp_path, monkeypatch):
    """Offline use as the error message advises: the bundle's file in ``<hub dir>/checkpoints/``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, _, _ = ta_model("Wav2Vec2-base", aux_num_out=5)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / "hub" / "checkpoints" / "tiny_test_w2v2.pth")
    bb = load_backbone("torchaudio:TINY_TEST")
    assert torch.equal(bb.layers[1].feed_forward.output_dense.weight, model.encoder.transformer.layers[1]
                       .feed_forward.output_dense.weight)
    scratch = load_backbone("torchaudio:TINY_TEST", pretrained=False)
    assert [n for n, _ in scratch.named_parameters()] == [n for n, _ in bb.named_parameters()]
    assert not torch.allclose(scratch.layers[1].feed_forward.output_dense.weight,
                              bb.layers[1].feed_forward.output_dense.weight)


@pytest.mark.parametrize("name", ["TINY_TEST", "WAV2VEC2_ASR_BASE_960H"])
def test_torchaudio_unreachable_download_names_the_source(tiny_bundle, tmp_path, monkeypatch, name):
    import torchaudio.pipelines._wav2vec2.utils as ta_utils

    def offline(url, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(ta_utils, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneError, match=rf"^torchaudio:{name}: cannot download.*no network") as err:
        load_backbone(f"torchaudio:{name}")
    assert "https://download.pytorch.org/torchaudio/models/" in str(err.value)
    assert f"torchaudio:{name}@<path>" in str(err.value) and str(tmp_path / "hub" / "checkpoints") in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ("NO_SUCH_BUNDLE", "not a wav2vec2-family torchaudio bundle; one of .*WAV2VEC2_ASR_BASE_960H"),
    ("TACOTRON2_WAVERNN_CHAR_LJSPEECH", "not a wav2vec2-family"),
    ("custom", "needs a checkpoint"),
    ("custom@/nonexistent/ckpt.pt", "no such file"),
    ("WAV2VEC2_BASE@", "expected '<BUNDLE>@<path"),
])
def test_torchaudio_bad_sources_name_the_source(spec, message):
    with pytest.raises(BackboneError, match=message) as err:
        load_backbone(f"torchaudio:{spec}")
    assert str(err.value).startswith(f"torchaudio:{spec}")


def test_torchaudio_custom_checkpoint_errors(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "no_params.pt")
    with pytest.raises(BackboneError, match="must hold a dict"):
        load_backbone(f"torchaudio:custom@{tmp_path / 'no_params.pt'}")
    model, model_type, params = ta_model("Wav2Vec2-base")
    torch.save({"params": {**params, "encoder_num_layers": 3}, "state_dict": model.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(BackboneError, match="do not fit the architecture"):
        load_backbone(f"torchaudio:custom@{tmp_path / 'bad.pt'}")
