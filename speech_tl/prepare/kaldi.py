"""Kaldi data directories: import (``wav.scp``, ``text``, ``utt2spk``, ``segments``) and export.

``wav.scp`` lines are ``<recording-id> <path>``. Piped entries (``<id> sox ... |``) and entries
inside an archive (``<id> /path/data.ark:1234``) are read once through ``kaldiio`` (the maintained
reader of Kaldi's formats, which runs the command or seeks into the archive) and written as WAV
files into ``<out-dir>/<name>_<lang>_audio/``, which the manifest points at; an entry whose command
fails or whose archive cannot be read is rejected with the reason. With ``segments``
(``<utt> <recording> <start> <end>``) utterances become ``offset``/``duration`` pieces of their
recordings.

Export (``manifest to-kaldi``): Kaldi reads only RIFF WAV with integer samples from a ``wav.scp`` path, and its
feature extraction wants one sample rate in a data dir (16 kHz, as converted and piped audio has), so every other
file (MP3, FLAC, OGG, m4a, float, multi-channel or 8/22.05/44.1/48 kHz WAV) is, by ``audio``:

- ``convert`` (the default): decoded once as speech-tl reads it (mono, resampled to 16 kHz) and written as
  16-bit WAV into ``<data dir>/wav/``, which ``wav.scp`` names: robust, and needs nothing but Kaldi later. The WAVs
  are written into a temporary folder beside it, swapped in just before the tables are written (the WAVs of an
  earlier export go), and removed if a file cannot be converted, so ``wav/`` always matches ``wav.scp``;
- ``pipe``: a decoding command ``ffmpeg -nostdin -v error -i file:<path> -f wav -acodec pcm_s16le -ac 1 -ar 16000 - |``
  (the path shell-quoted): no copies, but ffmpeg must be installed wherever Kaldi reads the dir;
- ``path``: the path as it is (for readers that decode anything, e.g. lhotse's; the sample rates are the files').

Mono integer-PCM WAVs at 16 kHz are named as they are in every mode.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections import defaultdict
from pathlib import Path

from ..atomic import atomic_write_text, replace_dir, temporary_dir_beside
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


def read_table(path: Path, min_fields: int = 2) -> tuple[dict[str, tuple[str, int]], list[Rejection]]:
    """``{key: (rest of line, line number)}`` from a Kaldi table; malformed and duplicate keys are rejected."""
    table, rejected = {}, []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            key, *rest_ = line.split(None, 1)  # Kaldi separates the key by any whitespace (space or tab)
            rest = rest_[0].strip() if rest_ else ""
            if len(line.split()) < min_fields:
                rejected.append(Rejection("malformed row", f"expected at least {min_fields} fields", path.name,
                                          lineno, key))
            elif key in table:
                rejected.append(Rejection("duplicate id", f"first on line {table[key][1]}", path.name, lineno, key))
            else:
                table[key] = (rest, lineno)
    return table, rejected


_ARCHIVE = re.compile(r"^(.+):(\d+)$")  # <archive>:<byte offset>, as wav.scp points into a .ark file


def _materialize(rec: str, value: str, lineno: int, data_dir: Path, folder: Path) -> Path | Rejection:
    """Read a piped or archived wav.scp entry once through kaldiio and write it as ``folder/<rec>.wav``."""
    import kaldiio
    import numpy as np

    from ..audio import write_audio

    kind = "command" if value.endswith("|") else "archive entry"
    try:
        if kind == "archive entry":
            archive, offset = _ARCHIVE.match(value).groups()
            value = f"{archive if Path(archive).is_absolute() else data_dir / archive}:{offset}"
        rate, samples = kaldiio.load_mat(value)
        samples = np.asarray(samples)
        if samples.size == 0:
            raise ValueError("no samples")
        if samples.dtype == np.int16:  # Kaldi's WAV: 16-bit integers; keep them as they are
            wave, subtype = samples.astype(np.float32) / 32768.0, "PCM_16"
        else:
            wave, subtype = samples.astype(np.float32), "FLOAT"
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        out = folder / f"{rec}.wav"
        write_audio(out, wave, int(rate), subtype=subtype)
        return out
    except Exception as e:  # a failing command or a broken archive: the entry is rejected, the rest go on
        text = " ".join(str(e).split())[:300] or type(e).__name__
        return Rejection(f"wav.scp {kind} failed", f"kaldiio could not read {value!r}: {text}", "wav.scp", lineno,
                         rec)


def prepare_kaldi(data_dir: str | Path, out_dir: str | Path, language: str = "und", name: str = "kaldi",
                  workers: int | None = None, force: bool = False, overwrite: bool = False) -> PrepareResult:
    """Import a Kaldi data dir as ``<name>_<lang>_all.jsonl`` (+ rejected)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not (data_dir / "wav.scp").is_file():
        raise FileNotFoundError(f"{data_dir}: no wav.scp; is this a Kaldi data directory?")
    params = {"data_dir": str(data_dir.resolve()), "language": language}
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    wavs, rejected = read_table(data_dir / "wav.scp")
    texts, bad = read_table(data_dir / "text", 1) if (data_dir / "text").is_file() else ({}, [])
    rejected += bad
    spks, bad = read_table(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else ({}, [])
    rejected += bad
    segments, bad = read_table(data_dir / "segments", 4) if (data_dir / "segments").is_file() else ({}, [])
    rejected += bad

    materialized: dict[str, Path | Rejection] = {}

    def resolve(rec: str, value: str, lineno: int) -> Path | Rejection:
        path = Path(value)
        path = path if path.is_absolute() else (data_dir / path)
        if value.endswith("|") or (not path.exists() and _ARCHIVE.match(value)):
            if rec not in materialized:
                materialized[rec] = _materialize(rec, value, lineno, data_dir, out_dir / f"{name}_{language}_audio")
            return materialized[rec]
        return path

    rows: list[Row] = []
    if segments:
        for utt, (rest, lineno) in segments.items():
            rec, start, end = rest.split()[:3]
            if rec not in wavs:
                rejected.append(Rejection("missing recording", f"recording {rec!r} not in wav.scp", "segments",
                                          lineno, utt))
                continue
            audio = resolve(rec, *wavs[rec])
            if isinstance(audio, Rejection):
                audio.id, audio.source, audio.line = utt, "segments", lineno
                rejected.append(audio)
                continue
            try:
                t0, t1 = float(start), float(end)
            except ValueError:
                rejected.append(Rejection("malformed row", "start/end are not numbers", "segments", lineno, utt))
                continue
            if t1 <= t0:
                rejected.append(Rejection("empty segment", f"end {t1} <= start {t0}", "segments", lineno, utt))
                continue
            rows.append(Row(utt, audio, "", "", language, "segments", lineno, offset=t0, duration=t1 - t0))
    else:
        for utt, (value, lineno) in wavs.items():
            audio = resolve(utt, value, lineno)
            if isinstance(audio, Rejection):
                rejected.append(audio)
                continue
            rows.append(Row(utt, audio, "", "", language, "wav.scp", lineno))
    for r in rows:
        r.text = texts[r.id][0] if r.id in texts else ""
        r.speaker = spks[r.id][0] if r.id in spks else r.id
    rows, bad = dedupe_ids(rows)
    rejected += bad
    if texts:  # a data dir with a text file promises transcripts for every utterance
        missing = [r for r in rows if r.id not in texts]
        for r in missing:
            rejected.append(Rejection("no transcript", "utterance not in 'text'", r.source, r.line, r.id, str(r.audio)))
        rows = [r for r in rows if r.id in texts]
        rows, bad = check_text(rows, require_text=True)
        rejected += bad
    utts, bad = probe_rows(rows, workers, desc="kaldi headers")
    rejected += bad
    return write_outputs(out_dir, name, language, {"all": utts}, rejected, params)


KALDI_AUDIO_MODES = ("convert", "pipe", "path")
KALDI_SAMPLE_RATE = 16000  # of converted and piped audio
PIPE = "ffmpeg -nostdin -v error -i {src} -f wav -acodec pcm_s16le -ac 1 -ar 16000 - |"


def kaldi_reads(path: str | Path) -> bool:
    """Whether Kaldi reads ``path`` itself and speech-tl reads it the same, at the data dir's one rate: a mono RIFF
    WAV of 8-, 16- or 32-bit integer samples at 16 kHz (Kaldi's wave reader takes no float or 24-bit data, and
    needs ``--channel`` for more than one channel, where speech-tl mixes them down; its feature extraction takes
    one sample rate, that of the converted and piped audio)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # missing, unreadable or not a format soundfile knows: not something Kaldi reads either
        return False
    return (info.format in ("WAV", "WAVEX") and info.subtype in ("PCM_U8", "PCM_16", "PCM_32") and info.channels == 1
            and info.samplerate == KALDI_SAMPLE_RATE)


def _convert(job: tuple[str, str]) -> str | None:
    """Decode ``src`` as speech-tl reads it (mono, 16 kHz) and write it to ``dst`` as 16-bit WAV; an error
    message instead when it cannot be read (in a worker process)."""
    import numpy as np

    from ..audio import AudioError, load_audio, write_audio

    src, dst = job
    try:
        wave = load_audio(src, KALDI_SAMPLE_RATE).numpy()
    except AudioError as e:
        return str(e)
    write_audio(dst, np.clip(wave, -1.0, 1.0), KALDI_SAMPLE_RATE, subtype="PCM_16")
    return None


def _converted_names(paths: list[str], folder: Path) -> dict[str, Path]:
    """``folder/<stem>.wav`` per source file (characters a shell or Kaldi would trip on replaced), unique."""
    out, taken = {}, set()
    for p in paths:
        stem = re.sub(r"[^\w.+-]+", "_", Path(p).stem).lstrip("-.") or "audio"
        name, k = stem, 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}"
        taken.add(name)
        out[p] = folder / f"{name}.wav"
    return out


def _check_scp_path(path: str, u: Utterance, at: str) -> None:
    if any(c.isspace() for c in path) or path.endswith("|") or path.startswith("-"):
        raise InputError(f"utterance {u.id!r}{at}: audio path {path!r} has whitespace, ends in '|' or starts "
                         "with '-': Kaldi would read it as a command or split it; move or link the file to a "
                         "plain path")


def export_kaldi(utterances: list[Utterance], data_dir: str | Path, audio: str = "convert",
                 workers: int | None = None) -> Path:
    """Write a Kaldi data dir: ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` (+ ``segments``).

    ``text`` is left out when no utterance has a transcript (speaker corpora). ``audio`` says what ``wav.scp``
    names for files Kaldi cannot read itself (see :func:`kaldi_reads`): ``convert`` (16 kHz mono 16-bit WAVs
    written to ``data_dir/wav/``, which is replaced as a whole: no audio of the manifest may lie in it),
    ``pipe`` (an ffmpeg command decoding to the same) or ``path`` (the file).

    Kaldi wants utterance ids that sort with their speaker: ids that do not start with
    ``<speaker>-`` are written as ``<speaker>-<id>``. All tables are sorted (C locale).
    """
    if audio not in KALDI_AUDIO_MODES:
        raise InputError(f"audio {audio!r}: expected one of {', '.join(KALDI_AUDIO_MODES)}")
    data_dir = Path(data_dir)
    use_segments = any(u.offset is not None for u in utterances)
    sources = list(dict.fromkeys(str(u.audio_path().resolve()) for u in utterances))
    foreign = [] if audio == "path" else [p for p, ok in zip(sources, parallel_map(
        kaldi_reads, sources, workers, "wav headers"), strict=True) if not ok]
    scp_value = {p: p for p in sources}
    wav_dir = data_dir / "wav"
    converted = _converted_names(foreign, wav_dir) if audio == "convert" else {}
    for p in foreign:
        scp_value[p] = str(converted[p].resolve()) if audio == "convert" else PIPE.format(src=shlex.quote(f"file:{p}"))
    recs: dict[str, str] = {}
    wav, text, utt2spk, segs = [], [], [], []
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for u in utterances:
        at = f" (manifest line {u.line})" if u.line else ""
        if any(c.isspace() for c in u.speaker) or not u.speaker:
            raise InputError(f"utterance {u.id!r}{at}: speaker {u.speaker!r} is empty or has spaces; Kaldi ids "
                             "cannot; give the speaker a name without spaces")
        uid = u.id if u.id.startswith(f"{u.speaker}-") else f"{u.speaker}-{u.id}"
        if any(c.isspace() for c in uid):
            raise InputError(f"utterance id {u.id!r}{at} has spaces; Kaldi ids cannot; give it an id without spaces")
        path = str(u.audio_path().resolve())
        value = scp_value[path]
        if path in converted and any(c.isspace() for c in value):
            raise InputError(f"{data_dir}: the data dir's path has whitespace, so the WAVs converted into it could "
                             "not be named in wav.scp; choose a folder without spaces")
        if value == path or path in converted:
            _check_scp_path(value, u, at)
        elif any(c in value for c in "\n\r"):
            raise InputError(f"utterance {u.id!r}{at}: audio path {path!r} holds a line break, which would split "
                             "wav.scp; rename the file")
        elif not Path(path).is_file():
            raise InputError(f"utterance {u.id!r}{at}: audio file {path} not found; the pipe in wav.scp would fail")
        if any(c in u.text for c in "\n\r"):
            raise InputError(f"utterance {u.id!r}{at}: its transcript holds a line break, which would split Kaldi's "
                             "'text' table; fix the manifest line")
        if audio == "convert" and Path(path).is_relative_to(wav_dir.resolve()):
            raise InputError(f"utterance {u.id!r}{at}: its audio {path} lies in {wav_dir}, the folder of converted "
                             "WAVs this export replaces; export into another folder, or move the audio")
        if use_segments:
            rec = recs.setdefault(path, f"rec{len(recs):06d}")
            start = u.offset or 0.0
            segs.append(f"{uid} {rec} {start:.3f} {start + u.duration:.3f}")
        else:
            wav.append(f"{uid} {value}")
        text.append(f"{uid} {u.text}")
        utt2spk.append(f"{uid} {u.speaker}")
        spk2utt[u.speaker].append(uid)
    if use_segments:
        wav = [f"{rec} {scp_value[path]}" for path, rec in recs.items()]
    created = not data_dir.exists()
    staging = temporary_dir_beside(wav_dir) if converted else None  # the WAVs are written here, swapped in below
    try:
        if converted:  # decoded once, in parallel; a file that cannot be read stops the export, naming its utterance
            jobs = [(p, str(staging / dst.name)) for p, dst in converted.items()]
            for (p, _), err in zip(jobs, parallel_map(_convert, jobs, workers, "converting to WAV"), strict=True):
                if err is not None:
                    u = next(u for u in utterances if str(u.audio_path().resolve()) == p)
                    at = f" (manifest line {u.line})" if u.line else ""
                    raise InputError(f"utterance {u.id!r}{at}: cannot convert its audio for Kaldi: {err}")
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created and data_dir.is_dir() and not any(data_dir.iterdir()):
            data_dir.rmdir()  # made for the temporary folder alone
        raise
    data_dir.mkdir(parents=True, exist_ok=True)
    if staging is not None:
        replace_dir(staging, wav_dir)  # the old WAVs go with their folder; the tables naming the new ones follow
    elif audio == "convert" and wav_dir.is_dir():
        shutil.rmtree(wav_dir)  # an earlier export's WAVs, which the new tables do not name

    def put(name: str, lines: list[str]) -> None:
        atomic_write_text(data_dir / name, "".join(line + "\n" for line in sorted(lines, key=lambda s: s.encode())))

    put("wav.scp", wav)
    if any(u.text for u in utterances):  # speaker corpora: no 'text' (an import would require transcripts)
        put("text", text)
    else:
        (data_dir / "text").unlink(missing_ok=True)  # a stale table of an earlier export would not match
    put("utt2spk", utt2spk)
    put("spk2utt", [f"{s} {' '.join(sorted(us, key=str.encode))}" for s, us in spk2utt.items()])
    if use_segments:
        put("segments", segs)
    else:
        (data_dir / "segments").unlink(missing_ok=True)
    return data_dir
