"""One warm speaker model beside one speaker database: enroll, identify, verify, who spoke when.

:class:`SpeakerService` loads the embedding model once and answers many requests; the command line
(``speech-tl enroll | identify | verify``, batch enrollment) and the HTTP service (``speech-tl serve``,
:mod:`speech_tl.speaker.server`) both go through it, so they give the same answers in the same JSON
shapes. It is safe to call from several threads: each call opens its own connection to the database
(SQLite serialises writers; see :mod:`speech_tl.speaker.registry`), and every forward pass of the model
runs one at a time (the model already uses every core; running two at once only makes both slower), on
a thread of its own when serving (see ``serving``).

Audio goes through the same checks as everywhere else (:func:`speech_tl.audio.load_checked`: readable,
long enough, not silent, not clipped), plus a per-clip duration limit read from the header before
decoding (:class:`Limits`).
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio import SUPPORTED_SUFFIXES, AudioError, audio_info, load_checked
from ..errors import InputError
from ..logs import info, warning
from .registry import (
    DEFAULT_MODEL,
    DEFAULT_THRESHOLD,
    ReadOnlyError,
    SpeakerRegistry,
    SpeakerRegistryError,
    normalize_name,
)

SAMPLE_RATE = 16000


class ClipTooLongError(InputError):
    """A clip longer than the service's limit (HTTP 413)."""


@dataclass(frozen=True)
class Limits:
    """What one request may bring: ``max_seconds`` of audio per clip (checked from the header, before
    decoding), ``max_upload_bytes`` in all (the HTTP service counts the body as it arrives)."""

    max_seconds: float = 600.0
    max_upload_bytes: int = 50 * 1024 * 1024


