"""Who spoke when: voice activity, speaker windows and labelled segments of a recording.

:func:`speech_regions` finds speech with Silero VAD (the ``silero-vad`` package ships its model, so
nothing is downloaded). :func:`label_recording` cuts each speech region into overlapping windows,
embeds them in batches, labels every window with :meth:`SpeakerRegistry.identify` (an enrolled name,
or ``unknown`` under the threshold), smooths the labels (a lone window between two of the same speaker
takes their label) and merges neighbours with the same label into segments. A region shorter than a
window is embedded whole. Output: ``[{"start", "end", "speaker", "score"}]`` in seconds, the shape of
``speech-tl identify --segments --json``; :func:`to_rttm` writes the NIST RTTM lines diarization tools
read.

Speaker changes are found at pauses (VAD) and, inside a region, at window resolution (``hop``
seconds): a change without a pause lands within one hop of where it happened.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from .registry import UNKNOWN

SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=1)
def _silero():
    """Silero VAD's model and its ``get_speech_timestamps``, loaded once: the ONNX model under onnxruntime
    (about twice as fast on a CPU: it runs one 32 ms chunk per call) when installed, else the TorchScript one.
    Importing ``silero_vad`` sets torch to one thread for the whole process; the count is put back, so
    nothing else loses its cores."""
    import importlib.util
    import warnings

    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad

        with warnings.catch_warnings():  # torch.jit.load's deprecation notice, about the package's own loading
            warnings.simplefilter("ignore", FutureWarning)
            model = load_silero_vad(onnx=importlib.util.find_spec("onnxruntime") is not None)
    finally:
        torch.set_num_threads(threads)
    return model, get_speech_timestamps


def speech_regions(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, threshold: float = 0.5,
                   min_speech: float = 0.25, min_silence: float = 0.3, pad: float = 0.05) -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s)]`` of a mono waveform ``(T,)`` at 16 kHz, by Silero VAD.

    ``min_silence``: a pause at least this long splits regions; ``min_speech``: shorter bursts are
    dropped; ``pad``: seconds added on each side (within the recording).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"speech_regions expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
    model, get_speech_timestamps = _silero()
    stamps = get_speech_timestamps(wave.float().reshape(-1), model, sampling_rate=sample_rate,
                                   threshold=threshold, min_speech_duration_ms=int(min_speech * 1000),
                                   min_silence_duration_ms=int(min_silence * 1000), speech_pad_ms=int(pad * 1000))
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]


def windows(start: float, end: float, window: float, hop: float) -> list[tuple[float, float]]:
    """Windows of ``window`` seconds every ``hop`` seconds covering ``[start, end]``; the last one ends at
    ``end``; a span shorter than a window is one window."""
    if end - start <= window:
        return [(start, end)]
    starts = list(np.arange(start, end - window, hop)) + [end - window]
    return [(float(s), float(s) + window) for s in starts]


def _smooth(labels: list[str]) -> list[str]:
    """A single window whose neighbours agree with each other takes their label."""
    out = list(labels)
    for i in range(1, len(labels) - 1):
        if labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


def label_recording(wave: torch.Tensor, embed_many: Callable[[list[torch.Tensor]], torch.Tensor],
                    identify: Callable[[np.ndarray], dict], regions: list[tuple[float, float]] | None = None,
                    window: float = 1.5, hop: float = 0.75, sample_rate: int = SAMPLE_RATE) -> list[dict]:
    """Label the speech of ``wave`` ``(T,)``: ``[{"start", "end", "speaker", "score"}]`` in time order.

    ``embed_many``: ``[(T_i,)]`` -> ``(N, D)`` embeddings; ``identify``: one ``(D,)`` embedding -> the
    registry's ``{"speaker", "score", ...}``. ``regions``: speech regions (default: :func:`speech_regions`).
    Each window's frames count for the part of the window nearest its centre (its hop), so segments
    meet halfway between window centres; a segment's score is the mean of its windows' scores.
    """
    regions = speech_regions(wave, sample_rate) if regions is None else regions
    segments: list[dict] = []
    for r0, r1 in regions:
        spans = windows(r0, r1, window, hop)
        clips = [wave[int(a * sample_rate):max(int(b * sample_rate), int(a * sample_rate) + 1)] for a, b in spans]
        emb = embed_many(clips)
        results = [identify(e.numpy()) for e in emb]
        labels = _smooth([r["speaker"] for r in results])
        centres = [(a + b) / 2 for a, b in spans]
        for k, (label, res) in enumerate(zip(labels, results, strict=True)):
            start = r0 if k == 0 else (centres[k - 1] + centres[k]) / 2
            end = r1 if k == len(spans) - 1 else (centres[k] + centres[k + 1]) / 2
            score = res["score"] if res["speaker"] == label or label == UNKNOWN else next(
                (c["score"] for c in res["candidates"] if c["speaker"] == label), res["score"])
            if segments and segments[-1]["speaker"] == label and abs(segments[-1]["end"] - start) < 1e-6:
                seg = segments[-1]
                seg["end"], seg["_scores"] = end, seg["_scores"] + [score]
            else:
                segments.append({"start": start, "end": end, "speaker": label, "_scores": [score]})
    for seg in segments:
        scores = seg.pop("_scores")
        seg["start"], seg["end"] = round(seg["start"], 3), round(seg["end"], 3)
        seg["score"] = round(float(np.mean(scores)), 4)
    return segments


def to_rttm(segments: list[dict], recording_id: str) -> str:
    """NIST RTTM: one ``SPEAKER <id> 1 <onset> <duration> <NA> <NA> <name> <NA> <NA>`` line per segment
    (spaces in names become underscores, as RTTM fields cannot hold them)."""
    rec = "_".join(recording_id.split()) or "recording"
    return "".join(f"SPEAKER {rec} 1 {s['start']:.3f} {s['end'] - s['start']:.3f} <NA> <NA> "
                   f"{'_'.join(s['speaker'].split())} <NA> <NA>\n" for s in segments)
