"""CTC inference over many utterances, batched, with long audio in overlapping windows.

The one place every ASR command computes posteriors: ``evaluate asr``, ``transcribe``, ``tune-decoder`` and the
training loop's dev evaluation (through :func:`speech_tl.asr.task.transcribe_batches`).

**Batches.** Utterances are sorted by duration, longest first (memory peaks in the first batch, so a batch
size that does not fit fails at once), and run ``batch_size`` inputs per forward pass (at most
``batch_seconds`` of padded audio when that is given too); the windows of long recordings are sorted by
length too, so full windows batch together without padding. Audio is read ahead in a background thread.
Every backbone masks padding, so an utterance's posteriors do not depend on its batch (up to float rounding).

**Long audio.** A backbone with an input limit (Whisper: 30 s, its position table) gets longer audio as
windows of the limit's length (or shorter ones: ``window_seconds``) overlapping by ``overlap_seconds``
(default 5 s, at most a sixth of the window), the last window ending at the end of the audio. The windows
join the batches like any other input. Their CTC log-probabilities are stitched frame by frame at the
middle of each overlap (on the backbone's frame grid: window starts and seams are multiples of its 320
samples), so the stitched sequence has the frames a single pass over the whole audio would have, each
taken from a window that sees at least ``overlap_seconds / 2`` of audio on either side of it. Decoding
(greedy or beam search) runs on the stitched posteriors, so a character whose frames straddle a seam is
still emitted once.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from ..audio import audio_info, load_audio
from ..data import pad_waves
from ..text import Vocabulary

DEFAULT_BATCH_SIZE = 16
DEFAULT_OVERLAP_SECONDS = 5.0  # at most a sixth of the window


def window_spans(n: int, window: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``[(start, stop)]`` sample ranges of windows of at most ``window`` samples covering ``n`` samples.

    Consecutive windows overlap by at least ``overlap``; starts are multiples of ``align``; the last window
    ends at ``n``. Audio no longer than a window is one span.

    >>> window_spans(100, 40, 10)
    [(0, 40), (30, 70), (60, 100)]
    >>> window_spans(75, 40, 10, align=4)
    [(0, 40), (28, 68), (36, 75)]
    >>> window_spans(30, 40, 10)
    [(0, 30)]
    """
    if n <= window:
        return [(0, n)]
    hop = (window - overlap) // align * align
    if hop <= 0:
        raise ValueError(f"overlap ({overlap} samples) must be shorter than the window ({window}) by at least "
                         f"one frame ({align} samples)")
    spans, start = [], 0
    while start + window < n:
        spans.append((start, start + window))
        start += hop
    last = -(-(n - window) // align) * align  # the first aligned start whose window reaches the end
    spans.append((last, n))
    return spans


def seams(spans: list[tuple[int, int]], align: int = 1) -> list[int]:
    """Where the stitched output switches from one window to the next: the middle of each overlap, on the grid.

    >>> seams([(0, 40), (28, 68), (36, 75)], align=4)
    [32, 52]
    """
    return [(spans[k][1] + spans[k + 1][0]) // 2 // align * align for k in range(len(spans) - 1)]


def stitch(pieces: list[torch.Tensor], spans: list[tuple[int, int]], frame_samples: int | None = None
           ) -> torch.Tensor:
    """Join the frame outputs ``(T_k, ...)`` of overlapping windows ``spans`` at the :func:`seams`.

    Frame ``j`` of a window starting at sample ``s`` stands for samples from ``s + j * frame_samples`` on
    (``frame_samples`` None: estimated per window as its samples / frames).
    """
    if len(pieces) != len(spans):
        raise ValueError(f"{len(pieces)} window outputs for {len(spans)} windows")
    if len(pieces) == 1:
        return pieces[0]
    cuts = seams(spans, frame_samples or 1)
    out = []
    for k, (piece, (start, stop)) in enumerate(zip(pieces, spans, strict=True)):
        spf = frame_samples or (stop - start) / max(1, piece.shape[0])
        lo = 0 if k == 0 else min(piece.shape[0], max(0, round((cuts[k - 1] - start) / spf)))
        hi = piece.shape[0] if k == len(pieces) - 1 else min(piece.shape[0], max(lo, round((cuts[k] - start) / spf)))
        out.append(piece[lo:hi])
    return torch.cat(out)


def _read_ahead(load, indices: list[int], ahead: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(i, load(i))`` in order, with up to ``ahead`` loads running in a background thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: deque = deque()
        it = iter(indices)
        for i in it:
            queue.append((i, pool.submit(load, i)))
            if len(queue) >= ahead:
                break
        while queue:
            i, future = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(load, nxt)))
            yield i, future.result()


def ctc_posteriors(model, dataset, device: torch.device | str, batch_size: int = DEFAULT_BATCH_SIZE,
                   batch_seconds: float | None = None, window_seconds: float | None = None,
                   overlap_seconds: float | None = None, desc: str | None = None
                   ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(index, log_probs (T', V))`` (float32, CPU) for every utterance of ``dataset``, longest first.

    ``model(wave=(B, T), lengths=(B,)) -> (log_probs (B, T', V), lengths (B,))`` (a :class:`CtcModel`); its
    ``backbone.max_input_seconds`` bounds the windows (``window_seconds`` may choose shorter ones, also for a
    backbone without a limit); ``overlap_seconds`` None: 5 s, at most a sixth of the window.
    ``dataset[i]`` is ``(wave (T,), i)`` at 16 kHz, ``dataset.durations`` the seconds used for sorting.
    ``desc``: a progress bar with this label when stderr is a terminal.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    backbone = getattr(model, "backbone", None)
    sample_rate = getattr(backbone, "sample_rate", 16000)
    frame = getattr(backbone, "frame_samples", None)
    limit = getattr(backbone, "max_input_seconds", None)
    window_s = min(x for x in (window_seconds, limit) if x) if (window_seconds or limit) else None
    window = overlap = None
    if window_s:
        align = frame or 1
        window = int(window_s * sample_rate) // align * align
        if overlap_seconds is None:
            overlap_seconds = min(DEFAULT_OVERLAP_SECONDS, window_s / 6)
        overlap = int(round(overlap_seconds * sample_rate))
        if overlap < 0 or window - overlap < align:
            raise ValueError(f"overlap of {overlap_seconds:g} s must be >= 0 and shorter than the "
                             f"{window / sample_rate:g} s window")

    durations = list(dataset.durations)
    order = sorted(range(len(dataset)), key=lambda i: -durations[i])
    parts: dict[int, list] = {}
    spans_of: dict[int, list[tuple[int, int]]] = {}
    batch: list[tuple[int, int, torch.Tensor]] = []
    longest = 0
    bar = tqdm(total=len(order), desc=desc, unit="utt", disable=desc is None or not sys.stderr.isatty())

    def run() -> Iterator[tuple[int, torch.Tensor]]:
        wave, lengths = pad_waves([w for _, _, w in batch])
        with torch.no_grad():
            log_probs, out_lengths = model(wave=wave.to(device), lengths=lengths.to(device))
        log_probs, out_lengths = log_probs.float().cpu(), out_lengths.cpu()
        for j, (i, k, _) in enumerate(batch):
            parts[i][k] = log_probs[j, : int(out_lengths[j])].clone()
            if all(p is not None for p in parts[i]):
                bar.update(1)
                yield i, stitch(parts.pop(i), spans_of.pop(i), frame)
        batch.clear()

    pending: list[tuple[int, int, torch.Tensor]] = []  # windows waiting to be batched

    def batch_pending() -> Iterator[tuple[int, torch.Tensor]]:
        # windows of equal length batch together (full windows need no padding, so no attention mask)
        nonlocal longest
        pending.sort(key=lambda p: -p[2].numel())
        for i, k, piece in pending:
            n = piece.numel()
            if batch and (len(batch) >= batch_size
                          or (batch_seconds and max(longest, n) * (len(batch) + 1) > batch_seconds * sample_rate)):
                yield from run()
                longest = 0
            batch.append((i, k, piece))
            longest = max(longest, n)
        pending.clear()

    try:
        for i, (wave, _) in _read_ahead(dataset.__getitem__, order, max(2, 2 * batch_size)):
            wave = wave.reshape(-1)
            spans = window_spans(wave.numel(), window, overlap, frame or 1) if window else [(0, wave.numel())]
            spans_of[i], parts[i] = spans, [None] * len(spans)
            pending += [(i, k, wave[a:b]) for k, (a, b) in enumerate(spans)]
            if len(pending) >= 4 * batch_size:
                yield from batch_pending()
        yield from batch_pending()
        if batch:
            yield from run()
    finally:
        bar.close()


def decode_posteriors(log_probs: torch.Tensor, vocab: Vocabulary, decoder=None) -> str:
    """One utterance's ``(T', V)`` log-probabilities -> text (greedy unless a beam ``decoder`` is given)."""
    from .decode import greedy_decode

    lengths = torch.tensor([log_probs.shape[0]])
    return decoder.decode(log_probs[None], lengths)[0] if decoder is not None else \
        greedy_decode(log_probs[None], lengths, vocab)[0]


def transcribe_dataset(model, dataset, vocab: Vocabulary, device: torch.device | str, decoder=None,
                       batch_size: int = DEFAULT_BATCH_SIZE, batch_seconds: float | None = None,
                       desc: str | None = None, window_seconds: float | None = None) -> list[str]:
    """Hypotheses for every utterance of ``dataset``, in order (see :func:`ctc_posteriors`)."""
    hyps = [""] * len(dataset)
    for i, log_probs in ctc_posteriors(model, dataset, device, batch_size, batch_seconds, window_seconds,
                                       desc=desc):
        hyps[i] = decode_posteriors(log_probs, vocab, decoder)
    return hyps


class AudioFiles(torch.utils.data.Dataset):
    """Audio files of any soundfile format and rate as a dataset: item ``i`` is ``(wave (T,), i)`` at 16 kHz.

    Durations come from the file headers; a missing or unreadable file is an error naming it, raised here,
    before any model runs.
    """

    def __init__(self, paths: Iterable[str | Path], sample_rate: int = 16000):
        self.paths = [Path(p) for p in paths]
        self.sample_rate = sample_rate
        self.durations = [audio_info(p).duration for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_audio(self.paths[i], self.sample_rate), i
