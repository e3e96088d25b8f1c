"""Transcribing many utterances with a Whisper decoder, whatever engine decodes: batches, and long audio in windows.

One loop for the torch model (:func:`speech_tl.asr.seq2seq_infer.transcribe_seq2seq`) and CTranslate2
(:class:`speech_tl.runtime.ct2.Ct2Whisper`), so both batch and cut alike and differ only in the decoding itself.

**Batches.** Utterances sorted by duration, longest first (memory peaks in the first batch), ``batch_size`` inputs
per call of ``decode``.

**Long audio.** As faster-whisper does without timestamps: audio longer than the window (Whisper: 30 s) is cut into
consecutive windows, each transcribed on its own, and their texts joined with a space. Windows do not overlap: unlike
CTC posteriors, decoded text cannot be stitched frame by frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from tqdm import tqdm

from ..errors import InputError


class Waves:
    """``dataset[i]`` = ``(wave (T,), i)`` with ``durations``: waveforms already in memory (16 kHz, ``(T,)`` each) as
    the dataset :func:`transcribe_in_windows` takes (``transcribe_seq2seq``, ``Ct2Whisper.transcribe``)."""

    def __init__(self, waves: list[torch.Tensor], sample_rate: int = 16000):
        self.waves = waves
        self.durations = [w.numel() / sample_rate for w in waves]

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.waves[i], i


def transcribe_in_windows(dataset, decode: Callable[[list[torch.Tensor]], list[str]], batch_size: int,
                          window_samples: int, desc: str | None = None) -> list[str]:
    """Text for every utterance of ``dataset`` (``dataset[i]`` = ``(wave (T,), i)``, ``dataset.durations``), in order.

    ``decode(waves)``: the texts of up to ``batch_size`` waves ``(T_k,)`` of at most ``window_samples`` each.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    order = sorted(range(len(dataset)), key=lambda i: -dataset.durations[i])
    pieces: dict[int, list[str | None]] = {}
    pending: list[tuple[int, int, torch.Tensor]] = []
    bar = tqdm(total=len(order), desc=desc, unit="utt", disable=desc is None or not sys.stderr.isatty())

    def run() -> None:
        for (i, k, _), text in zip(pending, decode([w for _, _, w in pending]), strict=True):
            pieces[i][k] = text
            if all(p is not None for p in pieces[i]):
                bar.update(1)
        pending.clear()

    try:
        for i in order:
            wave = dataset[i][0].reshape(-1)
            if wave.numel() == 0:
                raise InputError(f"utterance {i}: empty audio")
            spans = [(a, min(a + window_samples, wave.numel())) for a in range(0, wave.numel(), window_samples)]
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
