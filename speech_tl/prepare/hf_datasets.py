"""Hugging Face ``datasets`` folders: import (``speech-tl prepare hf-datasets DIR``), read by ``datasets`` itself.

``DIR`` is either what ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` wrote (``state.json`` or
``dataset_dict.json`` beside Arrow files), opened with ``datasets.load_from_disk``, or a folder of Parquet files as
the hub keeps them (``data/train-00000-of-00002.parquet``, ``default/test/0000.parquet``, a dataset card's
``configs``; ``config`` picks one), opened with ``datasets.load_dataset(DIR, streaming=True)``: streamed, so nothing
is copied into the datasets cache. Each split becomes one manifest (a single ``Dataset``: ``all``); only the columns
used are read.

Columns (each can be named; otherwise the first present of):

- audio: an ``Audio`` feature, else a ``{bytes, path}`` struct, else a string path in ``audio``, ``path``, ``file``,
  ``audio_filepath``. An ``Audio`` column is read with ``Audio(decode=False)`` as the stored ``{bytes, path}``:
  datasets 4 and later decode through torchcodec, which speech-tl does not need. Embedded bytes (what
  ``save_to_disk`` and the hub's Parquet files hold) are written once, unchanged (no re-encoding: the samples are
  the stored ones), to ``<out-dir>/<name>_<lang>_audio/<split>/<id>.<ext>``; the extension is the format soundfile
  finds in the bytes (or the stored name's ``.m4a``/``.aac``/``.mp4``, which ffmpeg decodes). File names are
  unique even where the file system ignores case (``<id>-<index>`` where one is taken). The files are written into a
  temporary folder beside that one, those of rows rejected later removed, and the folder swapped in at the end (an
  earlier run's folder is replaced), so it holds exactly the files the manifests name, and a run that fails
  midway leaves nothing behind. A path without bytes
  is used where it is (a relative one against the current folder, as datasets reads it, else against ``DIR``).
  The native sample rate is kept (an ``Audio(sampling_rate=...)`` cast resamples only when datasets decodes;
  speech-tl resamples when it loads).
- text: ``text``, ``sentence``, ``transcription``, ``transcript``, ``normalized_text``, ``raw_text``; without one
  the corpus has no transcripts (speaker corpora), with one every row needs a non-empty text.
- speaker: ``speaker_id``, ``client_id``, ``speaker``, ``spk_id`` (else the utterance id).
- id: ``id``, ``utterance_id``, ``utt_id``, ``segment_id``, ``key``; else the audio file's stem (with ``-<index>``
  where two rows would share one), else ``<split>-<index>``.
- language: ``language``, ``locale``, ``lang`` (else ``--lang``); ``gender`` is kept when there is one.

Rows that cannot be used are rejected with the reason, named ``<split>[<index>]`` (as ``dataset[split][index]``
reaches them): no audio, bytes no decoder reads, a URL instead of a file, a missing file, empty text, a
duplicate id.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

from ..atomic import atomic_open, clean_leftovers, replace_dir, temporary_dir_beside
from ..audio import FFMPEG_SUFFIXES
from ..errors import InputError
from .common import (
    PrepareResult,
    Rejection,
    Row,
    already_done,
    dedupe_ids,
    marker_path,
    probe_rows,
    write_outputs,
)

AUDIO_COLUMNS = ("audio", "path", "file", "audio_filepath")
TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text", "raw_text")
SPEAKER_COLUMNS = ("speaker_id", "client_id", "speaker", "spk_id")
ID_COLUMNS = ("id", "utterance_id", "utt_id", "segment_id", "key")
LANGUAGE_COLUMNS = ("language", "locale", "lang")
SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)


def _open(folder: Path, config: str | None, cache: str) -> dict:
    """``{split: Dataset or IterableDataset}`` of a save_to_disk folder or a Parquet folder, opened by datasets."""
    import datasets

    try:
        if any((folder / m).is_file() for m in SAVED_MARKERS):
            if config is not None:
                raise InputError(f"{folder}: --config {config!r} is for Parquet folders with several configurations; "
                                 "a save_to_disk folder has none")
            ds = datasets.load_from_disk(str(folder))
        elif any(folder.rglob("*.parquet")):
            ds = datasets.load_dataset(str(folder), name=config, streaming=True, cache_dir=cache)
        else:
            raise InputError(f"{folder}: neither a datasets save_to_disk folder ({' or '.join(SAVED_MARKERS)}) nor a "
                             "folder with Parquet files below it; give the folder save_to_disk wrote, or the dataset's "
                             "folder of .parquet files")
    except InputError:
        raise
    except Exception as e:  # datasets raises ValueError, FileNotFoundError, its own errors, pyarrow's
        message = " ".join(str(e).split())[:500]
        raise InputError(f"{folder}: datasets cannot open it ({type(e).__name__}: {message})") from e
    if isinstance(ds, datasets.Dataset | datasets.IterableDataset):
        return {"all": ds}
    return dict(ds)


def _is_audio_struct(feature) -> bool:
    return isinstance(feature, dict) and set(feature) == {"bytes", "path"}


def _pick(features: dict, given: str | None, names: tuple[str, ...], what: str, where: str) -> str | None:
    if given is not None:
        if given not in features:
            raise InputError(f"{where}: no column {given!r} for the {what} (columns: {', '.join(features)})")
        return given
    return next((n for n in names if n in features), None)


def _audio_column(features: dict, given: str | None, where: str) -> str:
    from datasets import Audio, Value

    if given is not None:
        return _pick(features, given, (), "audio", where)
    for name, feature in features.items():
        if isinstance(feature, Audio):
            return name
    for name, feature in features.items():
        if _is_audio_struct(feature):
            return name
    for name in AUDIO_COLUMNS:
        if isinstance(features.get(name), Value) and features[name].dtype in ("string", "large_string"):
            return name
    raise InputError(f"{where}: no audio column (an Audio feature, a {{bytes, path}} struct, or a path in one of "
                     f"{', '.join(AUDIO_COLUMNS)}); columns: {', '.join(features)}; name it with --audio-column")


def _features(ds) -> dict:
    """Column name -> datasets feature (for a Parquet file without datasets' metadata: as its first row looks)."""
    features = ds.features
    if features is None:  # a streamed Parquet file without datasets' metadata: the types of its first row
        first = next(iter(ds), None)
        if first is None:
            return {}
        from datasets import Value

        features = {k: ({"bytes": Value("binary"), "path": Value("string")} if isinstance(v, dict)
                        and set(v) == {"bytes", "path"} else Value("string") if isinstance(v, str) else None)
                    for k, v in first.items()}
    return dict(features)


_SUFFIX = {"WAVEX": "wav", "OGG": "ogg", "MPEG": "mp3"}


def _bytes_suffix(data: bytes, stored: str | None) -> str | tuple[str, str]:
    """The file suffix for embedded audio bytes, or ``(reason, detail)``."""
    import soundfile as sf

    try:
        fmt = sf.info(io.BytesIO(data)).format
        return "." + _SUFFIX.get(fmt, fmt.lower())
    except Exception as e:  # soundfile's errors for bytes it cannot read
        suffix = Path(stored or "").suffix.lower()
        if suffix in FFMPEG_SUFFIXES:
            return suffix  # ffmpeg reads it (or the header probe rejects it with the reason)
        text = re.sub(r"^Error opening <[^>]*>: ", "", " ".join(str(e).split()))[:200]
        return "unreadable audio", f"{len(data)} bytes of embedded audio that soundfile cannot read ({text})"


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:120] or "utt"


