"""Whole Whisper models (encoder and decoder) from a CTranslate2 folder or a Hugging Face checkpoint.

The blocks are transformers' own ``WhisperEncoder`` / ``WhisperDecoder`` modules, so a trained model saves as a
``WhisperForConditionalGeneration`` folder (``speech-tl export hf``) that CTranslate2's converter reads. A
CTranslate2 ``model.bin`` is mapped into them: the decoder's fused self-attention q/k/v (``linear_0``) and
cross-attention k/v (``linear_1``) are split apart, the missing k biases are zero, and the output projection is the
token embedding (tied, as in Whisper).

The tokenizer comes from the model's ``tokenizer.json`` (read by :mod:`speech_tl.backbones.whisper_tokens`) with the
suppression lists CTranslate2 keeps in ``config.json`` (``suppress_ids``, ``suppress_ids_begin``) or transformers in
``generation_config.json``; all of it travels with a checkpoint, which needs neither the package nor the hub again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import BackboneError
from .whisper import WhisperBackbone, ct2_encoder_state, read_whisper_ct2


@dataclass
class WhisperParts:
    """What a whole pretrained Whisper source gives: the encoder behind the Backbone interface, transformers'
    ``WhisperDecoder``, and the tokenizer (``tokenizer.json`` text plus the token lists decoding suppresses)."""

    encoder: WhisperBackbone
    decoder: nn.Module
    tokenizer_json: str
    generation: dict = field(default_factory=dict)  # suppress_ids, suppress_ids_begin (token ids)


def whisper_config(dims: dict):
    """A transformers ``WhisperConfig`` for both stacks from the dimensions a CTranslate2 model has."""
    from transformers import WhisperConfig

    return WhisperConfig(d_model=dims["d_model"], encoder_layers=dims["layers"], encoder_attention_heads=dims["heads"],
                         encoder_ffn_dim=dims["ffn"], num_mel_bins=dims["n_mels"],
                         max_source_positions=dims["positions"], decoder_layers=dims["decoder_layers"],
                         decoder_attention_heads=dims["decoder_heads"], decoder_ffn_dim=dims["decoder_ffn"],
                         vocab_size=dims["vocab_size"], max_target_positions=dims["target_positions"],
                         attn_implementation="sdpa", tie_word_embeddings=True)


def ct2_decoder_state(variables: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map CTranslate2 Whisper decoder variables to ``WhisperDecoder`` state-dict keys (float32), with its dims."""
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32).copy())

    layer_ids = sorted({int(m.group(1)) for k in variables if (m := re.match(r"decoder/layer_(\d+)/", k))})
    if not layer_ids:
        raise BackboneError("the CTranslate2 model has no decoder layers (an encoder-only export?)")
    emb = variables["decoder/embeddings/weight"]
    dims = {"decoder_layers": len(layer_ids),
            "decoder_heads": int(variables["decoder/num_heads"]) if "decoder/num_heads" in variables else None,
            "decoder_ffn": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "vocab_size": int(emb.shape[0]),
            "target_positions": int(variables["decoder/position_encodings/encodings"].shape[0])}
    sd = {"embed_tokens.weight": t("decoder/embeddings/weight"),
          "embed_positions.weight": t("decoder/position_encodings/encodings"),
          "layer_norm.weight": t("decoder/layer_norm/gamma"), "layer_norm.bias": t("decoder/layer_norm/beta")}
    if "decoder/projection/weight" in variables and not np.array_equal(variables["decoder/projection/weight"], emb):
        raise BackboneError("the CTranslate2 model's output projection differs from its token embedding; Whisper ties "
                            "them, so this is not a Whisper decoder speech-tl can load")
    for i in layer_ids:
        p, q = f"decoder/layer_{i}/", f"layers.{i}."
        wq, wk, wv = t(p + "self_attention/linear_0/weight").chunk(3)
        bq, _, bv = t(p + "self_attention/linear_0/bias").chunk(3)
        ck, cv = t(p + "attention/linear_1/weight").chunk(2)
        _, cbv = t(p + "attention/linear_1/bias").chunk(2)
        sd.update({
            q + "self_attn.q_proj.weight": wq, q + "self_attn.q_proj.bias": bq, q + "self_attn.k_proj.weight": wk,
            q + "self_attn.v_proj.weight": wv, q + "self_attn.v_proj.bias": bv,
            q + "self_attn.out_proj.weight": t(p + "self_attention/linear_1/weight"),
            q + "self_attn.out_proj.bias": t(p + "self_attention/linear_1/bias"),
            q + "self_attn_layer_norm.weight": t(p + "self_attention/layer_norm/gamma"),
            q + "self_attn_layer_norm.bias": t(p + "self_attention/layer_norm/beta"),
            q + "encoder_attn.q_proj.weight": t(p + "attention/linear_0/weight"),
            q + "encoder_attn.q_proj.bias": t(p + "attention/linear_0/bias"),
            q + "encoder_attn.k_proj.weight": ck, q + "encoder_attn.v_proj.weight": cv,
            q + "encoder_attn.v_proj.bias": cbv,
            q + "encoder_attn.out_proj.weight": t(p + "attention/linear_2/weight"),
            q + "encoder_attn.out_proj.bias": t(p + "attention/linear_2/bias"),
            q + "encoder_attn_layer_norm.weight": t(p + "attention/layer_norm/gamma"),
            q + "encoder_attn_layer_norm.bias": t(p + "attention/layer_norm/beta"),
            q + "fc1.weight": t(p + "ffn/linear_0/weight"), q + "fc1.bias": t(p + "ffn/linear_0/bias"),
            q + "fc2.weight": t(p + "ffn/linear_1/weight"), q + "fc2.bias": t(p + "ffn/linear_1/bias"),
            q + "final_layer_norm.weight": t(p + "ffn/layer_norm/gamma"),
            q + "final_layer_norm.bias": t(p + "ffn/layer_norm/beta"),
        })
    return sd, dims


