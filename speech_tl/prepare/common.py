"""What every corpus preparer shares: rows, rejections, parallel header reads, outputs.

A preparer lists :class:`Row` s (one per utterance the corpus claims to have), and
:func:`probe_rows` reads each audio header in parallel to get durations, turning every
row that cannot be used into a :class:`Rejection` with a reason. :func:`write_outputs`
writes the manifests, the rejected file and a done-marker, and prints a summary.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..atomic import atomic_write_text
from ..audio import FFMPEG_HINT, AudioError, audio_info
from ..manifest import Utterance, write_jsonl, write_manifest


@dataclass
class Row:
    """One utterance as a corpus lists it, before its audio is looked at."""

    id: str
    audio: Path
    text: str
    speaker: str
    language: str
    source: str = ""  # file the row came from, for messages
    line: int | None = None  # 1-based line in ``source``
    offset: float | None = None
    duration: float | None = None  # known length of a segment (Kaldi segments)
    extra: dict = field(default_factory=dict)


@dataclass
class Rejection:
    """A row that could not be used, and why (``reason`` is a short category)."""

    reason: str
    detail: str
    source: str = ""
    line: int | None = None
    id: str | None = None
    audio: str | None = None

    def to_dict(self) -> dict:
        return {"reason": self.reason, "detail": self.detail, "source": self.source, "line": self.line,
                "id": self.id, "audio": self.audio}


def reject(row: Row, reason: str, detail: str) -> Rejection:
    return Rejection(reason=reason, detail=detail, source=row.source, line=row.line, id=row.id,
                     audio=str(row.audio))


def finished_audio_seconds(path: str | os.PathLike) -> float | None:
    """Seconds of the audio file a resumed preparation finds at ``path``; None when there is none or it is a damaged
    leftover (empty, unreadable), to be written again."""
    import soundfile as sf

    if not Path(path).is_file():
        return None
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - libsndfile raises several types for a damaged file: write it again
        return None
    return info.frames / info.samplerate if info.frames > 0 else None


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _probe_one(path: str) -> tuple[float, int] | tuple[str, str]:
    """(duration, sample_rate), or ("error", message) in a worker process."""
    try:
        info = audio_info(path)
    except AudioError as e:
        return ("error", e.reason)
    return (info.duration, info.sample_rate)


def parallel_map(fn: Callable, items: Sequence, workers: int | None = None, desc: str = "",
                 chunksize: int = 256) -> list:
    """``[fn(x) for x in items]`` across processes, with a progress bar; order kept.

    ``fn`` must be a module-level function. Small inputs or ``workers=1`` run in-process.
    """
    workers = workers or default_workers()
    show = sys.stderr.isatty() and len(items) > 1000
    if workers == 1 or len(items) < 2 * chunksize:
        return [fn(x) for x in tqdm(items, desc=desc, disable=not show, unit="file")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        it = pool.map(fn, items, chunksize=chunksize)
        return list(tqdm(it, total=len(items), desc=desc, disable=not show, unit="file"))


def probe_rows(rows: Sequence[Row], workers: int | None = None, desc: str = "reading headers"
               ) -> tuple[list[Utterance], list[Rejection]]:
    """Durations from audio headers, in parallel. Returns kept utterances and rejections.

    Rows with an explicit ``duration`` (segments) are checked to lie inside their file.
    """
    results = parallel_map(_probe_one, [str(r.audio) for r in rows], workers, desc)
    kept: list[Utterance] = []
    rejected: list[Rejection] = []
    for row, res in zip(rows, results, strict=True):
        if res[0] == "error":
            detail = res[1]
            reason = "missing audio file" if detail == "file not found" else "unreadable audio"
            if detail.startswith("empty"):
                reason = "empty audio"
            elif detail.startswith("m4a/aac/mp4 audio is decoded with ffmpeg"):
                reason, detail = "ffmpeg not installed", f"{detail}; {FFMPEG_HINT}"
            rejected.append(reject(row, reason, detail))
            continue
        file_duration, sample_rate = res
        offset = row.offset or 0.0
        duration = row.duration if row.duration is not None else file_duration - offset
        if row.duration is not None and offset + duration > file_duration + 0.05:
            rejected.append(reject(row, "segment outside audio",
                                   f"segment {offset:.2f}-{offset + duration:.2f} s but the file is "
                                   f"{file_duration:.2f} s long"))
            continue
        if duration <= 0:
            rejected.append(reject(row, "empty audio", f"duration {duration:.3f} s"))
            continue
        # a relative path would be read against the manifest's folder later, not the current one
        audio = row.audio if Path(row.audio).is_absolute() else Path(row.audio).resolve()
        kept.append(Utterance(id=row.id, audio=str(audio), duration=round(duration, 4), text=row.text,
                              speaker=row.speaker, language=row.language, offset=row.offset,
                              sample_rate=sample_rate, extra=dict(row.extra)))
    return kept, rejected


def check_text(rows: Iterable[Row], require_text: bool) -> tuple[list[Row], list[Rejection]]:
    """Reject rows with empty text when the corpus is meant to have transcripts."""
    kept, rejected = [], []
    for r in rows:
        if require_text and not r.text.strip():
            rejected.append(reject(r, "empty transcript", "the row has no text"))
        else:
            kept.append(r)
    return kept, rejected


def dedupe_ids(rows: Iterable[Row]) -> tuple[list[Row], list[Rejection]]:
    """Reject the second and later rows that reuse an id (the first one wins)."""
    seen: dict[str, Row] = {}
    kept, rejected = [], []
    for r in rows:
        if r.id in seen:
            first = seen[r.id]
            where = first.source if first.line is None else f"{first.source}:{first.line}"
            rejected.append(reject(r, "duplicate id", f"id already used at {where}"))
        else:
            seen[r.id] = r
            kept.append(r)
    return kept, rejected


# --------------------------------------------------------------------------- outputs

@dataclass
class PrepareResult:
    """Outputs of one preparer run: manifests per split, rejected rows, files written."""

    corpus: str
    language: str
    splits: dict[str, list[Utterance]]
    rejected: list[Rejection]
    files: dict[str, Path] = field(default_factory=dict)
    skipped: bool = False

    def summary(self) -> str:
        """What was written, per split; a skipped run (a done-marker with the same parameters, its files there) says
        that it reused them, naming the first file, so a recipe's log tells a reuse from a fresh preparation."""
        head = f"{self.corpus} ({self.language}):"
        if self.skipped:
            paths = [str(p) for p in self.files.values()]
            named = (paths[0] + (f" (and {len(paths) - 1} more file(s))" if len(paths) > 1 else "")
                     if paths else "its files")
            head += f" {named}: already prepared with the same parameters, reused (use --force to redo)"
        lines = [head]
        for name, utts in self.splits.items():
            hours = sum(u.duration for u in utts) / 3600
            lines.append(f"  {name:<10} kept {len(utts):>7} utterances, {hours:8.3f} h  -> {self.files.get(name, '')}")
        lines.append(f"  rejected   {len(self.rejected):>7} rows" +
                     (f"  -> {self.files['rejected']}" if "rejected" in self.files else ""))
        for reason, n in Counter(r.reason for r in self.rejected).most_common():
            lines.append(f"    {n:>7}  {reason}")
        return "\n".join(lines)


