"""VoxCeleb: ``wav/<idNNNNN>/<video>/<utt>.wav`` (VoxCeleb1, or VoxCeleb2 converted to wav).

The speaker is the ``idNNNNN`` folder; there is no transcript. If ``iden_split.txt``
(VoxCeleb1 identification split: ``1|2|3 idNNNNN/<video>/<utt>.wav``) is found beside
``wav/`` or given, the manifest is split into train/dev/test by it; otherwise everything
goes to ``voxceleb_mul_all.jsonl``. VoxCeleb2 ships AAC in ``.m4a`` files (``aac/idNNNNN/<video>/<utt>.m4a``):
those are read through ffmpeg (see :mod:`speech_tl.audio`); without ffmpeg they are rejected with the reason
("ffmpeg not installed") and what to do.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .common import PrepareResult, Rejection, Row, already_done, dedupe_ids, probe_rows, write_outputs

IDEN_SPLITS = {"1": "train", "2": "dev", "3": "test"}


def find_audio_root(corpus_dir: Path) -> Path:
    for name in ("wav", "aac", "dev/wav", "test/wav", "dev/aac", "test/aac"):
        if (corpus_dir / name).is_dir():
            return corpus_dir / name
    if any(corpus_dir.glob("id*/*/*.wav")) or any(corpus_dir.glob("id*/*/*.m4a")):
        return corpus_dir
    raise FileNotFoundError(f"{corpus_dir}: no VoxCeleb layout found (expected wav/idNNNNN/<video>/<utt>.wav)")


def read_iden_split(path: Path) -> dict[str, str]:
    """Map ``idNNNNN/<video>/<utt>.wav`` to train/dev/test; a bad line raises naming it."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in IDEN_SPLITS:
                raise InputError(f"{path}:{lineno}: expected '<1|2|3> idNNNNN/<video>/<utt>.wav', got "
                                 f"{line.strip()!r}; give VoxCeleb1's iden_split.txt as --split-file")
            out[parts[1]] = IDEN_SPLITS[parts[0]]
    return out


def prepare_voxceleb(corpus_dir: str | Path, out_dir: str | Path, split_file: str | Path | None = None,
                     workers: int | None = None, force: bool = False, overwrite: bool = False) -> PrepareResult:
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    root = find_audio_root(corpus_dir)
    if split_file is None and (corpus_dir / "iden_split.txt").is_file():
        split_file = corpus_dir / "iden_split.txt"
    params = {"corpus_dir": str(corpus_dir.resolve()), "split_file": str(split_file) if split_file else None}
    if not force and (done := already_done(out_dir, "voxceleb", "mul", params, overwrite)):
        return done
    split_map = read_iden_split(Path(split_file)) if split_file else None
    rows, rejected = [], []
    files = sorted(p for p in root.glob("*/*/*") if p.suffix.lower() in (".wav", ".m4a", ".flac"))
    for path in files:
        rel = path.relative_to(root).as_posix()
        spk, video, _ = rel.split("/")
        rows.append(Row(id=f"{spk}-{video}-{path.stem}", audio=path, text="", speaker=spk, language="mul",
                        source=rel, extra={"video": video}))
    rows, bad = dedupe_ids(rows)
    rejected += bad
    utts, bad = probe_rows(rows, workers, desc="voxceleb headers")
    rejected += bad
    if split_map is None:
        splits = {"all": utts}
    else:
        splits = {"train": [], "dev": [], "test": []}
        for u in utts:
            rel = Path(u.audio).relative_to(root).as_posix()
            if rel not in split_map:
                rejected.append(Rejection("not in split file", f"{rel} is not listed in {split_file}",
                                          rel, None, u.id, u.audio))
                continue
            splits[split_map[rel]].append(u)
        on_disk = {p.relative_to(root).as_posix() for p in files}
        for rel, split in split_map.items():
            if rel not in on_disk:
                rejected.append(Rejection("missing audio file", f"listed in the split file ({split}) but not found",
                                          Path(split_file).name, None, rel.replace("/", "-").removesuffix(".wav"),
                                          str(root / rel)))
    return write_outputs(out_dir, "voxceleb", "mul", splits, rejected, params)