def whisper_parts_from_config(config, source: str) -> tuple[WhisperBackbone, nn.Module]:
    """Encoder backbone and decoder of the architecture ``config`` (a ``WhisperConfig``), random init."""
    from transformers.models.whisper.modeling_whisper import WhisperDecoder, WhisperEncoder

    config._attn_implementation = "sdpa"
    return WhisperBackbone(WhisperEncoder(config), source), WhisperDecoder(config)


def _load_ct2(spec: str, pretrained: bool) -> WhisperParts:
    from .ct2_sources import ct2_files

    source = f"whisper-ct2:{spec}"
    files = ct2_files(spec)
    if files.file("tokenizer.json") is None:
        raise BackboneError(f"{source}: {files.folder} has no tokenizer.json; the decoder needs its tokenizer (a "
                            "faster-whisper folder keeps it beside model.bin)")
    variables = read_whisper_ct2(spec)
    enc_state, dims = ct2_encoder_state(variables)
    dec_state, dec_dims = ct2_decoder_state(variables)
    dims.update(dec_dims)
    dims["heads"] = dims["heads"] or max(1, dims["d_model"] // 64)
    dims["decoder_heads"] = dims["decoder_heads"] or dims["heads"]
    from transformers.models.whisper.modeling_whisper import WhisperDecoder, WhisperEncoder

    config = whisper_config(dims)
    encoder, decoder = WhisperEncoder(config), WhisperDecoder(config)
    if pretrained:
        encoder.load_state_dict(enc_state, strict=True)
        decoder.load_state_dict(dec_state, strict=True)
    else:  # the sinusoidal encoder positions are not learned
        encoder.embed_positions.weight.data.copy_(enc_state["embed_positions.weight"])
    encoder = WhisperBackbone(encoder, source)
    generation = {}
    if files.file("config.json"):
        cfg = json.loads(files.file("config.json").read_text(encoding="utf-8"))
        generation = {k: [int(x) for x in cfg[k]] for k in ("suppress_ids", "suppress_ids_begin") if k in cfg}
    return WhisperParts(encoder, decoder, files.file("tokenizer.json").read_text(encoding="utf-8"), generation)


def _load_hf(spec: str, pretrained: bool) -> WhisperParts:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig, WhisperForConditionalGeneration

    source = f"hf:{spec}"
    try:
        config = AutoConfig.from_pretrained(spec)
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except OSError as e:
        raise BackboneError(f"{source}: cannot load a Whisper config and tokenizer from {spec!r}: not a local model "
                            f"folder, and the hub could not be reached (no network?) or has no such model. "
                            f"({str(e).splitlines()[0]})") from None
    if config.model_type != "whisper":
        raise BackboneError(f"{source}: a decoder head needs a Whisper checkpoint, not {config.model_type!r}")
    model = WhisperForConditionalGeneration.from_pretrained(spec) if pretrained else \
        WhisperForConditionalGeneration(config)
    config = model.config
    config._attn_implementation = "sdpa"
    encoder = WhisperBackbone(model.model.encoder, source)
    generation = {}
    try:
        gen = GenerationConfig.from_pretrained(spec)
        generation = {"suppress_ids": list(gen.suppress_tokens or []),
                      "suppress_ids_begin": list(gen.begin_suppress_tokens or [])}
    except OSError:
        pass
    return WhisperParts(encoder, model.model.decoder, tokenizer.backend_tokenizer.to_str(), generation)


def load_whisper_parts(source: str, pretrained: bool = True) -> WhisperParts:
    """Encoder, decoder and tokenizer of a Whisper source: ``whisper-ct2:<dir or package>`` or ``hf:<id or dir>``."""
    scheme, _, spec = source.partition(":")
    if scheme == "whisper-ct2" and spec:
        return _load_ct2(spec, pretrained)
    if scheme == "hf" and spec:
        return _load_hf(spec, pretrained)
    raise BackboneError(f"{source!r}: a Whisper decoder comes from whisper-ct2:<dir or package> or hf:<id or dir>")


def read_tokenizer_files(folder: Path) -> tuple[str, dict]:
    """``tokenizer.json`` text and ``whisper_generation.json`` of a checkpoint folder (see :func:`save_tokenizer`)."""
    gen = folder / "whisper_generation.json"
    return ((folder / "tokenizer.json").read_text(encoding="utf-8"),
            json.loads(gen.read_text(encoding="utf-8")) if gen.is_file() else {})
