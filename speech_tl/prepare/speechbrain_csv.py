"""SpeechBrain CSV data manifests (the files its recipes' ``*_prepare.py`` write), read with :mod:`csv`.

A header row names the columns; each further row is one utterance::

    ID,duration,wav,spk_id,wrd
    1272-128104-0000,5.855,$data_root/LibriSpeech/dev-clean/1272/128104/1272-128104-0000.flac,1272,MISTER QUILTER

Read the way SpeechBrain's ``load_data_csv`` reads them: comma-separated, blanks after a comma skipped,
``$name`` placeholders replaced by the recipe's values (here ``--data-root`` replaces ``$data_root``,
``$data_folder`` and ``$root``); a relative path, after that, resolves against the CSV's folder.

Columns: ``ID`` (required, unique), ``wav`` (or ``wav_path``, ``path``), transcript ``wrd`` (or ``words``,
``transcript``, ``text``), speaker ``spk_id`` (or ``speaker``, ``spk``; else the ID), language ``lang`` (or
``language``, ``locale``; else ``--lang``). Optional ``start``/``stop`` cut a segment out of the file: in
samples, as SpeechBrain's ``read_audio`` takes them (e.g. its VoxCeleb CSVs), or in seconds with
``segment_unit="seconds"``. The ``duration`` column is not used: durations come from the audio headers
(SpeechBrain's VoxCeleb CSVs give the whole file's duration on segment rows).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..audio import AudioError, audio_info
from ..errors import InputError
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

AUDIO_COLUMNS = ("wav", "wav_path", "path")
TEXT_COLUMNS = ("wrd", "words", "transcript", "text")
SPEAKER_COLUMNS = ("spk_id", "speaker", "spk")
LANGUAGE_COLUMNS = ("lang", "language", "locale")
ROOT_NAMES = ("data_root", "data_folder", "root")
PLACEHOLDER = re.compile(r"\$([\w.]+)")  # as SpeechBrain's load_data_csv finds them


def _sample_rate(path: str) -> int | None:
    try:
        return audio_info(path).sample_rate
    except AudioError:
        return None  # probe_rows reports it


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in header), None)


def _substitute(value: str, data_root: Path | None) -> str | tuple[str, str]:
    """``value`` with ``$data_root`` (and the like) replaced, or ``(reason, detail)``."""
    unknown = [m for m in PLACEHOLDER.findall(value) if m not in ROOT_NAMES]
    if unknown:
        return "unresolved placeholder", (f"${unknown[0]} in {value!r}: only ${', $'.join(ROOT_NAMES)} are replaced "
                                          "(by --data-root); edit the CSV")
    if PLACEHOLDER.search(value) and data_root is None:
        return "unresolved placeholder", f"{value!r} needs --data-root DIR (the folder ${ROOT_NAMES[0]} stands for)"
    return PLACEHOLDER.sub(lambda m: str(data_root), value)


def read_speechbrain_csv(path: Path, language: str, data_root: Path | None = None, segment_unit: str = "samples"
                         ) -> tuple[list[Row], list[Rejection], bool, dict[int, tuple[float, float]]]:
    """Rows, rejected rows, whether the CSV has a transcript column, and ``{line: (start, stop)}`` of segment
    rows (in ``segment_unit``; their ``offset``/``duration`` are set once sample rates are known)."""
    root, source = path.resolve().parent, path.name
    rows: list[Row] = []
    rejected: list[Rejection] = []
    segments: dict[int, tuple[float, float]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty file; a SpeechBrain CSV starts with a header row (ID,duration,wav,...)")
        header = [h.strip() for h in header]
        audio_col = _column(header, AUDIO_COLUMNS)
        if "ID" not in header or audio_col is None:
            raise InputError(f"{path}:1: header {','.join(header)!r} lacks 'ID' or an audio column "
                             f"({', '.join(AUDIO_COLUMNS)}); is this a SpeechBrain CSV?")
        text_col, spk_col = _column(header, TEXT_COLUMNS), _column(header, SPEAKER_COLUMNS)
        lang_col = _column(header, LANGUAGE_COLUMNS)
        timed = "start" in header and "stop" in header
        line = reader.line_num + 1  # where the next record starts (a quoted field may span lines)
        for fields in reader:
            lineno, line = line, reader.line_num + 1
            if not any(x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                rejected.append(Rejection("malformed row", f"{len(fields)} fields, the header has {len(header)}",
                                          source, lineno, fields[0] if fields else None))
                continue
            rec = dict(zip(header, fields, strict=True))
            utt_id = rec["ID"].strip()
            if not utt_id:
                rejected.append(Rejection("malformed row", "empty ID", source, lineno))
                continue
            audio = _substitute(rec[audio_col].strip(), data_root)
            if isinstance(audio, tuple) or not audio:
                reason, detail = audio if isinstance(audio, tuple) else ("malformed row", f"empty '{audio_col}'")
                rejected.append(Rejection(reason, detail, source, lineno, utt_id, rec[audio_col] or None))
                continue
            audio_path = Path(audio) if Path(audio).is_absolute() else root / audio
            row = Row(utt_id, audio_path, rec[text_col].strip() if text_col else "",
                      rec[spk_col].strip() if spk_col and rec[spk_col].strip() else utt_id,
                      rec[lang_col].strip() if lang_col and rec[lang_col].strip() else language, source, lineno)
            if timed and (rec["start"].strip() or rec["stop"].strip()):
                try:
                    start, stop = float(rec["start"]), float(rec["stop"])
                except ValueError:
                    rejected.append(Rejection("malformed row", f"start {rec['start']!r} / stop {rec['stop']!r} are "
                                              f"not numbers ({segment_unit})", source, lineno, utt_id, audio))
                    continue
                if start < 0 or stop <= start:
                    rejected.append(Rejection("empty segment", f"start {start:g} .. stop {stop:g} {segment_unit}",
                                              source, lineno, utt_id, audio))
                    continue
                segments[lineno] = (start, stop)
            rows.append(row)
    return rows, rejected, text_col is not None, segments


def prepare_speechbrain_csv(csv_file: str | Path, out_dir: str | Path, language: str = "und",
                            name: str = "speechbrain", data_root: str | Path | None = None,
                            segment_unit: str = "samples", workers: int | None = None, force: bool = False,
                            overwrite: bool = False) -> PrepareResult:
    """Import a SpeechBrain CSV as ``<name>_<lang>_all.jsonl`` (+ ``<name>_<lang>_rejected.jsonl``).

    When the CSV has a transcript column, rows with an empty transcript are rejected.
    """
    if segment_unit not in ("samples", "seconds"):
        raise InputError(f"segment unit {segment_unit!r}: expected samples or seconds")
    csv_file, out_dir = Path(csv_file), Path(out_dir)
    if not csv_file.is_file():
        raise FileNotFoundError(f"{csv_file}: SpeechBrain CSV not found (a header row ID,duration,wav,...)")
    root_dir = Path(data_root).resolve() if data_root is not None else None
    if root_dir is not None and not root_dir.is_dir():
        raise FileNotFoundError(f"{data_root}: --data-root is not a folder")
    params = {"csv": str(csv_file.resolve()), "language": language, "data_root": str(root_dir) if root_dir else None,
              "segment_unit": segment_unit}
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    rows, rejected, has_text, segments = read_speechbrain_csv(csv_file, language, root_dir, segment_unit)
    rows, bad = dedupe_ids(rows)
    rejected += bad
    rows, bad = check_text(rows, require_text=has_text)
    rejected += bad
    timed = [r for r in rows if r.line in segments]
    rates: dict[str, int | None] = {}
    if segment_unit == "samples":
        paths = sorted({str(r.audio) for r in timed})
        rates = dict(zip(paths, parallel_map(_sample_rate, paths, workers, "sample rates"), strict=True))
    for r in timed:
        start, stop = segments[r.line]
        scale = 1.0 if segment_unit == "seconds" else rates[str(r.audio)]
        if scale:  # an unreadable file keeps no segment: probe_rows rejects it
            r.offset, r.duration = start / scale, (stop - start) / scale
    utts, bad = probe_rows(rows, workers, desc="speechbrain headers")
    rejected += bad
    return write_outputs(out_dir, name, language, {"all": utts}, rejected, params)
