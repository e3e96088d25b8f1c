"""A plain folder of audio files, each with an optional same-name ``.txt`` transcript.

The speaker comes from a folder level (``speaker_level=1``: the file's parent folder)
or from a regular expression on the file name (its first group), e.g.
``^\\d+_([a-z]+)_\\d+$`` for the Free Spoken Digit Dataset's ``7_jackson_32.wav``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..audio import SUPPORTED_SUFFIXES
from ..errors import InputError
from .common import PrepareResult, Rejection, Row, already_done, check_text, dedupe_ids, probe_rows, write_outputs

OTHER_AUDIO = (".wma",)  # audio speech-tl does not read: rejected with the reason, not skipped
# (.m4a/.aac/.mp4 are among SUPPORTED_SUFFIXES: decoded by ffmpeg, rejected by the header probe without it)


def prepare_folder(corpus_dir: str | Path, out_dir: str | Path, language: str = "und", name: str = "folder",
                   speaker_level: int = 1, speaker_regex: str | None = None, require_text: bool = True,
                   workers: int | None = None, force: bool = False, overwrite: bool = False) -> PrepareResult:
    """Write ``<name>_<lang>_all.jsonl`` and ``<name>_<lang>_rejected.jsonl``.

    Ids are the file paths relative to ``corpus_dir`` without suffix, ``/`` replaced by ``-``.
    Without ``require_text`` a missing transcript gives an empty text (speaker corpora).
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{corpus_dir}: not a folder")
    try:
        pattern = re.compile(speaker_regex) if speaker_regex else None
    except re.error as e:
        raise InputError(f"--speaker-regex {speaker_regex!r} is not a regular expression ({e})") from None
    if pattern is not None and pattern.groups < 1:
        raise InputError(f"--speaker-regex {speaker_regex!r} needs a group, e.g. '^([a-z]+)_' ")
    params = {"corpus_dir": str(corpus_dir.resolve()), "language": language, "speaker_level": speaker_level,
              "speaker_regex": speaker_regex, "require_text": require_text}
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    rows, rejected = [], []
    for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        rel = path.relative_to(corpus_dir)
        utt_id = rel.with_suffix("").as_posix().replace("/", "-")
        if suffix in OTHER_AUDIO:
            rejected.append(Rejection("unsupported format", f"'{suffix}' cannot be read; convert to wav/flac",
                                      rel.as_posix(), None, utt_id, str(path)))
            continue
        if suffix not in SUPPORTED_SUFFIXES:
            continue
        if pattern is not None:
            m = pattern.search(path.stem)
            if not m:
                rejected.append(Rejection("no speaker", f"file name does not match --speaker-regex {speaker_regex!r}",
                                          rel.as_posix(), None, utt_id, str(path)))
                continue
            speaker = m.group(1)
        elif speaker_level > 0:
            parents = rel.parts[:-1]
            if len(parents) < speaker_level:
                rejected.append(Rejection("no speaker", f"file is fewer than {speaker_level} folder(s) deep",
                                          rel.as_posix(), None, utt_id, str(path)))
                continue
            speaker = parents[-speaker_level]
        else:
            speaker = utt_id
        txt = path.with_suffix(".txt")
        try:
            text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        except UnicodeDecodeError as e:
            rejected.append(Rejection("unreadable transcript", f"{txt.name} is not UTF-8 text ({e.reason} at byte "
                                      f"{e.start}); re-save it as UTF-8", rel.as_posix(), None, utt_id, str(path)))
            continue
        if require_text and not txt.is_file():
            rejected.append(Rejection("no transcript", f"{txt.name} not found beside the audio",
                                      rel.as_posix(), None, utt_id, str(path)))
            continue
        rows.append(Row(id=utt_id, audio=path, text=" ".join(text.split()), speaker=speaker, language=language,
                        source=rel.as_posix()))
    rows, bad = dedupe_ids(rows)
    rejected += bad
    rows, bad = check_text(rows, require_text=require_text)
    rejected += bad
    utts, bad = probe_rows(rows, workers, desc=f"{name} headers")
    rejected += bad
    return write_outputs(out_dir, name, language, {"all": utts}, rejected, params)
