"""NVIDIA NeMo ASR manifests: import (``prepare nemo``) and export (``manifest to-nemo``).

A NeMo manifest is JSON Lines, one object per utterance, as NeMo's ASR documentation describes it::

    {"audio_filepath": "/data/an4/wav/cen3-fjlp-b.wav", "duration": 2.6, "text": "e l m"}
    {"audio_filepath": "long.wav", "offset": 3.45, "duration": 1.45, "text": "a segment of a file"}

``audio_filepath`` (absolute, or relative to the manifest's folder), ``duration`` (seconds; with
``offset``, the length of the segment that starts ``offset`` seconds into the file) and ``text`` are
the documented fields; speaker (``speaker``, ``spk``, ``speaker_id``, ``spk_id``, or ``label`` as in
NeMo's speaker-recognition manifests) and language (``lang``, ``language``, ``source_lang``) are
optional extras some NeMo recipes add. The reader is hand-written: the format is plain JSON Lines, and
``nemo_toolkit`` (with its PyTorch Lightning, Hydra, ... dependencies) is far too large to read it.

NeMo reads ``duration`` seconds from ``offset`` (0 when absent). Here durations come from the audio
headers: a line without ``offset`` whose ``duration`` is clearly shorter than its file becomes the
segment ``0 .. duration`` of the file; one clearly longer than its file is rejected.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from ..atomic import atomic_open
from ..manifest import Utterance
from .common import (
    PrepareResult,
    Rejection,
    Row,
    already_done,
    check_text,
    dedupe_ids,
    probe_rows,
    reject,
    write_outputs,
)

SPEAKER_KEYS = ("speaker", "spk", "speaker_id", "spk_id", "label")
LANGUAGE_KEYS = ("lang", "language", "source_lang")
TOLERANCE = 0.05  # seconds a manifest's duration may differ from the audio header
_SAID = "_nemo_duration"  # NeMo's duration of a whole-file line, held in Row.extra until the header is read


def _number(obj: dict, key: str) -> float | None | str:
    """The field as a finite float, None when absent, or a message why it is not usable."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"'{key}' must be a number of seconds, got {value!r}"
    return float(value)


