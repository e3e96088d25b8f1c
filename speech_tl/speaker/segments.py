"""Who spoke when: voice activity, speaker windows, voices clustered across the recording, and named segments.

:func:`speech_regions` finds speech with Silero VAD (the ``silero-vad`` package ships its model, so nothing is
downloaded). :func:`label_recording` then

1. cuts each speech region into overlapping windows and embeds them in batches (a region shorter than a window is
   embedded whole);
2. splits each region where the best enrolled match of its windows changes, or where their best score falls under
   the threshold less :data:`WINDOW_MARGIN` (a lone window between two of the same label takes theirs): the
   *units*, each a stretch of one voice, embedded as the mean of its windows;
3. clusters the units of the whole recording by voice (:func:`cluster_units`: average-linkage agglomerative
   clustering on cosine similarity, stopped at the database's ``cluster_threshold``; two units confidently named
   as different enrolled speakers are never put together), so a turn with a weak score borrows strength from the
   other turns of the same voice;
4. names each cluster by its best enrolled match, scoring the cluster's mean embedding: above the threshold in use
   (from the database, :mod:`speech_tl.speaker.registry.thresholds`, or ``min_score``) it is that speaker, else
   ``unknown``; closed set (``open_set=False``, for when only enrolled people speak) it is always the best match;
5. merges neighbouring units of one cluster into segments; each keeps its own score against the name it got
   (for ``unknown``, against its best match).

Why clusters: a 1.5 s window scores lower than a whole clip against the same speaker (GE2E on real Common Voice
voices, against 4-clip centroids: EER threshold 0.663 for 1.5 s windows, 0.724 for whole clips), so windows
judged alone fall under a threshold that fits clips; a cluster's mean embedding scores like a clip.

Output: ``[{"start", "end", "speaker", "score", "cluster"}]`` in seconds, the shape of ``speech-tl identify
--segments --json``; :func:`to_rttm` writes the NIST RTTM lines diarization tools read (an unknown voice as
``unknown-<cluster>``). Speaker changes are found at pauses (VAD) and, inside a region, at window resolution
(``hop`` seconds): a change without a pause lands within one hop of where it happened.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .registry import UNKNOWN

SAMPLE_RATE = 16000
# 1.5 s windows score lower than whole clips against the same centroids (GE2E, real Common Voice voices, 4-clip
# centroids: EER threshold 0.663 for windows, 0.724 for clips). Where a window's best score falls more than this
# under the threshold a stretch ends, and a stretch that far under a speaker's score never joins that speaker's
# cluster (a stranger answering without a pause). Measured with recipes/speaker_id/segments_eval.py (Common Voice,
# seed 0, speech named right / stranger unknown): 0.06: 84.3% / 95.5%, 0.10: 81.5% / 95.5%, 0.15: 92.4% / 90.5%
# (as without the rule there): smaller margins cut enrolled people's weaker stretches off their clusters
WINDOW_MARGIN = 0.15


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


@dataclass
class Judge:
    """How a recording's voices are named (:meth:`SpeakerRegistry.judge
    <speech_tl.speaker.registry.SpeakerRegistry.judge>` makes one): ``names`` of the S enrolled speakers, ``score``
    ``(N, D)`` embeddings -> ``(N, S)`` scores, the ``threshold`` in use and its ``origin``, and the
    ``cluster_threshold``: the cosine above which two stretches of speech are one voice."""

    names: list[str]
    score: Callable[[np.ndarray], np.ndarray]
    threshold: float
    origin: str
    cluster_threshold: float


def cluster_units(embeddings: np.ndarray, threshold: float, named: np.ndarray,
                  allowed: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage agglomerative clustering: ``embeddings`` ``(U, D)`` L2-normalised -> cluster ids ``(U,)``.

    The two clusters whose units are most alike on average (mean pairwise cosine) merge, while that mean is above
    ``threshold``; ``named`` ``(U,)`` holds each unit's confident enrolled match (an index, or -1): clusters holding
    units confidently named as different speakers never merge. ``allowed`` ``(U, S)`` (optional): whether a unit
    may join a cluster named as enrolled speaker s at all (a stranger's stretch, clearly not s, never does, however
    alike the voices). Written here because no maintained library clusters with such cannot-link constraints
    (scipy's and scikit-learn's linkage do not take them).
    """
    n = len(embeddings)
    speakers = max(int(np.max(named, initial=-1)) + 1, 1)
    fits = np.ones((n, speakers), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()  # (C, S)
    sums = (embeddings @ embeddings.T).astype(np.float64)  # (U, U): sums of pairwise cosines between clusters
    sizes = np.ones(n)
    name = np.asarray(named, dtype=np.int64).copy()  # each cluster's confident name, or -1
    owner = np.arange(n)  # which cluster each unit is in
    active = np.ones(n, dtype=bool)

    def linkage(a: int) -> np.ndarray:
        """Row ``a`` of the average-linkage matrix: -inf where a merge is not allowed."""
        row = sums[a] / (sizes[a] * sizes)
        row[~active] = -np.inf
        row[a] = -np.inf
        if name[a] >= 0:
            row[(name >= 0) & (name != name[a])] = -np.inf
            row[~fits[:, name[a]]] = -np.inf  # clusters with a stretch that cannot be this speaker
        row[(name >= 0) & ~fits[a, np.maximum(name, 0)]] = -np.inf  # this cluster cannot be theirs
        return row

    avg = np.stack([linkage(a) for a in range(n)]) if n else np.zeros((0, 0))
    while n > 1:  # each merge updates one row and column: O(U^2) per merge, not a rebuild of the matrix
        a, b = np.unravel_index(int(np.argmax(avg)), avg.shape)
        if not avg[a, b] > threshold:
            break
        sums[a, :] += sums[b, :]
        sums[:, a] += sums[:, b]
        sizes[a] += sizes[b]
        name[a] = max(name[a], name[b])
        fits[a] &= fits[b]
        active[b] = False
        owner[owner == b] = a
        avg[b, :] = avg[:, b] = -np.inf
        avg[a, :] = avg[:, a] = linkage(a)
    _, ids = np.unique(owner, return_inverse=True)
    return ids


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def label_recording(wave: torch.Tensor, embed_many: Callable[[list[torch.Tensor]], torch.Tensor], judge: Judge,
                    regions: list[tuple[float, float]] | None = None, window: float = 1.5, hop: float = 0.75,
                    sample_rate: int = SAMPLE_RATE, open_set: bool = True,
                    min_score: float | None = None) -> list[dict]:
    """Label the speech of ``wave`` ``(T,)``: ``[{"start", "end", "speaker", "score", "cluster"}]`` in time order
    (the steps in the module docstring).

    ``embed_many``: ``[(T_i,)]`` -> ``(N, D)`` L2-normalised embeddings; ``regions``: speech regions (default:
    :func:`speech_regions`); ``min_score``: name a voice above this score instead of ``judge.threshold``;
    ``open_set=False``: every voice gets its best enrolled match.
    """
    regions = speech_regions(wave, sample_rate) if regions is None else regions
    threshold = judge.threshold if min_score is None else float(min_score)
    units: list[dict] = []  # {"start", "end", "windows": [embedding rows]}
    rows: list[np.ndarray] = []
    for r0, r1 in regions:
        spans = windows(r0, r1, window, hop)
        clips = [wave[int(a * sample_rate):max(int(b * sample_rate), int(a * sample_rate) + 1)] for a, b in spans]
        emb = np.asarray(embed_many(clips), dtype=np.float32)  # (W, D)
        scores = judge.score(emb)  # (W, S)
        # a new stretch where the best match changes or where windows fall under the window-level threshold (a
        # stranger answering without a pause often has the same best match, at a lower score)
        window_threshold = threshold - WINDOW_MARGIN
        labels = _smooth([str(i) if m > window_threshold else UNKNOWN
                          for i, m in zip(scores.argmax(1), scores.max(1), strict=True)])
        centres = [(a + b) / 2 for a, b in spans]
        for k, label in enumerate(labels):
            start = r0 if k == 0 else (centres[k - 1] + centres[k]) / 2
            end = r1 if k == len(spans) - 1 else (centres[k] + centres[k + 1]) / 2
            if k > 0 and labels[k - 1] == label:
                units[-1]["end"] = end
                units[-1]["windows"].append(len(rows))
            else:
                units.append({"start": start, "end": end, "windows": [len(rows)]})
            rows.append(emb[k])
    if not units:
        return []
    window_emb = np.stack(rows)
    unit_emb = _unit(np.stack([window_emb[u["windows"]].mean(0) for u in units]))  # (U, D)
    unit_scores = judge.score(unit_emb)  # (U, S)
    confident = np.where(unit_scores.max(1) > threshold, unit_scores.argmax(1), -1)
    ids = cluster_units(unit_emb, judge.cluster_threshold, confident, unit_scores > threshold - WINDOW_MARGIN)
    durations = np.array([u["end"] - u["start"] for u in units])
    cluster_emb = _unit(np.stack([(unit_emb[ids == c] * durations[ids == c, None]).sum(0)
                                  for c in range(ids.max() + 1)]))
    cluster_scores = judge.score(cluster_emb)  # (C, S)
    best = cluster_scores.argmax(1)
    named = [not open_set or cluster_scores[c, best[c]] > threshold for c in range(len(best))]
    for c in range(len(best)):  # a cluster holding stretches named on their own keeps that name (one, at most)
        sure = set(confident[ids == c].tolist()) - {-1}
        if sure:
            best[c], named[c] = sure.pop(), True
    segments: list[dict] = []
    for u, unit in enumerate(units):
        c = int(ids[u])
        speaker = judge.names[best[c]] if named[c] else UNKNOWN
        score = float(unit_scores[u, best[c]] if named[c] else unit_scores[u].max())
        last = segments[-1] if segments else None
        if last and last["cluster"] == c and last["speaker"] == speaker and abs(last["end"] - unit["start"]) < 1e-6:
            last["end"] = unit["end"]
            last["_scores"].append((score, durations[u]))
        else:
            segments.append({"start": unit["start"], "end": unit["end"], "speaker": speaker, "cluster": c,
                             "_scores": [(score, durations[u])]})
    for seg in segments:
        scores = np.array(seg.pop("_scores"))
        seg["start"], seg["end"] = round(seg["start"], 3), round(seg["end"], 3)
        seg["score"] = round(float(np.average(scores[:, 0], weights=np.maximum(scores[:, 1], 1e-6))), 4)
    return [{k: seg[k] for k in ("start", "end", "speaker", "score", "cluster")} for seg in segments]


def to_rttm(segments: list[dict], recording_id: str) -> str:
    """NIST RTTM: one ``SPEAKER <id> 1 <onset> <duration> <NA> <NA> <name> <NA> <NA>`` line per segment
    (spaces in names become underscores, as RTTM fields cannot hold them)."""
    rec = "_".join(recording_id.split()) or "recording"
    def name(s: dict) -> str:
        who = f"{UNKNOWN}-{s['cluster']}" if s["speaker"] == UNKNOWN and "cluster" in s else s["speaker"]
        return "_".join(who.split())

    return "".join(f"SPEAKER {rec} 1 {s['start']:.3f} {s['end'] - s['start']:.3f} <NA> <NA> {name(s)} <NA> <NA>\n"
                   for s in segments)