def speech_only(wave: torch.Tensor, min_seconds: float = 0.5) -> torch.Tensor:
    """The speech of ``wave`` ``(T,)`` at 16 kHz, its voice-activity regions joined end to end (Silero VAD);
    the whole clip when less than ``min_seconds`` of speech is found (a short or quiet clip keeps what it has)."""
    from .segments import speech_regions

    regions = speech_regions(wave)
    parts = [wave[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in regions]
    kept = sum(p.numel() for p in parts)
    return torch.cat(parts) if kept >= min_seconds * SAMPLE_RATE else wave


class SpeakerService:
    """A speaker database ``db`` and the embedding model it was created with, loaded once.

    ``model``: the model for a new database (default :data:`~speech_tl.speaker.registry.DEFAULT_MODEL`);
    an existing database keeps its own, and another one given here is refused. ``readonly``: refuse
    every change and open the database read-only (it may sit on read-only media). ``trim``: embed only
    the speech of each clip (:func:`speech_only`); off by default, because on real speech it did not help
    GE2E (Common Voice EER 0.114 -> 0.119, FSDD 0.171 -> 0.172: ``recipes/speaker_id/real_speech.py``).
    ``serving``: many threads will call (a web server); forward passes then run on one thread of their own.
    ``backend``: ``auto`` (an exported ONNX folder through ONNX Runtime, anything else through torch), ``torch`` or
    ``onnx`` (:func:`speech_tl.runtime.choose_backend`).
    """

    def __init__(self, db: str | os.PathLike, model: str | None = None, device: str = "auto",
                 readonly: bool = False, trim: bool = False, limits: Limits = Limits(), batch_size: int = 16,
                 serving: bool = False, backend: str = "auto"):
        from ..device import resolve_device
        from .embedder import load_embedder

        self.db, self.readonly, self.trim, self.limits = Path(db), readonly, trim, limits
        self.batch_size = batch_size
        have = None
        if self.db.exists() or readonly:
            with self.registry() as reg:
                have = reg.model
        if readonly and have is None:
            raise SpeakerRegistryError(f"{self.db}: no speakers enrolled yet; enroll some with `speech-tl enroll`")
        source = model or (have.source if have is not None else DEFAULT_MODEL)
        dev = resolve_device(device)  # a device error is the user's, not the model's
        try:
            self.embedder = load_embedder(source, dev, backend)
        except (ValueError, OSError, RuntimeError, ImportError) as e:
            raise SpeakerRegistryError(f"cannot load speaker model {source} (for {self.db}): {e}") from None
        if have is not None:
            with self.registry() as reg:
                reg.check_model(self.embedder)  # another model, or the weights behind the source changed since
        self._lock = threading.Lock()
        self._model_thread = None
        self._reader: SpeakerRegistry | None = None  # serving: the model thread's connection (keeps its caches)
        if serving:
            # a web server answers on many threads; torch's OpenMP thread teams belong to the thread that calls it,
            # and several teams on 2 cores spin against each other: GE2E on a 3 s clip took 83-97 ms on any thread
            # but the main one (28 ms there). One model thread with one torch thread: 31-40 ms.
            self._model_thread = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="speech-tl-model", initializer=torch.set_num_threads, initargs=(1,))

    def _on_model_thread(self, fn):
        """Run ``fn()`` (a forward pass), one at a time: on the model's own thread when serving, else here."""
        if self._model_thread is not None:
            return self._model_thread.submit(fn).result()
        with self._lock:
            return fn()

    def _scored(self, fn):
        """``fn(registry)`` for scoring, like a forward pass: serving, on the model thread with its one read-only
        connection, whose speaker matrix and AS-Norm statistics stay cached until the database changes."""
        def run():
            if self._model_thread is None:
                with self.registry() as reg:
                    return fn(reg)
            if self._reader is None:
                self._reader = self.registry()
            return fn(self._reader)

        return self._on_model_thread(run)

    def close(self) -> None:
        if self._model_thread is not None:
            if self._reader is not None:
                self._model_thread.submit(self._reader.close).result()
            self._model_thread.shutdown(wait=True)

    # ------------------------------------------------------------------ database and audio

    def registry(self, write: bool = False) -> SpeakerRegistry:
        """A new connection to the database: read-only unless ``write`` (created by the first enroll)."""
        if write and self.readonly:
            raise ReadOnlyError(f"{self.db} is served read-only: it cannot be changed")
        if write:
            return SpeakerRegistry(self.db)
        return SpeakerRegistry(self.db, create=False, readonly=True)

    def load(self, path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> torch.Tensor:
        """A clip as a checked mono 16 kHz waveform ``(T,)``; longer than ``limits.max_seconds`` is refused
        from its header."""
        seconds = duration if duration is not None else audio_info(path).duration - offset
        if seconds > self.limits.max_seconds:
            raise ClipTooLongError(f"{path}: {seconds:.1f} s of audio, more than the limit of "
                                   f"{self.limits.max_seconds:g} s per clip; cut it, or raise the limit")
        return load_checked(path, offset=offset, duration=duration)

    def load_bytes(self, data: bytes, name: str) -> torch.Tensor:
        """An uploaded clip (any format soundfile reads) as :meth:`load` gives it; errors name ``name``."""
        suffix = Path(name).suffix.lower()
        fd, tmp = tempfile.mkstemp(suffix=suffix if suffix in SUPPORTED_SUFFIXES else ".audio",
                                   prefix="speech-tl-upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                return self.load(tmp)
            except AudioError as e:  # named as the client named it, not by the temporary file
                rest = str(e)[len(e.path) + 2:] if str(e).startswith(f"{e.path}: ") else str(e)
                raise AudioError(name, rest.replace(tmp, name)) from None
            except ClipTooLongError as e:
                raise ClipTooLongError(str(e).replace(tmp, name)) from None
        finally:
            os.unlink(tmp)

    def embed(self, waves: list[torch.Tensor]) -> torch.Tensor:
        """``[(T_i,)]`` -> ``(N, D)`` L2-normalised embeddings (of the speech only when ``trim``)."""
        def run():
            return self.embedder.embed_many([speech_only(w) for w in waves] if self.trim else waves, self.batch_size)

        return self._on_model_thread(run)

    # ------------------------------------------------------------------ requests

    def enroll(self, speaker: str, waves: list[torch.Tensor], clips: list[str]) -> dict:
        """Add checked clips ``waves`` (named ``clips``) of ``speaker``: ``{"speaker", "created", "added",
        "n_clips"}``; all or nothing."""
        speaker = normalize_name(speaker)
        embeddings = list(self.embed(waves))
        with self.registry(write=True) as reg:
            return reg.enroll(speaker, embeddings, clips, self.embedder)

    def identify(self, wave: torch.Tensor, top_k: int = 5) -> dict:
        """``{"speaker" (or "unknown"), "score", "threshold", "candidates": [{"speaker", "score"}]}``."""
        emb = self.embed([wave])[0]
        return self._scored(lambda reg: reg.identify(emb, top_k, model=self.embedder))

    def verify(self, speaker: str, wave: torch.Tensor) -> dict:
        """``{"speaker", "accepted", "score", "threshold"}``."""
        emb = self.embed([wave])[0]
        return self._scored(lambda reg: reg.verify(speaker, emb, model=self.embedder))

    def segments(self, wave: torch.Tensor, open_set: bool = True, min_score: float | None = None) -> dict:
        """Who spoke when (:func:`speech_tl.speaker.segments.label_recording`): ``{"segments": [{"start", "end",
        "speaker", "score", "cluster"}], "threshold", "threshold_origin", "open_set"}`` (seconds). ``min_score``
        replaces the database's threshold; ``open_set=False`` names every voice by its best enrolled match."""
        from .segments import label_recording, speech_regions

        if min_score is not None and not math.isfinite(float(min_score)):
            raise InputError(f"min_score must be a finite number, got {min_score!r}")
        regions = self._on_model_thread(lambda: speech_regions(wave))
        with self.registry() as reg:
            judge = reg.judge(self.embedder)

            def embed_many(clips):
                return self._on_model_thread(lambda: self.embedder.embed_many(clips, self.batch_size))

            segments = label_recording(wave, embed_many, judge, regions, open_set=open_set, min_score=min_score)
        used = judge.threshold if min_score is None else float(min_score)
        return {"segments": segments, "threshold": used,
                "threshold_origin": judge.origin if min_score is None else "min_score", "open_set": bool(open_set)}

    def speakers(self) -> dict:
        """The database's model, threshold and speakers, as ``speech-tl speakers list --json`` prints them
        (none, and the default threshold, before the first enrollment creates the database)."""
        if not self.db.exists() and not self.readonly:
            return {"model_source": None, "model_fingerprint": None, "embedding_dim": None, "score": "cosine",
                    "cohort_size": 0, "threshold": DEFAULT_THRESHOLD,
                    "threshold_provenance": "default (no database yet)", "threshold_origin": "default",
                    "cluster_threshold": None, "speakers": []}
        with self.registry() as reg:
            return listing(reg)

    def remove(self, speaker: str) -> dict:
        with self.registry(write=True) as reg:
            n = reg.remove(speaker)
        return {"speaker": normalize_name(speaker), "removed_clips": n}

    def rename(self, old: str, new: str) -> dict:
        with self.registry(write=True) as reg:
            reg.rename(old, new)
        return {"speaker": normalize_name(new), "was": normalize_name(old)}

    def calibrate(self, results: str | os.PathLike, target_far: float | None = None, shown_as: str | None = None
                  ) -> dict:
        with self.registry(write=True) as reg:
            return reg.calibrate_threshold(results, target_far, shown_as)

    # ------------------------------------------------------------------ AS-Norm cohort

    def add_cohort(self, items: Iterable[tuple[str, str, Callable[[], torch.Tensor]]], progress: bool = True) -> dict:
        """Embed clips of other speakers into the database's AS-Norm cohort (see
        :meth:`SpeakerRegistry.add_cohort`). ``items``: ``(speaker or "", clip, load)``. Clips already in the
        cohort are skipped; clips that fail, or whose speaker is enrolled (a cohort must hold *other*
        speakers), are listed. Returns ``{"added", "cohort_size", "score", "threshold", "refused", "skipped"}``."""
        from tqdm import tqdm

        items = list(items)
        with self.registry() as reg:
            enrolled = {n for n, _, _ in reg.speakers()}
            have = set(reg.cohort_clips())
        waves, clips, refused, skipped = [], [], [], []
        for speaker, clip, load in tqdm(items, unit="clip", desc="cohort",
                                        disable=not progress or not sys.stderr.isatty()):
            if clip in have or clip in clips:
                skipped.append(clip)
                continue
            if speaker and normalize_name(speaker) in enrolled:
                refused.append({"clip": clip, "reason": f"speaker '{normalize_name(speaker)}' is enrolled; the "
                                                        "cohort must hold other speakers"})
                continue
            try:
                waves.append(load())
                clips.append(clip)
            except (AudioError, ClipTooLongError, OSError) as e:
                refused.append({"clip": clip, "reason": str(e)})
                warning(f"not in the cohort: {e}")
        if clips:
            embeddings = list(self.embed(waves))
            with self.registry(write=True) as reg:
                result = reg.add_cohort(embeddings, clips, self.embedder)
        else:  # nothing new: what the database holds
            with self.registry() as reg:
                meta = reg.meta()
                result = {"added": 0, "cohort_size": reg.cohort_size(), "score": meta["score"],
                          "threshold": meta["threshold"]}
        return {**result, "refused": refused, "skipped": skipped}

    def clear_cohort(self) -> dict:
        with self.registry(write=True) as reg:
            n = reg.clear_cohort()
            meta = reg.meta()
        return {"removed": n, "cohort_size": 0, "score": meta["score"], "threshold": meta["threshold"]}

    # ------------------------------------------------------------------ batch enrollment

    def enroll_many(self, items: Iterable[tuple[str, str, Callable[[], torch.Tensor]]], progress: bool = True
                    ) -> dict:
        """Enroll many speakers' clips with the one loaded model; a clip that fails is listed and the others go on.

        ``items``: ``(speaker, clip name, load)`` where ``load()`` returns the checked waveform (or raises
        :class:`~speech_tl.audio.AudioError`). Clips already enrolled for their speaker are skipped, so a
        batch can be run again after it was interrupted or extended. Each speaker is written in one
        transaction. Returns ``{"speakers": [enroll results], "refused": [{"speaker", "clip", "reason"}],
        "skipped": [{"speaker", "clip"}], "enrolled_clips": N}``.
        """
        from tqdm import tqdm

        by_speaker: dict[str, list[tuple[str, Callable]]] = {}
        refused: list[dict] = []
        for speaker, clip, load in items:
            try:
                name = normalize_name(speaker)
            except SpeakerRegistryError as e:
                refused.append({"speaker": speaker, "clip": clip, "reason": str(e)})
                continue
            by_speaker.setdefault(name, []).append((clip, load))
        have: dict[str, set[str]] = {}
        if self.db.exists():
            with self.registry() as reg:
                enrolled = {n for n, _, _ in reg.speakers()}
                have = {n: set(reg.clips(n)) for n in by_speaker if n in enrolled}
        results, skipped = [], []
        count = sum(len(v) for v in by_speaker.values())
        with tqdm(total=count, unit="clip", desc="enroll", disable=not progress or not sys.stderr.isatty()) as bar:
            for name, clips in by_speaker.items():
                waves, names = [], []
                for clip, load in clips:
                    bar.update(1)
                    if clip in have.get(name, set()) or clip in names:
                        skipped.append({"speaker": name, "clip": clip})
                        continue
                    try:
                        waves.append(load())
                        names.append(clip)
                    except (AudioError, ClipTooLongError, OSError) as e:
                        refused.append({"speaker": name, "clip": clip, "reason": str(e)})
                        warning(f"not enrolled: {e}")
                if waves:
                    r = self.enroll(name, waves, names)
                    results.append(r)
                    info(f"{name}: {r['added']} clip(s) enrolled ({r['n_clips']} in all)")
        return {"speakers": results, "refused": refused, "skipped": skipped,
                "enrolled_clips": sum(r["added"] for r in results)}


def listing(reg: SpeakerRegistry) -> dict:
    """What ``speech-tl speakers list --json`` and ``GET /api/speakers`` answer about a database."""
    meta, rows = reg.meta(), reg.speakers()
    return {"model_source": meta["model_source"], "model_fingerprint": meta["model_fingerprint"],
            "embedding_dim": meta["embedding_dim"], "score": meta["score"], "cohort_size": reg.cohort_size(),
            "threshold": meta["threshold"], "threshold_provenance": meta["threshold_provenance"],
            "threshold_origin": meta["threshold_origin"], "cluster_threshold": meta["cluster_threshold"],
            "speakers": [{"speaker": n, "clips": k, "created": c} for n, k, c in rows]}


def _audio_below(folder: Path) -> list[Path]:
    """Audio files below ``folder`` by suffix, sorted: the ones speech-tl reads (soundfile, or ffmpeg for m4a/aac/
    mp4) and the ones it does not (wma, ...), which :meth:`SpeakerService.load` then refuses with the reason instead
    of skipping them."""
    from ..prepare.folder import OTHER_AUDIO

    suffixes = (*SUPPORTED_SUFFIXES, *OTHER_AUDIO)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """Every audio file (by suffix) below ``folder``, sorted; an error when there is none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    files = _audio_below(root)
    if not files:
        raise InputError(f"{root}: no audio files ({', '.join(SUPPORTED_SUFFIXES)}) below it")
    return files


def folder_items(folder: str | os.PathLike) -> list[tuple[str, str, Path]]:
    """``(speaker, clip, path)`` for a folder with one sub-folder per speaker holding its audio files (any
    depth below it); files that are not audio (by suffix) are ignored, an empty speaker folder is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; --from-folder expects one sub-folder per speaker")
    out = []
    speakers = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not speakers:
        raise InputError(f"{root}: no speaker folders; --from-folder expects DIR/<speaker>/<clip>.wav")
    for sub in speakers:
        files = _audio_below(sub)
        if not files:
            raise InputError(f"{sub}: no audio files ({', '.join(sorted(SUPPORTED_SUFFIXES))}) for speaker "
                             f"'{sub.name}'")
        out += [(sub.name, str(p.resolve()), p) for p in files]
    return out