def _first(obj: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if obj.get(k) not in (None, ""):
            return str(obj[k])
    return None


def _parse(obj: object, root: Path, language: str) -> Row | tuple[str, str]:
    """A row (id still to be made unique) for one decoded line, or ``(reason, detail)``."""
    if not isinstance(obj, dict):
        return "malformed line", f"expected a JSON object, got {type(obj).__name__}"
    audio = obj.get("audio_filepath")
    if audio in (None, ""):
        return "malformed line", "no 'audio_filepath' (a path to an audio file)"
    if not isinstance(audio, str):
        return "malformed line", f"'audio_filepath' must be a path, got {audio!r}"
    duration, offset = _number(obj, "duration"), _number(obj, "offset")
    for value in (duration, offset):
        if isinstance(value, str):
            return "malformed line", value
    if duration is None:
        return "malformed line", "no 'duration' (seconds)"
    if duration <= 0:
        return "empty segment", f"duration {duration} s"
    if offset is not None and offset < 0:
        return "malformed line", f"offset {offset} s is negative"
    text = obj.get("text", "")
    if not isinstance(text, str):
        return "malformed line", f"'text' must be a string, got {text!r}"
    path = Path(audio) if Path(audio).is_absolute() else root / audio
    utt_id = path.stem if offset is None else f"{path.stem}-{round(offset * 1000):08d}"
    # a whole-file line keeps NeMo's duration in `extra` until the header is read (see prepare_nemo)
    return Row(utt_id, path, text, _first(obj, SPEAKER_KEYS) or "", _first(obj, LANGUAGE_KEYS) or language,
               offset=offset, duration=duration if offset is not None else None,
               extra={} if offset is not None else {_SAID: duration})


def read_nemo_manifest(path: Path, language: str) -> tuple[list[Row], list[Rejection], bool]:
    """Rows of a NeMo manifest, its rejected lines, and whether it has transcripts (a line with ``text``)."""
    root, source = path.resolve().parent, path.name
    rows: list[Row] = []
    rejected: list[Rejection] = []
    first_line: dict[tuple, int] = {}
    has_text = False
    with open(path, "rb") as f:
        for lineno, data in enumerate(f, start=1):
            obj = None
            try:
                raw = data.decode("utf-8")
                if not raw.strip():
                    continue
                obj = json.loads(raw)
            except UnicodeDecodeError as e:
                result = ("malformed line", f"not valid UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start + 1})")
            except json.JSONDecodeError as e:
                result = ("malformed line", f"not valid JSON ({e.msg} at column {e.colno}); each line must be "
                          "one JSON object")
            else:
                result = _parse(obj, root, language)
                has_text = has_text or (isinstance(obj, dict) and "text" in obj)
            if isinstance(result, tuple):
                audio = obj.get("audio_filepath") if isinstance(obj, dict) else None
                rejected.append(Rejection(*result, source, lineno, None, audio if isinstance(audio, str) else None))
                continue
            result.source, result.line = source, lineno
            key = (str(result.audio.resolve()), result.offset, result.duration, result.extra.get(_SAID))
            if key in first_line:
                rejected.append(reject(result, "duplicate utterance",
                                       f"the same audio and segment as line {first_line[key]}"))
                continue
            first_line[key] = lineno
            rows.append(result)
    # ids: the file's stem (+ offset in ms); one that different files or segments share gets its line number
    counts = Counter(r.id for r in rows)
    for r in rows:
        if counts[r.id] > 1:
            r.id = f"{r.id}-line{r.line}"
        r.speaker = r.speaker or r.id
    return rows, rejected, has_text


def prepare_nemo(manifest: str | Path, out_dir: str | Path, language: str = "und", name: str = "nemo",
                 workers: int | None = None, force: bool = False, overwrite: bool = False) -> PrepareResult:
    """Import a NeMo manifest as ``<name>_<lang>_all.jsonl`` (+ ``<name>_<lang>_rejected.jsonl``).

    Ids are the audio file's stem (``-<offset in ms>`` for segments; ``-line<N>`` where two lines
    would share one). Speaker: the line's speaker field, else the id. When any line has ``text``,
    every line must have a non-empty one.
    """
    manifest, out_dir = Path(manifest), Path(out_dir)
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: NeMo manifest not found (a JSON Lines file with audio_filepath, "
                                "duration, text)")
    params = {"manifest": str(manifest.resolve()), "language": language}
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    rows, rejected, has_text = read_nemo_manifest(manifest, language)
    rows, bad = check_text(rows, require_text=has_text)
    rejected += bad
    rows, bad = dedupe_ids(rows)
    rejected += bad
    by_id = {r.id: r for r in rows}
    probed, bad = probe_rows(rows, workers, desc="nemo headers")
    rejected += bad
    utts: list[Utterance] = []
    for u in probed:
        said = u.extra.pop(_SAID, None)
        if said is not None and said > u.duration + TOLERANCE:
            rejected.append(reject(by_id[u.id], "segment outside audio",
                                   f"duration {said:.2f} s but the file is {u.duration:.2f} s long"))
            continue
        if said is not None and said < u.duration - TOLERANCE:  # NeMo reads only the first `duration` seconds
            u.offset, u.duration = 0.0, round(said, 4)
        utts.append(u)
    return write_outputs(out_dir, name, language, {"all": utts}, rejected, params)


def export_nemo(utterances: list[Utterance], path: str | Path) -> Path:
    """Write a NeMo manifest (atomically): ``audio_filepath`` (absolute), ``duration``, ``text``, ``offset``
    (segments only), ``speaker`` and ``lang``, one ``json.dumps`` object a line, UTF-8."""
    path = Path(path)
    with atomic_open(path) as f:
        for u in utterances:
            row: dict = {"audio_filepath": str(u.audio_path().resolve()), "duration": u.duration, "text": u.text}
            if u.offset is not None:
                row["offset"] = u.offset
            row["speaker"] = u.speaker
            row["lang"] = u.language
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
