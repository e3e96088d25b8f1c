"""Encoder-decoder ASR: a Whisper encoder (the :class:`~speech_tl.backbones.base.Backbone`) and Whisper's own
decoder, trained with teacher-forced cross-entropy on its own tokenizer.

``forward(wave=(B, T), lengths=(B,), tokens=(B, L))`` -> logits ``(B, L, V)`` and encoder lengths ``(B,)``; with
``hidden=`` (the frozen prefix's output, from the cache) the frontend and ``layers[:frozen_depth]`` are skipped, as
for :class:`~speech_tl.asr.model.CtcModel`.

The decoder's layers are transformers' ``WhisperDecoderLayer`` modules, run here by :func:`run_decoder` rather than
by ``WhisperDecoder.forward`` for two reasons: transformers' Whisper decoder never masks the encoder's padded
frames in cross-attention (Whisper pads every input to 30 s), and beam search needs key/value caches it can reorder
by indexing. The weights, and so ``state_dict()`` keys, are transformers' (``decoder.layers.0.self_attn.q_proj...``);
LoRA adapters (peft) wrap the same ``nn.Linear`` modules. The output projection is the token embedding (tied).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..backbones.base import Backbone, padding_mask
from ..backbones.whisper_tokens import WhisperTokens


class DecoderCache:
    """Keys and values of a decoding run: self-attention ``[(B, H, t, Dh)]`` per layer, grown each step, and
    cross-attention ``[(B, H, T', Dh)]`` per layer, computed once from the encoder output."""

    def __init__(self):
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_mask: torch.Tensor | None = None  # (B, 1, 1, T') True at real encoder frames; None: all real
        self.length = 0

    def select(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep rows ``index`` (beam search's reordering). ``cross=False`` leaves the cross-attention keys, values and
        mask as they are: beam search only reorders the beams of one utterance, whose cross-attention rows are equal,
        and copying them (``(B * K, H, 1500, Dh)`` per layer) would cost more than the decoding step itself."""
        self.self_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_kv]
        if cross:
            self.cross_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross_kv]
            if self.cross_mask is not None:
                self.cross_mask = self.cross_mask.index_select(0, index)


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, n, T, D // n)``."""
    return x.view(x.shape[0], x.shape[1], n, -1).transpose(1, 2)


def run_decoder(decoder: nn.Module, tokens: torch.Tensor, encoded: torch.Tensor | None,
                encoded_lengths: torch.Tensor | None, cache: DecoderCache | None = None) -> torch.Tensor:
    """Whisper's decoder on ``tokens (B, L)`` attending to ``encoded (B, T', D)`` (frames past ``encoded_lengths``
    masked) -> logits ``(B, L, V)``. With ``cache``, ``tokens`` continue the cached ones (``encoded`` is read on the
    first call only, to fill the cross-attention keys)."""
    start = cache.length if cache is not None else 0
    length = tokens.shape[1]
    if start + length > decoder.embed_positions.weight.shape[0]:
        raise ValueError(f"decoder input of {start + length} tokens exceeds its "
                         f"{decoder.embed_positions.weight.shape[0]} positions")
    x = decoder.embed_tokens(tokens) + decoder.embed_positions.weight[start:start + length]
    x = nn.functional.dropout(x, p=decoder.dropout, training=decoder.training)
    causal = None
    if length > 1:
        causal = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril(start)
    cross_mask = None
    if encoded is not None and encoded_lengths is not None and bool((encoded_lengths < encoded.shape[1]).any()):
        cross_mask = padding_mask(encoded_lengths.to(x.device), encoded.shape[1])[:, None, None, :]
    elif cache is not None and cache.length > 0:
        cross_mask = cache.cross_mask
    if cache is not None and cache.length == 0:
        cache.cross_mask = cross_mask
    for i, layer in enumerate(decoder.layers):
        sa, ca = layer.self_attn, layer.encoder_attn
        heads = sa.num_heads
        h = layer.self_attn_layer_norm(x)
        q, k, v = _heads(sa.q_proj(h), heads), _heads(sa.k_proj(h), heads), _heads(sa.v_proj(h), heads)
        if cache is not None:
            if i < len(cache.self_kv):
                k, v = torch.cat([cache.self_kv[i][0], k], 2), torch.cat([cache.self_kv[i][1], v], 2)
                cache.self_kv[i] = (k, v)
            else:
                cache.self_kv.append((k, v))
        drop = sa.dropout if decoder.training else 0.0
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=drop)
        x = x + nn.functional.dropout(sa.out_proj(a.transpose(1, 2).reshape(x.shape)), p=decoder.dropout,
                                      training=decoder.training)
        h = layer.encoder_attn_layer_norm(x)
        q = _heads(ca.q_proj(h), heads)
        if cache is not None and i < len(cache.cross_kv):
            k, v = cache.cross_kv[i]
        else:
            k, v = _heads(ca.k_proj(encoded), heads), _heads(ca.v_proj(encoded), heads)
            if cache is not None:
                cache.cross_kv.append((k, v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=cross_mask, dropout_p=drop)
        x = x + nn.functional.dropout(ca.out_proj(a.transpose(1, 2).reshape(x.shape)), p=decoder.dropout,
                                      training=decoder.training)
        h = layer.activation_fn(layer.fc1(layer.final_layer_norm(x)))
        h = nn.functional.dropout(h, p=layer.activation_dropout, training=decoder.training)
        x = x + nn.functional.dropout(layer.fc2(h), p=decoder.dropout, training=decoder.training)
    if cache is not None:
        cache.length = start + length
    x = decoder.layer_norm(x)
    return x @ decoder.embed_tokens.weight.T


class Seq2SeqModel(nn.Module):
    """Whisper encoder (``backbone``) + Whisper decoder (``head``: what the training loop reports as new layers on
    top of the backbone, here the pretrained decoder) + its tokenizer."""

    def __init__(self, backbone: Backbone, decoder: nn.Module, tokens: WhisperTokens, language: str | None,
                 pad_seconds: float | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = decoder
        self.tokens = tokens
        self.language = language
        self.prompt = tokens.prompt(language)  # checked here: a language the checkpoint lacks is an error at once
        backbone.pad_seconds = pad_seconds  # see WhisperBackbone.pad_seconds

    @property
    def decoder(self) -> nn.Module:
        return self.head

    def encode(self, wave: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
               hidden: torch.Tensor | None = None, frozen_depth: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, T', D)`` and lengths ``(B,)``."""
        start = frozen_depth if frozen_depth is not None else 0
        if hidden is None:
            with torch.no_grad() if frozen_depth is not None else contextlib.nullcontext():
                hidden, lengths = self.backbone.forward_to(start, wave, lengths)
        return self.backbone.forward_from(start, hidden, lengths), lengths

    def forward(self, wave: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, frozen_depth: int | None = None,
                tokens: torch.Tensor | None = None, return_encoded: bool = False) -> tuple[torch.Tensor, ...]:
        """Teacher-forced logits ``(B, L, vocab)`` and encoder lengths ``(B,)``; with ``return_encoded``, the encoder
        output ``(B, T', D)`` too (for a loss on it, :mod:`speech_tl.asr.channel_teacher`)."""
        encoded, enc_lengths = self.encode(wave, lengths, hidden, frozen_depth)
        if tokens is None:
            raise ValueError("Seq2SeqModel.forward needs the decoder input tokens (B, L) (teacher forcing)")
        logits = run_decoder(self.head, tokens.to(encoded.device), encoded, enc_lengths).float()
        return (logits, enc_lengths, encoded) if return_encoded else (logits, enc_lengths)


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per target token. ``logits (B, L, V)``, ``labels (B, L)`` with -100 where nothing is
    predicted (prompt, padding)."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device),
                                       ignore_index=-100)


def pad_targets(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing pairs ``[(inputs, labels)]`` -> ``(B, L)`` inputs padded with ``pad_id`` and labels with -100."""
    width = max(len(i) for i, _ in pairs)
    inputs = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for b, (i, lab) in enumerate(pairs):
        inputs[b, :len(i)] = torch.tensor(i)
        labels[b, :len(lab)] = torch.tensor(lab)
    return inputs, labels
