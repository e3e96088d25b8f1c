"""Encoder-decoder ASR models in use: loading them (a pretrained Whisper source, zero-shot, or a checkpoint trained
with ``model.head: decoder``) and transcribing many utterances with beam search.

**Batches.** Utterances sorted by duration, longest first, ``batch_size`` inputs per encoder pass; the decoder's beam
search (:func:`speech_tl.asr.whisper_search.beam_search`) runs on the whole batch.

**Long audio.** As faster-whisper does without timestamps: audio longer than the window (Whisper: 30 s) is cut into
consecutive 30 s windows, each transcribed on its own, and their texts joined. (Windows do not overlap: unlike CTC
posteriors, decoded text cannot be stitched frame by frame.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import pad_waves
from ..errors import InputError
from .seq2seq import Seq2SeqModel
from .whisper_tokens import WhisperTokens

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
    """Hypotheses for every utterance of ``dataset`` (``dataset[i]`` = ``(wave (T,), i)`` at 16 kHz), in order."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    rate = model.backbone.sample_rate
    limit = model.backbone.max_input_seconds or PAD_SECONDS
    window = int(min(window_seconds or limit, limit) * rate)
    order = sorted(range(len(dataset)), key=lambda i: -dataset.durations[i])
    pieces: dict[int, list[str | None]] = {}
    pending: list[tuple[int, int, torch.Tensor]] = []
    bar = tqdm(total=len(order), desc=desc, unit="utt", disable=desc is None or not sys.stderr.isatty())

    def run() -> None:
        wave, lengths = pad_waves([w for _, _, w in pending])
        with torch.no_grad():
            encoded, enc_lengths = model.encode(wave.to(device), lengths.to(device))
            from .whisper_search import beam_search

            for (i, k, _), ids in zip(pending, beam_search(model, encoded, enc_lengths, max(1, beam)), strict=True):
                pieces[i][k] = model.tokens.decode(ids)
                if all(p is not None for p in pieces[i]):
                    bar.update(1)
        pending.clear()

    model.eval()
    try:
        for i in order:
            wave = dataset[i][0].reshape(-1)
            if wave.numel() == 0:
                raise InputError(f"utterance {i}: empty audio")
            spans = [(a, min(a + window, wave.numel())) for a in range(0, wave.numel(), window)]
            pieces[i] = [None] * len(spans)
            for k, (a, b) in enumerate(spans):
                pending.append((i, k, wave[a:b]))
                if len(pending) >= batch_size:
                    run()
        if pending:
            run()
    finally:
        bar.close()
    return [" ".join(p for p in pieces[i] if p) for i in range(len(dataset))]
