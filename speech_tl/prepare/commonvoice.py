"""Common Voice: ``<split>.tsv`` files beside a ``clips/`` folder of MP3s.

Common Voice writes its TSVs without quoting: a sentence may begin with ``"`` and
contain quotes anywhere, so each line is split on tabs only, never parsed as CSV.
Text is kept verbatim (umlauts, ß, punctuation); normalisation happens at training.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..logs import warning
from .common import (
    PrepareResult,
    Rejection,
    Row,
    already_done,
    check_text,
    dedupe_ids,
    probe_rows,
    write_outputs,
)

SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
EXTRA_COLUMNS = ("gender", "age", "accents", "locale", "variant", "sentence_id")


def read_tsv(path: Path, clips_dir: Path, language: str) -> tuple[list[Row], list[Rejection]]:
    """Rows of one Common Voice TSV; malformed lines become rejections naming the line."""
    rows: list[Row] = []
    rejected: list[Rejection] = []
    with open(path, encoding="utf-8", newline="") as f:
        header_line = f.readline()
        header = header_line.rstrip("\r\n").split("\t")
        for need in ("client_id", "path", "sentence"):
            if need not in header:
                raise InputError(f"{path}:1: header has no '{need}' column (found: {', '.join(header)}); "
                                 "is this a Common Voice TSV?")
        col = {name: i for i, name in enumerate(header)}
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                rejected.append(Rejection("malformed row",
                                          f"{len(fields)} tab-separated fields, the header has {len(header)}",
                                          path.name, lineno))
                continue
            clip = fields[col["path"]]
            if not clip:
                rejected.append(Rejection("malformed row", "empty 'path' column", path.name, lineno))
                continue
            extra = {k: fields[col[k]] for k in EXTRA_COLUMNS if k in col and fields[col[k]]}
            rows.append(Row(id=Path(clip).stem, audio=clips_dir / clip, text=fields[col["sentence"]].strip(),
                            speaker=fields[col["client_id"]], language=language, source=path.name,
                            line=lineno, extra=extra))
    return rows, rejected


def prepare_commonvoice(corpus_dir: str | Path, out_dir: str | Path, language: str = "de",
                        use_validated: bool = False, workers: int | None = None,
                        force: bool = False, validated_split: str = "train", overwrite: bool = False) -> PrepareResult:
    """Write ``commonvoice_<lang>_{train,dev,test,rejected}.jsonl`` into ``out_dir``.

    With ``use_validated``, train is built from ``validated.tsv`` minus every clip and every
    speaker of dev and test (the usual way to get more training data); the rows left out
    for that reason are listed in the rejected file as ``overlaps dev/test``. With
    ``validated_split`` other than ``train`` (e.g. ``dev``), ``validated.tsv`` alone becomes that
    split: a sample of validated clips kept for evaluation (``commonvoice_<lang>_dev.jsonl``).
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    clips = corpus_dir / "clips"
    if not clips.is_dir():
        raise FileNotFoundError(f"{corpus_dir}: no 'clips' folder; give the folder of one Common Voice "
                                "language (the one holding train.tsv, dev.tsv, test.tsv and clips/)")
    if validated_split not in SPLITS:
        raise InputError(f"--validated-split must be one of {', '.join(SPLITS)}, got {validated_split!r}")
    params = {"corpus_dir": str(corpus_dir.resolve()), "language": language, "use_validated": use_validated}
    if validated_split != "train":
        if not use_validated:
            raise InputError(f"--validated-split {validated_split} needs --use-validated (it names the split that "
                             "validated.tsv becomes)")
        params["validated_split"] = validated_split
    if not force and (done := already_done(out_dir, "commonvoice", language, params, overwrite)):
        return done

    sources = dict(SPLITS)
    if use_validated:
        if not (corpus_dir / "validated.tsv").is_file():
            raise FileNotFoundError(f"{corpus_dir / 'validated.tsv'}: not found (asked for by --use-validated)")
        sources["train"] = "validated.tsv"
        if validated_split != "train":
            sources = {validated_split: "validated.tsv"}
    rows_by_split: dict[str, list[Row]] = {}
    rejected: list[Rejection] = []
    for split, name in sources.items():
        path = corpus_dir / name
        if not path.is_file():
            warning(f"{path} not found; no '{split}' manifest is written")
            continue
        rows, bad = read_tsv(path, clips, language)
        rows_by_split[split] = rows
        rejected += bad
    if not rows_by_split:
        raise FileNotFoundError(f"{corpus_dir}: none of {', '.join(sources.values())} found")

    if use_validated and validated_split == "train" and "train" in rows_by_split:
        held = [r for s in ("dev", "test") for r in rows_by_split.get(s, [])]
        held_ids = {r.id for r in held}
        held_speakers = {r.speaker for r in held}
        train = []
        for r in rows_by_split["train"]:
            if r.id in held_ids or r.speaker in held_speakers:
                what = "clip" if r.id in held_ids else "speaker"
                rejected.append(Rejection("overlaps dev/test", f"validated row whose {what} is in dev or test",
                                          r.source, r.line, r.id, str(r.audio)))
            else:
                train.append(r)
        rows_by_split["train"] = train

    # ids are unique across splits: a clip listed in two splits is used once, in the first
    order = ["dev", "test", "train"] if use_validated else list(rows_by_split)
    all_rows = [(s, r) for s in order if s in rows_by_split for r in rows_by_split[s]]
    unique, dup = dedupe_ids(r for _, r in all_rows)
    rejected += dup
    keep_ids = {id(r) for r in unique}
    split_of = {id(r): s for s, r in all_rows}
    unique, empty = check_text(unique, require_text=True)
    rejected += empty

    utts, bad_audio = probe_rows(unique, workers, desc="commonvoice headers")
    rejected += bad_audio
    row_split = {r.id: split_of[id(r)] for r in unique if id(r) in keep_ids}
    splits: dict[str, list] = {s: [] for s in rows_by_split}
    for u in utts:
        splits[row_split[u.id]].append(u)
    return write_outputs(out_dir, "commonvoice", language, splits, rejected, params)
