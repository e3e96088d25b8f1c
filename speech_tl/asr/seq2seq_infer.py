"""Encoder-decoder ASR models in use: loading them (a pretrained Whisper source, zero-shot, or a checkpoint trained
with ``model.head: decoder``) and transcribing many utterances with beam search.

Batches and long audio as :mod:`speech_tl.runtime.windows` says (the same loop runs the CTranslate2 export); the
decoder's beam search (:func:`speech_tl.asr.whisper_search.beam_search`) runs on a whole batch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbones.whisper_tokens import WhisperTokens
from ..data import pad_waves
from ..errors import InputError
from .seq2seq import Seq2SeqModel

DEFAULT_BEAM = 5  # faster-whisper's default
PAD_SECONDS = 30.0


def pretrained_seq2seq(source: str, language: str | None, pad_seconds: float | None = PAD_SECONDS) -> Seq2SeqModel:
    """A whole pretrained Whisper (``whisper-ct2:...`` or ``hf:...``) as it ships: zero-shot."""
    from ..backbones.whisper_decoder import load_whisper_parts

    parts = load_whisper_parts(source)
    tokens = WhisperTokens(parts.tokenizer_json, parts.decoder.embed_tokens.weight.shape[0], parts.generation)
    if tokens.multilingual and not language:
        raise InputError(f"{source} is multilingual: give the language of the speech (--language de, or "
                         "language: in the config)")
    return Seq2SeqModel(parts.encoder, parts.decoder, tokens, language, pad_seconds)


def seq2seq_from_checkpoint(folder: Path, meta: dict, cfg: dict) -> Seq2SeqModel:
    """The model of a checkpoint trained with ``model.head: decoder`` (architecture from ``backbone_arch``, tokenizer
    from its ``tokenizer.json``), random init: the caller loads ``model.pt``."""
    from transformers import WhisperConfig

    from ..backbones.whisper_decoder import read_tokenizer_files, whisper_parts_from_config

    config = WhisperConfig.from_dict(meta["backbone_arch"]["config"])
    encoder, decoder = whisper_parts_from_config(config, meta["backbone"])
    tokenizer_json, generation = read_tokenizer_files(folder)
    tokens = WhisperTokens(tokenizer_json, config.vocab_size, generation)
    model_cfg = cfg.get("model", {})
    pad = model_cfg.get("pad_seconds")
    return Seq2SeqModel(encoder, decoder, tokens, cfg.get("language"), pad)


def transcribe_seq2seq(model: Seq2SeqModel, dataset, device: torch.device | str, beam: int = DEFAULT_BEAM,
                       batch_size: int = 8, window_seconds: float | None = None, desc: str | None = None
                       ) -> list[str]:
    """Hypotheses for every utterance of ``dataset`` (``dataset[i]`` = ``(wave (T,), i)`` at 16 kHz), in order:
    :func:`speech_tl.runtime.windows.transcribe_in_windows` with the torch model's beam search."""
    from ..runtime.windows import transcribe_in_windows
    from .whisper_search import beam_search

    device = torch.device(device)
    rate = model.backbone.sample_rate
    limit = model.backbone.max_input_seconds or PAD_SECONDS
    model.eval()

    def decode(waves: list[torch.Tensor]) -> list[str]:
        wave, lengths = pad_waves(waves)
        with torch.no_grad():
            encoded, enc_lengths = model.encode(wave.to(device), lengths.to(device))
            return [model.tokens.decode(ids) for ids in beam_search(model, encoded, enc_lengths, max(1, beam))]

    return transcribe_in_windows(dataset, decode, batch_size, int(min(window_seconds or limit, limit) * rate), desc)
