"""LibriSpeech: ``<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter (``<utt-id> <TRANSCRIPT>`` per line).

``corpus_dir`` is either one subset (``dev-clean``) or a folder of subsets
(``LibriSpeech/``); each subset becomes ``librispeech_en_<subset>.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from .common import PrepareResult, Rejection, Row, already_done, check_text, dedupe_ids, probe_rows, write_outputs


def _is_subset(path: Path) -> bool:
    return any(path.glob("*/*/*.trans.txt"))


def read_subset(subset_dir: Path) -> tuple[list[Row], list[Rejection]]:
    """Rows from every ``.trans.txt`` of one subset, plus flac files no transcript mentions."""
    rows: list[Row] = []
    rejected: list[Rejection] = []
    listed: set[Path] = set()
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        rel = trans.relative_to(subset_dir).as_posix()
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                utt_id, _, text = line.partition(" ")
                audio = trans.parent / f"{utt_id}.flac"
                listed.add(audio)
                speaker = utt_id.split("-")[0]
                rows.append(Row(id=utt_id, audio=audio, text=text.strip(), speaker=speaker, language="en",
                                source=rel, line=lineno, extra={"chapter": trans.parent.name}))
    for flac in sorted(subset_dir.glob("*/*/*.flac")):
        if flac not in listed:
            rejected.append(Rejection("no transcript", "audio file not listed in its chapter's .trans.txt",
                                      flac.relative_to(subset_dir).as_posix(), None, flac.stem, str(flac)))
    return rows, rejected


def prepare_librispeech(corpus_dir: str | Path, out_dir: str | Path, workers: int | None = None,
                        force: bool = False, overwrite: bool = False) -> PrepareResult:
    """Write ``librispeech_en_<subset>.jsonl`` (one per subset) and ``librispeech_en_rejected.jsonl``."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if _is_subset(corpus_dir):
        subsets = [corpus_dir]
    else:
        subsets = sorted(p for p in corpus_dir.iterdir() if p.is_dir() and _is_subset(p)) \
            if corpus_dir.is_dir() else []
    if not subsets:
        raise FileNotFoundError(f"{corpus_dir}: no LibriSpeech layout found (expected "
                                "<speaker>/<chapter>/<speaker>-<chapter>.trans.txt, or folders of such subsets)")
    params = {"corpus_dir": str(corpus_dir.resolve())}
    if not force and (done := already_done(out_dir, "librispeech", "en", params, overwrite)):
        return done
    rows, rejected, split_of = [], [], {}
    for subset in subsets:
        sub_rows, bad = read_subset(subset)
        for b in bad:
            b.source = f"{subset.name}/{b.source}"
        rejected += bad
        for r in sub_rows:
            r.source = f"{subset.name}/{r.source}"
            split_of.setdefault(r.id, subset.name)  # a duplicate id is rejected; the first row keeps its subset
        rows += sub_rows
    rows, bad = dedupe_ids(rows)
    rejected += bad
    rows, bad = check_text(rows, require_text=True)
    rejected += bad
    utts, bad = probe_rows(rows, workers, desc="librispeech headers")
    rejected += bad
    splits: dict[str, list] = {s.name: [] for s in subsets}
    for u in utts:
        splits[split_of[u.id]].append(u)
    return write_outputs(out_dir, "librispeech", "en", splits, rejected, params)
