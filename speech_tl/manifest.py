"""Audio manifests: one utterance per line of a JSON Lines file.

A manifest line holds metadata only, never samples::

    {"id": "cv-123", "audio": "clips/x.mp3", "duration": 3.2, "text": "Hallo Welt.",
     "speaker": "a1b2", "language": "de"}

plus the optional fields ``offset`` (seconds into the file where the utterance starts)
and ``sample_rate`` (of the file on disk). Relative ``audio`` paths resolve against the
folder that holds the manifest, so a corpus and its manifests can move together.

Every reading error names the file and the line, says what was expected and what to do.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_text
from .errors import InputError, SpeechTlError

REQUIRED_FIELDS = ("id", "audio", "duration", "text", "speaker", "language")
OPTIONAL_FIELDS = ("offset", "sample_rate")


class ManifestError(SpeechTlError, ValueError):
    """A manifest line (or file) that cannot be used; the message names file and line."""


@dataclass
class Utterance:
    """One utterance of a manifest.

    ``audio`` is kept exactly as written in the file; :meth:`audio_path` resolves it.
    ``extra`` holds fields beyond the standard ones (``domain``, ``gender``, ...), which
    are written back unchanged.
    """

    id: str
    audio: str
    duration: float
    text: str
    speaker: str
    language: str
    offset: float | None = None
    sample_rate: int | None = None
    extra: dict = field(default_factory=dict)
    root: Path | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)  # line in the manifest it came from

    def audio_path(self) -> Path:
        """Absolute path of the audio file (relative paths resolve against ``root``)."""
        path = Path(self.audio)
        if path.is_absolute() or self.root is None:
            return path
        return self.root / path

    def to_dict(self) -> dict:
        """The JSON object written for this utterance (no ``root``, optional fields only when set)."""
        out = {k: getattr(self, k) for k in REQUIRED_FIELDS}
        for k in OPTIONAL_FIELDS:
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(self.extra)
        return out


def clean_source(u: Utterance) -> dict:
    """Where the clean version of ``u`` is, as ``{"audio", "offset", "duration"}``: its ``source_audio`` (a line of a
    telephone twin, or a pack of such lines; ``source_offset`` / ``source_duration`` for a segment) or, for a line
    that went through no simulated channel, its own audio."""
    if u.extra.get("source_audio"):
        source = Path(str(u.extra["source_audio"]))
        if not source.is_absolute() and u.root is not None:  # relative: to the manifest's folder, as ``audio``
            source = u.root / source
        return {"audio": str(source), "offset": float(u.extra.get("source_offset") or 0.0),
                "duration": u.extra.get("source_duration")}
    return {"audio": str(u.audio_path()), "offset": u.offset or 0.0,
            "duration": u.duration if u.offset is not None else None}


def _fail(path: Path | str, line: int | None, message: str) -> ManifestError:
    where = f"{path}:{line}" if line is not None else str(path)
    return ManifestError(f"{where}: {message}")


def utterance_from_dict(obj: object, path: Path | str = "<memory>", line: int | None = None,
                        root: Path | None = None) -> Utterance:
    """Validate one decoded JSON object and build an :class:`Utterance`.

    Raises :class:`ManifestError` naming ``path:line`` and the offending field.
    """
    if not isinstance(obj, dict):
        raise _fail(path, line, f"expected a JSON object per line, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise _fail(path, line, f"missing field(s) {', '.join(missing)}; every line needs "
                    f"{', '.join(REQUIRED_FIELDS)}")
    for key in ("id", "audio", "text", "speaker", "language"):
        if not isinstance(obj[key], str):
            raise _fail(path, line, f"field '{key}' must be a string, got {obj[key]!r}")
    if not obj["id"]:
        raise _fail(path, line, "field 'id' is empty; give every utterance a unique id")
    if not obj["audio"]:
        raise _fail(path, line, "field 'audio' is empty; it must name an audio file")
    duration = obj["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
            or duration <= 0:
        raise _fail(path, line, f"field 'duration' must be a positive number of seconds, got {duration!r}")
    offset = obj.get("offset")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, (int, float))
                               or not math.isfinite(offset) or offset < 0):
        raise _fail(path, line, f"field 'offset' must be a number of seconds >= 0, got {offset!r}")
    sample_rate = obj.get("sample_rate")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int)
                                    or sample_rate <= 0):
        raise _fail(path, line, f"field 'sample_rate' must be a positive integer (Hz), got {sample_rate!r}")
    extra = {k: v for k, v in obj.items() if k not in REQUIRED_FIELDS and k not in OPTIONAL_FIELDS}
    return Utterance(id=obj["id"], audio=obj["audio"], duration=float(duration), text=obj["text"],
                     speaker=obj["speaker"], language=obj["language"],
                     offset=None if offset is None else float(offset), sample_rate=sample_rate,
                     extra=extra, root=root, line=line)


def iter_manifest(path: str | os.PathLike) -> Iterator[Utterance]:
    """Yield the utterances of a manifest, validating each line as it is read.

    Blank lines are allowed. Duplicate ids raise, naming both lines.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; run `speech-tl prepare ...` to write one")
    root = path.resolve().parent
    seen: dict[str, int] = {}
    with open(path, "rb") as f:  # decoded line by line, so a bad byte is reported with its line
        for lineno, data in enumerate(f, start=1):
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _fail(path, lineno, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start + 1}); "
                            "save the manifest as UTF-8") from None
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise _fail(path, lineno, f"not valid JSON ({e.msg} at column {e.colno}); "
                            "each line must be one JSON object") from None
            utt = utterance_from_dict(obj, path, lineno, root)
            if utt.id in seen:
                raise _fail(path, lineno, f"duplicate id {utt.id!r} (first on line {seen[utt.id]}); "
                            "ids must be unique within a manifest")
            seen[utt.id] = lineno
            yield utt


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read and validate a whole manifest (see :func:`iter_manifest`)."""
    return list(iter_manifest(path))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Atomically write dictionaries as JSON Lines (UTF-8, non-ASCII kept verbatim); returns the row count."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
    atomic_write_text(path, "".join(lines))
    return len(lines)


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance], relative: bool = True) -> int:
    """Write utterances to ``path`` atomically; returns the number written.

    With ``relative=True``, audio paths under the manifest's folder are written relative
    to it (so the folder can move); others stay absolute.
    """
    path = Path(path)
    out_root = path.resolve().parent
    rows = []
    for utt in utterances:
        row = utt.to_dict()
        audio = utt.audio_path()
        if audio.is_absolute() or utt.root is not None:
            audio = audio.resolve() if not audio.is_absolute() else audio
            if relative:
                try:
                    row["audio"] = audio.relative_to(out_root).as_posix()
                except ValueError:
                    row["audio"] = str(audio)
            else:
                row["audio"] = str(audio)
        rows.append(row)
    return write_jsonl(path, rows)


# --------------------------------------------------------------------------- checks and filters

def check_audio_files(utterances: Iterable[Utterance]) -> list[tuple[Utterance, str]]:
    """Return ``(utterance, problem)`` for every utterance whose audio file does not exist."""
    return [(u, f"audio file not found: {u.audio_path()}") for u in utterances if not u.audio_path().is_file()]


def filter_duration(utterances: Iterable[Utterance], min_s: float = 0.0, max_s: float = math.inf
                    ) -> tuple[list[Utterance], list[tuple[Utterance, str]]]:
    """Split into kept and rejected-with-reason by duration bounds (inclusive)."""
    kept, rejected = [], []
    for u in utterances:
        if u.duration < min_s:
            rejected.append((u, f"shorter than {min_s:g} s ({u.duration:.2f} s)"))
        elif u.duration > max_s:
            rejected.append((u, f"longer than {max_s:g} s ({u.duration:.2f} s)"))
        else:
            kept.append(u)
    return kept, rejected


def filter_vocabulary(utterances: Iterable[Utterance], vocabulary: Iterable[str],
                      normalize=None) -> tuple[list[Utterance], list[tuple[Utterance, str]]]:
    """Reject utterances whose (optionally normalised) text has characters outside ``vocabulary``.

    The reason lists the offending characters, so a user can widen the vocabulary or fix the text.
    """
    allowed = set(vocabulary)
    kept, rejected = [], []
    for u in utterances:
        text = normalize(u.text) if normalize else u.text
        bad = sorted(set(text) - allowed)
        if bad:
            rejected.append((u, "characters outside the vocabulary: " + " ".join(repr(c) for c in bad)))
        else:
            kept.append(u)
    return kept, rejected


def cap_per_speaker(utterances: list[Utterance], n: int, seed: int = 0
                    ) -> tuple[list[Utterance], list[tuple[Utterance, str]]]:
    """Keep a seeded random ``n`` utterances of each speaker (in their original order); the rest with a reason."""
    if n < 1:
        raise InputError(f"max per speaker (--max-per-speaker) must be >= 1, got {n}")
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        by_speaker.setdefault(u.speaker, []).append(i)
    keep = set()
    for spk in sorted(by_speaker):
        idx = by_speaker[spk]
        keep.update(idx if len(idx) <= n else rng.sample(idx, n))
    kept = [u for i, u in enumerate(utterances) if i in keep]
    rejected = [(u, f"more than {n} utterances of speaker {u.speaker!r}") for i, u in enumerate(utterances)
                if i not in keep]
    return kept, rejected


# --------------------------------------------------------------------------- splits

def split_manifest(utterances: list[Utterance], fractions: dict[str, float], by: str = "speaker",
                   seed: int = 0) -> tuple[dict[str, list[Utterance]], list[tuple[Utterance, str]]]:
    """Seeded split into named parts, disjoint by ``speaker``, ``text`` or ``speaker+text``.

    ``fractions`` maps part names to shares of the groups (they are normalised to sum to 1).
    With ``by="speaker+text"`` every speaker and every (exact) text belongs to one part only;
    utterances whose speaker and text were assigned to different parts cannot be placed
    without leaking and are returned as rejected, with the reason, never dropped silently.

    Returns ``(parts, rejected)``.
    """
    if by not in ("speaker", "text", "speaker+text"):
        raise InputError(f"split by (--by) must be 'speaker', 'text' or 'speaker+text', got {by!r}")
    if not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise InputError(f"split fractions (--fractions) must be non-negative with a positive sum, e.g. "
                         f"train=0.8,dev=0.1,test=0.1; got {fractions}")
    names = list(fractions)
    total = sum(fractions.values())
    rng = random.Random(seed)

    def assign(keys: list[str]) -> dict[str, str]:
        keys = sorted(set(keys))
        rng.shuffle(keys)
        out, start, acc = {}, 0, 0.0
        for i, name in enumerate(names):
            acc += fractions[name] / total
            end = len(keys) if i == len(names) - 1 else round(acc * len(keys))
            for k in keys[start:end]:
                out[k] = name
            start = end
        return out

    parts: dict[str, list[Utterance]] = {n: [] for n in names}
    rejected: list[tuple[Utterance, str]] = []
    spk = assign([u.speaker for u in utterances]) if "speaker" in by else None
    txt = assign([u.text for u in utterances]) if "text" in by else None
    for u in utterances:
        a = spk[u.speaker] if spk else None
        b = txt[u.text] if txt else None
        if a is not None and b is not None and a != b:
            rejected.append((u, f"speaker assigned to '{a}' but text to '{b}' (split by speaker+text)"))
            continue
        parts[a or b].append(u)
    return parts, rejected


# --------------------------------------------------------------------------- statistics

def manifest_stats(utterances: list[Utterance]) -> dict:
    """Summary numbers of a manifest: hours, utterances, speakers, per-speaker counts, characters."""
    per_speaker = Counter(u.speaker for u in utterances)
    dur_speaker: Counter = Counter()
    chars: Counter = Counter()
    for u in utterances:
        dur_speaker[u.speaker] += u.duration
        chars.update(u.text)
    durations = sorted(u.duration for u in utterances)
    total = sum(durations)
    return {
        "utterances": len(utterances),
        "hours": total / 3600.0,
        "speakers": len(per_speaker),
        "languages": dict(Counter(u.language for u in utterances)),
        "duration_min": durations[0] if durations else 0.0,
        "duration_median": (durations[(len(durations) - 1) // 2] + durations[len(durations) // 2]) / 2
        if durations else 0.0,
        "duration_max": durations[-1] if durations else 0.0,
        "per_speaker": {s: {"utterances": n, "seconds": round(dur_speaker[s], 2)}
                        for s, n in sorted(per_speaker.items(), key=lambda kv: (-kv[1], kv[0]))},
        "characters": dict(sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def format_stats(name: str, stats: dict, max_speakers: int = 20) -> str:
    """Human-readable rendering of :func:`manifest_stats`."""
    lines = [
        f"{name}",
        f"  utterances  {stats['utterances']}",
        f"  hours       {stats['hours']:.3f}",
        f"  speakers    {stats['speakers']}",
        f"  languages   {', '.join(f'{k} ({v})' for k, v in stats['languages'].items()) or '-'}",
        f"  duration    min {stats['duration_min']:.2f} s, median {stats['duration_median']:.2f} s, "
        f"max {stats['duration_max']:.2f} s",
        "  per speaker (utterances, seconds):",
    ]
    items = list(stats["per_speaker"].items())
    for spk, v in items[:max_speakers]:
        lines.append(f"    {spk:<24} {v['utterances']:>6} {v['seconds']:>10.1f}")
    if len(items) > max_speakers:
        lines.append(f"    ... and {len(items) - max_speakers} more speakers")
    inventory = "".join(c if c != " " else "␣" for c in stats["characters"])
    lines.append(f"  characters ({len(stats['characters'])}): {inventory}")
    return "\n".join(lines)


__all__ = [
    "ManifestError", "Utterance", "utterance_from_dict", "iter_manifest", "read_manifest", "write_manifest",
    "write_jsonl", "atomic_write_text", "check_audio_files", "filter_duration", "filter_vocabulary", "cap_per_speaker",
    "split_manifest", "manifest_stats", "format_stats",
]
