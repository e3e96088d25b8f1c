"""M-AILABS (German and others): ``<lang>/by_book/<female|male|mix>/<speaker>/<book>/``
with ``metadata.csv`` (``<id>|<text>|<normalised text>``, pipe-separated) and ``wavs/<id>.wav``.

Books under ``mix/`` have several unnamed readers; their speaker is ``mix-<book>`` and the
line carries ``"speaker_known": false`` so speaker-disjoint splits can treat them apart.
"""

from __future__ import annotations

from pathlib import Path

from .common import PrepareResult, Rejection, Row, already_done, check_text, dedupe_ids, probe_rows, write_outputs

GENDERS = ("female", "male", "mix")


def read_metadata(meta: Path, language: str, base: Path) -> tuple[list[Row], list[Rejection]]:
    book_dir = meta.parent
    rel_parts = book_dir.relative_to(base).parts  # (gender, speaker, book) or (mix, book)
    if not rel_parts or rel_parts[0] not in GENDERS:  # corpus_dir is a gender, speaker or book folder
        for top in (base, base.parent, base.parent.parent):
            if top.name in GENDERS:
                rel_parts = book_dir.relative_to(top.parent).parts
                break
    gender = rel_parts[0] if rel_parts else ""
    if gender == "mix" or len(rel_parts) < 3:
        speaker, extra = f"mix-{book_dir.name}", {"speaker_known": False, "book": book_dir.name}
    else:
        speaker, extra = rel_parts[1], {"gender": gender, "book": book_dir.name}
    rows, rejected = [], []
    source = meta.relative_to(base).as_posix()
    with open(meta, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) < 2:
                rejected.append(Rejection("malformed row", "expected '<id>|<text>|<normalised text>'",
                                          source, lineno))
                continue
            utt = fields[0].strip()
            rows.append(Row(id=f"{speaker}-{book_dir.name}-{utt}", audio=book_dir / "wavs" / f"{utt}.wav",
                            text=fields[1].strip(), speaker=speaker, language=language, source=source,
                            line=lineno, extra=dict(extra)))
    listed = {r.audio.name for r in rows}
    for wav in sorted((book_dir / "wavs").glob("*.wav")):
        if wav.name not in listed:
            rejected.append(Rejection("no transcript", "audio file not listed in metadata.csv", source, None,
                                      f"{speaker}-{book_dir.name}-{wav.stem}", str(wav)))
    return rows, rejected


def prepare_mailabs(corpus_dir: str | Path, out_dir: str | Path, language: str = "de",
                    workers: int | None = None, force: bool = False, overwrite: bool = False) -> PrepareResult:
    """Write ``mailabs_<lang>_all.jsonl`` and ``mailabs_<lang>_rejected.jsonl``."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    base = corpus_dir / "by_book" if (corpus_dir / "by_book").is_dir() else corpus_dir
    metas = sorted(base.rglob("metadata.csv"))
    if not metas:
        raise FileNotFoundError(f"{corpus_dir}: no metadata.csv found (expected the M-AILABS layout "
                                "by_book/<female|male|mix>/<speaker>/<book>/metadata.csv)")
    params = {"corpus_dir": str(corpus_dir.resolve()), "language": language}
    if not force and (done := already_done(out_dir, "mailabs", language, params, overwrite)):
        return done
    rows, rejected = [], []
    for meta in metas:
        r, bad = read_metadata(meta, language, base)
        rows += r
        rejected += bad
    rows, bad = dedupe_ids(rows)
    rejected += bad
    rows, bad = check_text(rows, require_text=True)
    rejected += bad
    utts, bad = probe_rows(rows, workers, desc="m-ailabs headers")
    rejected += bad
    return write_outputs(out_dir, "mailabs", language, {"all": utts}, rejected, params)