def manifest_name(corpus: str, language: str, split: str) -> str:
    return f"{corpus}_{language}_{split}.jsonl"


def marker_path(out_dir: Path, corpus: str, language: str) -> Path:
    return out_dir / f".{corpus}_{language}.done"


def finished_files(marker: Path, params: dict, overwrite: bool, what: str, elsewhere: str) -> dict[str, Path] | None:
    """The files done-marker ``marker`` lists, when it holds ``params`` and they are all there (a finished run to
    reuse); None when there is none.

    A finished run with other parameters whose files are still there is refused
    (:class:`~speech_tl.errors.OutputExistsError`, naming a file, ``what`` was done there and what changed) unless
    ``overwrite``: redoing it would replace them. (``force`` callers do not ask: forcing a redo replaces the outputs
    anyway.) ``elsewhere``: the other way out, e.g. "another --out-dir".
    """
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    files = {k: Path(v) for k, v in (info.get("files") or {}).items()}
    if info.get("params") != params:
        there = [p for p in files.values() if p.is_file()]
        if there and not overwrite:
            old = info.get("params") or {}
            changed = "; ".join(f"{k}: {old.get(k, '(unset)')!r} -> {params.get(k, '(unset)')!r}"
                                for k in sorted(set(old) | set(params)) if old.get(k) != params.get(k))
            from ..errors import OutputExistsError

            more = f" (and {len(there) - 1} more file(s))" if len(there) > 1 else ""
            raise OutputExistsError(f"{there[0]}{more}: {what} with other parameters ({changed}); give --overwrite "
                                    f"to replace it, or {elsewhere}")
        return None
    return files if all(p.is_file() for p in files.values()) else None


def read_rejections(path: Path) -> list[Rejection]:
    """The rejections of a ``*_rejected.jsonl`` file written by a preparer."""
    with open(path, encoding="utf-8") as f:
        return [Rejection(**json.loads(line)) for line in f if line.strip()]


def already_done(out_dir: Path, corpus: str, language: str, params: dict,
                 overwrite: bool = False) -> PrepareResult | None:
    """The previous result if a done-marker with the same parameters exists and its files are there
    (:func:`finished_files`: other parameters are refused unless ``overwrite``)."""
    files = finished_files(marker_path(out_dir, corpus, language), params, overwrite,
                           f"{corpus} ({language}) was prepared here", "another --out-dir")
    if files is None:
        return None
    from ..manifest import read_manifest

    splits = {k: read_manifest(p) for k, p in files.items() if k != "rejected"}
    rejected = read_rejections(files["rejected"]) if "rejected" in files else []
    return PrepareResult(corpus, language, splits, rejected, files, skipped=True)


def write_outputs(out_dir: Path, corpus: str, language: str, splits: dict[str, list[Utterance]],
                  rejected: list[Rejection], params: dict) -> PrepareResult:
    """Write ``<corpus>_<lang>_<split>.jsonl`` per split and ``<corpus>_<lang>_rejected.jsonl``.

    Files are written atomically; the done-marker is written last, so an interrupted run
    is redone next time.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {"train": 0, "dev": 1, "test": 2}
    splits = dict(sorted(splits.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))
    files: dict[str, Path] = {}
    for name, utts in splits.items():
        path = out_dir / manifest_name(corpus, language, name)
        write_manifest(path, sorted(utts, key=lambda u: u.id))
        files[name] = path
    rej_path = out_dir / manifest_name(corpus, language, "rejected")
    write_jsonl(rej_path, (r.to_dict() for r in rejected))
    files["rejected"] = rej_path
    atomic_write_text(marker_path(out_dir, corpus, language),
                      json.dumps({"params": params, "files": {k: str(v) for k, v in files.items()}},
                                 ensure_ascii=False, indent=1))
    return PrepareResult(corpus, language, splits, rejected, files)