def _fold(name: str) -> str:
    """``name`` as a file system that ignores case (and Unicode normalization, as macOS's does) sees it."""
    return unicodedata.normalize("NFC", name).casefold()


def _unique(name: str, index: int, used: set[str]) -> str:
    """``name``, or ``name-<index>`` (then ``-2``, ``-3``, ...) where it is taken; the result is added to ``used``
    (case-folded: ``Utt`` and ``utt`` are one file on a case-insensitive file system)."""
    candidate, k = name, 1
    while _fold(candidate) in used:
        k += 1
        candidate = f"{name}-{index}" if k == 2 else f"{name}-{index}-{k - 1}"
    used.add(_fold(candidate))
    return candidate


class _Reader:
    """Rows of one split as the columns say; embedded audio is written as each row is read (so a split's audio is
    never all in memory), once the row is known to be kept."""

    def __init__(self, folder: Path, split: str, columns: dict[str, str | None], language: str, audio_dir: Path):
        self.folder, self.split, self.columns, self.language = folder, split, columns, language
        self.audio_dir = audio_dir
        self.rows: list[Row] = []
        self.rejected: list[Rejection] = []
        self.first: dict[str, str] = {}  # id from the id column -> the row that has it
        self.made_up: list[Row] = []  # rows whose id was made up: made unique in finish(), never duplicates
        self.names: set[str] = set()

    def _value(self, row: dict, key: str):
        col = self.columns.get(key)
        return row.get(col) if col else None

    def add(self, index: int, row: dict) -> None:
        source = f"{self.split}[{index}]"
        value = self._value(row, "audio")
        data, stored = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
        explicit = self._value(row, "id")
        utt_id = (str(explicit) if explicit not in (None, "") else
                  Path(stored).stem if isinstance(stored, str) and Path(stored).stem else f"{self.split}-{index:06d}")

        def no(reason: str, detail: str) -> None:
            self.rejected.append(Rejection(reason, detail, source, None, utt_id,
                                           stored if isinstance(stored, str) and stored else None))

        if stored is not None and not isinstance(stored, str):
            return no("malformed row", f"audio of type {type(stored).__name__}, expected bytes or a path")
        if not data and not stored:
            return no("no audio", "the row's audio has neither bytes nor a path")
        text = self._value(row, "text")
        if text is not None and not isinstance(text, str):
            return no("malformed row", f"text column {self.columns['text']!r} holds {type(text).__name__}, expected "
                      "a string")
        if self.columns.get("text") is not None and not (text or "").strip():
            return no("empty transcript", "the row has no text")
        if explicit not in (None, ""):
            if utt_id in self.first:
                return no("duplicate id", f"id already used at {self.first[utt_id]}")
            self.first[utt_id] = source
        speaker, lang = self._value(row, "speaker"), self._value(row, "language")
        r = Row(utt_id, Path(), text or "", "" if speaker in (None, "") else str(speaker),
                lang if isinstance(lang, str) and lang.strip() else self.language, source)
        gender = self._value(row, "gender")
        if isinstance(gender, str) and gender:
            r.extra["gender"] = gender
        if data:
            suffix = _bytes_suffix(data, stored)
            if isinstance(suffix, tuple):
                return no(*suffix)
            r.audio = self.audio_dir / f"{_unique(_safe_name(utt_id), index, self.names)}{suffix}"
            with atomic_open(r.audio, "wb") as f:
                f.write(data)
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", stored):
            return no("source not a file", f"the audio is at {stored!r}, not in a file here; download it (or save "
                      "the dataset with its audio embedded) and import that")
        else:
            path = Path(stored)
            if not path.is_absolute() and not path.exists() and (self.folder / path).exists():
                path = self.folder / path
            r.audio = path
        if explicit in (None, ""):
            self.made_up.append(r)
            r.extra["_index"] = index
        self.rows.append(r)

    def finish(self) -> tuple[list[Row], list[Rejection]]:
        """Made-up ids that two rows share get ``-<index>``; speakers default to the id."""
        counts = Counter(r.id for r in self.made_up)
        for r in self.made_up:
            index = r.extra.pop("_index")
            if counts[r.id] > 1 or r.id in self.first:
                r.id = f"{r.id}-{index}"
        for r in self.rows:
            r.speaker = r.speaker or r.id
        rows, bad = dedupe_ids(self.rows)  # a made-up id that still meets another (rare): rejected, not lost
        return rows, self.rejected + bad


