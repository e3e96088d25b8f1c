"""Lhotse manifests: import a ``CutSet`` (or a ``RecordingSet`` with its ``SupervisionSet``) and export one.

Import (``speech-tl prepare lhotse``): every supervision segment becomes one utterance: audio is the recording's
source of type ``"file"`` (relative paths are read against the current folder, as lhotse reads them), ``offset``
the cut's start plus the supervision's start, ``duration`` the supervision's; text, speaker and language come
from the supervision (``--lang`` where it has none). A segment that covers its whole file is written without
``offset``. What speech-tl cannot read the way lhotse would is rejected with its reason, never dropped: sources
that are commands, URLs or bytes in memory, one source per channel, a cut that selects some channels of a
multi-channel file (speech-tl mixes all channels down), transformed recordings (speed perturbation, ...), mixed
and padding cuts, and cuts or recordings without a supervision.

Export (``speech-tl manifest to-lhotse``): one ``Recording.from_file`` per audio file and one cut per utterance
(the utterance's piece of the recording, holding its ``SupervisionSegment``), written by lhotse's own writer.

The files are read and written by the ``lhotse`` library itself; no format is reimplemented here.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path
from ..errors import InputError
from ..manifest import Utterance
from .common import (
    PrepareResult,
    Rejection,
    Row,
    already_done,
    check_text,
    dedupe_ids,
    parallel_map,
    probe_rows,
    write_outputs,
)

WHOLE_FILE_TOLERANCE = 1e-3  # seconds: a segment this close to its recording's length covers the whole file


def _load(path: Path, kind: str):
    """A lhotse manifest read by lhotse, its items listed (a bad file is one clean error)."""
    import lhotse

    cls = {"cuts": lhotse.CutSet, "recordings": lhotse.RecordingSet, "supervisions": lhotse.SupervisionSet}[kind]
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        return list(cls.from_file(path))
    except Exception as e:  # lhotse raises JSON, key and value errors of many kinds for a file it cannot decode
        raise InputError(f"{path}: lhotse cannot read it as a {cls.__name__} ({type(e).__name__}: {e})") from e


def _channels(channel) -> list[int]:
    return sorted(channel) if isinstance(channel, list | tuple) else [channel]


def _check_recording(rec, channels: list[int] | None) -> tuple[str, str] | Path:
    """The audio file of ``rec``, or (reason, detail) when speech-tl cannot read it as lhotse would."""
    if len(rec.sources) != 1:
        kinds = ", ".join(f"{s.type} {s.source!r} (channels {s.channels})" for s in rec.sources)
        return ("several sources", f"recording {rec.id!r} has {len(rec.sources)} sources, one per channel or "
                f"group of channels ({kinds}); speech-tl reads one file per utterance: write the channels into one "
                "file (or one file per channel, as separate recordings)")
    source = rec.sources[0]
    if source.type != "file":
        what = {"command": "runs a command", "url": "is a URL", "memory": "is audio bytes held in the manifest"}
        detail = repr(source.source) if isinstance(source.source, str) else f"{len(source.source)} bytes"
        return ("source not a file", f"recording {rec.id!r}: its source of type {source.type!r} "
                f"{what.get(source.type, 'is not a file')} ({detail[:200]}); write the audio to files once "
                "(e.g. with lhotse's CutSet.save_audios) and import the manifest that points at them")
    if rec.transforms:
        names = [t["name"] if isinstance(t, dict) else type(t).__name__ for t in rec.transforms]
        return ("transformed recording", f"recording {rec.id!r} changes its audio on loading ({', '.join(names)}); "
                "speech-tl would read the file as it is: save the transformed audio and import that")
    everything = sorted(rec.channel_ids)
    if channels is not None and len(everything) > 1 and channels != everything:
        return ("channel selection", f"recording {rec.id!r} has channels {everything} but the segment uses "
                f"{channels}; speech-tl mixes all channels of a file down: write the channel to its own file")
    return Path(source.source)


def _row(sup, rec, cut_start: float, channels: list[int] | None, language: str, source: str,
         line: int | None) -> Row | Rejection:
    checked = _check_recording(rec, channels)
    if isinstance(checked, tuple):
        one = rec.sources[0] if len(rec.sources) == 1 else None
        src = one.source if one is not None and one.type != "memory" and isinstance(one.source, str) else None
        return Rejection(*checked, source=source, line=line, id=sup.id, audio=src)
    offset = cut_start + sup.start
    row = Row(sup.id, checked, sup.text or "", sup.speaker or sup.id, sup.language or language, source, line,
              offset=round(offset, 6), duration=round(sup.duration, 6))
    if sup.gender:
        row.extra["gender"] = sup.gender
    if offset < -WHOLE_FILE_TOLERANCE:
        return Rejection("segment outside audio", f"segment starts at {offset:.3f} s, before its recording",
                         source, line, sup.id, str(checked))
    if abs(offset) <= WHOLE_FILE_TOLERANCE and abs(sup.duration - rec.duration) <= WHOLE_FILE_TOLERANCE:
        row.offset = row.duration = None  # the whole file: its duration comes from the header
    return row


def _rows_from_cuts(path: Path, language: str, numbered: bool) -> tuple[list[Row], list[Rejection]]:
    from lhotse import MonoCut, MultiCut

    rows, rejected = [], []
    for i, cut in enumerate(_load(path, "cuts"), start=1):
        line = i if numbered else None
        if not isinstance(cut, MonoCut | MultiCut) or cut.recording is None:
            what = "a mixture of cuts" if type(cut).__name__ == "MixedCut" else "no recording"
            rejected.append(Rejection("unsupported cut", f"cut {cut.id!r} is a {type(cut).__name__} ({what}); "
                                      "speech-tl imports cuts of one recording", path.name, line, cut.id))
            continue
        if not cut.supervisions:
            rejected.append(Rejection("no supervision", f"cut {cut.id!r} has no supervision segment, so no "
                                      "utterance", path.name, line, cut.id))
            continue
        for sup in cut.supervisions:
            item = _row(sup, cut.recording, cut.start, _channels(cut.channel), language, path.name, line)
            (rejected if isinstance(item, Rejection) else rows).append(item)
    return rows, rejected


def _rows_from_sets(recordings: Path, supervisions: Path, language: str,
                    numbered: bool) -> tuple[list[Row], list[Rejection]]:
    recs, rejected = {}, []
    for i, rec in enumerate(_load(recordings, "recordings"), start=1):
        if rec.id in recs:
            rejected.append(Rejection("duplicate id", f"recording id {rec.id!r} first on line {recs[rec.id][1]}",
                                      recordings.name, i if numbered else None, rec.id))
        else:
            recs[rec.id] = (rec, i)
    rows, used = [], set()
    for i, sup in enumerate(_load(supervisions, "supervisions"), start=1):
        line = i if numbered else None
        if sup.recording_id not in recs:
            rejected.append(Rejection("missing recording", f"recording {sup.recording_id!r} not in "
                                      f"{recordings.name}", supervisions.name, line, sup.id))
            continue
        used.add(sup.recording_id)
        item = _row(sup, recs[sup.recording_id][0], 0.0, _channels(sup.channel), language, supervisions.name, line)
        (rejected if isinstance(item, Rejection) else rows).append(item)
    for rec_id, (_rec, i) in recs.items():
        if rec_id not in used:
            rejected.append(Rejection("no supervision", f"recording {rec_id!r} has no supervision segment, so no "
                                      "utterance", recordings.name, i if numbered else None, rec_id))
    return rows, rejected


def prepare_lhotse(cuts: str | Path | None, out_dir: str | Path, language: str = "und", name: str = "lhotse",
                   workers: int | None = None, force: bool = False, overwrite: bool = False,
                   recordings: str | Path | None = None, supervisions: str | Path | None = None) -> PrepareResult:
    """Import a lhotse ``CutSet`` file (or ``recordings`` + ``supervisions``) as ``<name>_<lang>_all.jsonl``."""
    out_dir = Path(out_dir)
    if (cuts is not None and (recordings or supervisions)) or (cuts is None and not (recordings and supervisions)):
        raise InputError("give a CutSet file, or both --recordings and --supervisions (not both kinds)")
    inputs = {k: Path(v) for k, v in (("cuts", cuts), ("recordings", recordings), ("supervisions", supervisions))
              if v is not None}
    for p in inputs.values():
        if not p.is_file():
            raise FileNotFoundError(2, "No such file or directory", str(p))
    params = {**{k: str(p.resolve()) for k, p in inputs.items()}, "language": language}
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    numbered = all(".jsonl" in p.suffixes for p in inputs.values())  # items are lines: rejections name them
    if "cuts" in inputs:
        rows, rejected = _rows_from_cuts(inputs["cuts"], language, numbered)
    else:
        rows, rejected = _rows_from_sets(inputs["recordings"], inputs["supervisions"], language, numbered)
    rows, bad = dedupe_ids(rows)
    rejected += bad
    if any(r.text.strip() for r in rows):  # a transcribed corpus promises text for every segment
        rows, bad = check_text(rows, require_text=True)
        rejected += bad
    utts, bad = probe_rows(rows, workers, desc="lhotse headers")
    rejected += bad
    return write_outputs(out_dir, name, language, {"all": utts}, rejected, params)


# --------------------------------------------------------------------------- export

def _recording(args: tuple[str, str]):
    """``Recording.from_file`` in a worker process; an unreadable file is (path, message)."""
    from lhotse import Recording

    path, rec_id = args
    try:
        return Recording.from_file(path, recording_id=rec_id)
    except Exception as e:  # soundfile, audioread and ffmpeg fail in their own ways
        return (path, f"{type(e).__name__}: {e}")


def _recording_ids(paths: list[str]) -> dict[str, str]:
    """A readable id per file: its stem, made unique with ``-2``, ``-3``, ... ."""
    ids, taken = {}, set()
    for p in paths:
        stem, k = Path(p).stem, 1
        rec_id = stem
        while rec_id in taken:
            k += 1
            rec_id = f"{stem}-{k}"
        taken.add(rec_id)
        ids[p] = rec_id
    return ids


def export_lhotse(utterances: list[Utterance], out: str | Path, workers: int | None = None) -> int:
    """Write ``utterances`` as a lhotse ``CutSet`` to ``out`` (``.jsonl`` or ``.jsonl.gz``), atomically.

    Returns the number of cuts. A file lhotse cannot read raises :class:`InputError` naming the utterance.
    """
    from lhotse import CutSet, MonoCut, MultiCut, SupervisionSegment

    out = Path(out)
    suffix = ".jsonl.gz" if out.name.endswith(".jsonl.gz") else ".jsonl" if out.name.endswith(".jsonl") else None
    if suffix is None:
        raise InputError(f"{out}: a lhotse CutSet is written as .jsonl or .jsonl.gz; name the output so")
    paths = list(dict.fromkeys(str(u.audio_path().resolve()) for u in utterances))
    ids = _recording_ids(paths)
    recordings = {}
    for p, rec in zip(paths, parallel_map(_recording, [(p, ids[p]) for p in paths], workers, "lhotse recordings"),
                      strict=True):
        if isinstance(rec, tuple):
            u = next(u for u in utterances if str(u.audio_path().resolve()) == p)
            at = f" (manifest line {u.line})" if u.line else ""
            raise InputError(f"utterance {u.id!r}{at}: lhotse cannot read {p}: {rec[1]}")
        recordings[p] = rec
    cuts = []
    for u in utterances:
        rec = recordings[str(u.audio_path().resolve())]
        channels = sorted(rec.channel_ids)
        channel = channels[0] if len(channels) == 1 else channels  # speech-tl reads all channels, mixed down
        extra = {"gender": u.extra["gender"]} if isinstance(u.extra.get("gender"), str) else {}
        sup = SupervisionSegment(id=u.id, recording_id=rec.id, start=0.0, duration=u.duration, channel=channel,
                                 text=u.text or None, speaker=u.speaker or None, language=u.language or None, **extra)
        cut_cls = MonoCut if len(channels) == 1 else MultiCut
        cuts.append(cut_cls(id=u.id, start=u.offset or 0.0, duration=u.duration, channel=channel, recording=rec,
                            supervisions=[sup]))
    cutset = CutSet.from_cuts(cuts)
    with atomic_path(out, suffix=f".tmp{suffix}") as tmp:
        cutset.to_file(tmp)  # lhotse's writer picks JSONL (gzipped for .gz) from the name
    return len(cuts)