def prepare_hf_datasets(folder: str | Path, out_dir: str | Path, language: str = "und", name: str = "hf",
                        workers: int | None = None, force: bool = False, overwrite: bool = False,
                        config: str | None = None, audio_column: str | None = None, text_column: str | None = None,
                        speaker_column: str | None = None, id_column: str | None = None) -> PrepareResult:
    """Import a datasets ``save_to_disk`` folder or Parquet folder as ``<name>_<lang>_<split>.jsonl`` per split
    (+ ``<name>_<lang>_rejected.jsonl``); embedded audio goes to ``<out_dir>/<name>_<lang>_audio/<split>/``."""
    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (give the folder save_to_disk wrote, or a folder of Parquet "
                                "files)")
    given = {"audio": audio_column, "text": text_column, "speaker": speaker_column, "id": id_column}
    params = {"dataset": str(folder.resolve()), "language": language, "config": config,
              **{f"{k}_column": v for k, v in given.items()}}
    audio_dir = out_dir / f"{name}_{language}_audio"
    _clean_leftovers(out_dir, name, language, audio_dir)
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    from datasets import Audio

    staging = temporary_dir_beside(audio_dir)  # embedded audio goes here; swapped in place of audio_dir at the end
    splits: dict[str, list] = {}
    rejected: list[Rejection] = []
    try:
        split_dirs: set[str] = set()
        with tempfile.TemporaryDirectory(prefix="speech-tl-datasets-") as cache:
            for split, ds in _open(folder, config, cache).items():
                where = f"{folder} (split {split!r})"
                features = _features(ds)
                if not features:
                    splits[split] = []
                    continue
                columns = {"audio": _audio_column(features, audio_column, where),
                           "text": _pick(features, text_column, TEXT_COLUMNS, "text", where),
                           "speaker": _pick(features, speaker_column, SPEAKER_COLUMNS, "speaker", where),
                           "id": _pick(features, id_column, ID_COLUMNS, "id", where),
                           "language": _pick(features, None, LANGUAGE_COLUMNS, "language", where),
                           "gender": "gender" if "gender" in features else None}
                used = list(dict.fromkeys(c for c in columns.values() if c))
                if isinstance(features[columns["audio"]], Audio):
                    ds = ds.cast_column(columns["audio"], Audio(decode=False))
                ds = ds.select_columns(used)
                split_dir = staging / _unique(_safe_name(split), len(split_dirs), split_dirs)
                reader = _Reader(folder, split, columns, language, split_dir)
                try:
                    for index, row in enumerate(ds):
                        reader.add(index, row)
                except Exception as e:  # a broken Arrow or Parquet file part way through
                    message = " ".join(str(e).split())[:500]
                    raise InputError(f"{where}: datasets stopped reading it after row {len(reader.rows)} "
                                     f"({type(e).__name__}: {message})") from e
                rows, bad = reader.finish()
                rejected += bad
                utts, bad = probe_rows(rows, workers, desc=f"{split} headers")
                rejected += bad
                splits[split] = utts
        _settle_audio(splits, staging, audio_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the run got through
    result = write_outputs(out_dir, name, language, splits, rejected, params)
    for path in result.files.values():  # a manifest a killed run was writing under a split name not listed before
        clean_leftovers(path)
    return result


def _clean_leftovers(out_dir: Path, name: str, language: str, audio_dir: Path) -> None:
    """Remove what a killed import into ``out_dir`` left beside its outputs: the temporary audio folder and the
    temporary files of the done-marker and of the manifests it lists."""
    marker = marker_path(out_dir, name, language)
    try:
        listed = [Path(v).name for v in json.loads(marker.read_text(encoding="utf-8"))["files"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = []
    for path in [audio_dir, marker, *(out_dir / n for n in listed if n.startswith(f"{name}_{language}_"))]:
        clean_leftovers(path)


def _settle_audio(splits: dict[str, list], staging: Path, audio_dir: Path) -> None:
    """Remove the written files no kept utterance names (rows rejected after their audio was written: a duplicate
    id, a header no decoder reads), point the utterances at ``audio_dir`` and swap ``staging`` in place of it (an
    earlier run's folder goes; without embedded audio there is none)."""
    final = audio_dir.absolute()
    named: set[Path] = set()
    for utts in splits.values():
        for u in utts:
            path = Path(u.audio)
            if path.is_relative_to(staging):
                named.add(path)
                u.audio = str(final / path.relative_to(staging))
            elif path.is_relative_to(final) or path.resolve().is_relative_to(final.resolve()):
                raise InputError(f"{u.audio}: the dataset's row {u.id!r} names a file in {audio_dir}, the folder this "
                                 "import writes its audio to (and replaces); move the files, or give another "
                                 "--out-dir or --name")
    for path in sorted(staging.rglob("*"), reverse=True):  # files first, then the folders they leave empty
        if path.is_file() and path not in named:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if any(staging.iterdir()):
        replace_dir(staging, audio_dir)
    elif audio_dir.is_dir():
        shutil.rmtree(audio_dir)  # an earlier run's embedded audio, which no manifest names any more
