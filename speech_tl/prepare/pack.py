"""Pack short utterances into Whisper-length windows: the same speech, several times fewer encoder passes.

Whisper's encoder always runs on 30 s (inputs are padded with silence to 30 s, as it was trained),
so a 4 s utterance costs as much as a 30 s one, and training on short clips spends most of its
time encoding silence. ``speech-tl prepare pack MANIFEST --out OUT.jsonl`` concatenates
utterances of one language and one domain (the manifest's ``language`` and ``domain``, so a
pack has one language token and one kind of channel) with short pauses between them into
windows of a length drawn per window between ``--min-seconds`` and ``--max-seconds`` (an
utterance longer than the drawn length is a window of its own), and writes:

- ``OUT.jsonl``: one line per window: the transcripts joined by spaces, speaker ``pack``,
  ``parts`` the utterance ids in order;
- ``OUT_audio/<id>-<digest of its parts and pauses>.wav`` (16 kHz), each written atomically and
  skipped when a resumed run finds it;
- ``.OUT.jsonl.done``: the parameters, written last (the same parameters again are skipped,
  other parameters refused unless ``--overwrite``).

This is how Whisper was trained (30 s windows of running speech with several sentences) and what
Whisper fine-tuning setups do to fill the window; the grouping and file writing are written here
because no library packs a manifest into audio files.
"""

from __future__ import annotations

import hashlib
import json
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..atomic import atomic_write_text
from ..digest import file_sha1
from ..errors import InputError
from ..manifest import Utterance, clean_source, read_manifest, write_manifest
from .common import PrepareResult, default_workers, finished_audio_seconds, finished_files

RATE = 16000


def plan_packs(utts: list[Utterance], seed: int, min_seconds: float, max_seconds: float
               ) -> list[tuple[list[Utterance], list[float]]]:
    """Seeded windows: ``[(utterances, pauses before each but the first), ...]``, one language and domain each."""
    rng = random.Random(seed)
    groups: dict[tuple, list[Utterance]] = {}
    for u in utts:
        groups.setdefault((u.language, u.extra.get("domain", "")), []).append(u)
    packs = []
    for key in sorted(groups):
        group = list(groups[key])
        rng.shuffle(group)
        current, pauses, length, target = [], [], 0.0, rng.uniform(min_seconds, max_seconds)
        for u in group:
            pause = round(rng.uniform(0.2, 0.8), 3)
            if current and length + pause + u.duration > target:
                packs.append((current, pauses))
                current, pauses, length, target = [], [], 0.0, rng.uniform(min_seconds, max_seconds)
            if current:
                pauses.append(pause)
                length += pause
            current.append(u)
            length += u.duration
        if current:
            packs.append((current, pauses))
    return packs


def _write_pack(job: dict) -> tuple[str, float, str | None]:
    import torch

    from ..audio import AudioError, load_audio, write_audio

    out = Path(job["out"])
    seconds = finished_audio_seconds(out)
    if seconds is not None and (not job.get("sources") or Path(job["source_out"]).is_file()):
        return job["id"], seconds, None
    pieces, sources = [], []
    try:
        for k, part in enumerate(job["parts"]):
            if k:
                pieces.append(torch.zeros(int(job["pauses"][k - 1] * RATE)))
                sources.append(pieces[-1])
            pieces.append(load_audio(part["audio"], RATE, offset=part["offset"], duration=part["duration"]))
            if job.get("sources"):  # the clean source, cut or padded to its twin's length: the two packs align
                src = job["sources"][k]
                clean = load_audio(src["audio"], RATE, offset=src["offset"], duration=src["duration"])
                sources.append(torch.nn.functional.pad(clean, (0, max(0, pieces[-1].numel() - clean.numel())))
                               [: pieces[-1].numel()])
    except AudioError as e:
        return job["id"], 0.0, str(e)
    wave = torch.cat(pieces)
    if job.get("sources"):
        write_audio(job["source_out"], torch.cat(sources), RATE)
    write_audio(out, wave, RATE)  # last: its presence means the pack (and its source) is done
    return job["id"], wave.numel() / RATE, None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def prepare_pack(manifest: str | Path, out: str | Path, min_seconds: float = 5.0, max_seconds: float = 28.0,
                 seed: int = 0, workers: int | None = None, force: bool = False, overwrite: bool = False
                 ) -> PrepareResult:
    """Write the packed twin of ``manifest`` to ``out`` (see the module docstring)."""
    if not 0 < min_seconds <= max_seconds <= 30:
        raise InputError(f"need 0 < --min-seconds <= --max-seconds <= 30 (Whisper's window), got {min_seconds} and "
                         f"{max_seconds}")
    manifest, out = Path(manifest), Path(out)
    if out.suffix != ".jsonl" or out.resolve() == manifest.resolve():
        raise InputError(f"{out}: the packed manifest needs its own name ending in .jsonl")
    audio_dir, marker = out.with_name(out.stem + "_audio"), out.with_name(f".{out.name}.done")
    params = {"manifest": str(manifest.resolve()), "manifest_sha1": file_sha1(manifest), "min_seconds": min_seconds,
              "max_seconds": max_seconds, "seed": seed}
    if not force and (files := finished_files(marker, params, overwrite, f"packs of {manifest.name} were written here",
                                               "another --out")):
        return PrepareResult(f"packs of {manifest.name}", "mixed", {"packed": read_manifest(files["packed"])}, [],
                             files, skipped=True)
    utts = read_manifest(manifest)
    too_long = [u for u in utts if u.duration > 30.0]
    if too_long:
        u = too_long[0]
        raise InputError(f"{manifest}:{u.line}: utterance {u.id!r} is {u.duration:.1f} s, longer than Whisper's "
                         f"30 s window ({len(too_long)} such); filter them out first (speech-tl manifest filter)")
    jobs, lines = [], []
    for k, (parts, pauses) in enumerate(plan_packs(utts, seed, min_seconds, max_seconds)):
        lang, domain = parts[0].language, parts[0].extra.get("domain", "")
        pid = f"pack-{lang}-{k:06d}"
        # a span (offset given, 0 included) is read for its duration, a whole file whole
        job = {"id": pid, "pauses": pauses,
               "parts": [{"audio": str(u.audio_path()), "offset": u.offset or 0.0,
                          "duration": u.duration if u.offset is not None else None} for u in parts]}
        # the file name names its content, so a WAV left by a run with other parameters (--overwrite, an
        # interrupted run) is never taken for this pack; a resumed run with the same plan keeps its files
        if any(u.extra.get("source_audio") for u in parts):  # twins of clean recordings: their clean pack too
            job["sources"] = [clean_source(u) for u in parts]
        digest = hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()[:8]
        jobs.append(job | {"out": str(audio_dir / f"{pid}-{digest}.wav")})
        extra = {"parts": [u.id for u in parts], "pauses": pauses} | ({"domain": domain} if domain else {})
        if "sources" in job:
            jobs[-1]["source_out"] = str(audio_dir / f"{pid}-{digest}-source.wav")
            extra["source_audio"] = str(Path(jobs[-1]["source_out"]).resolve())
        if any(u.extra.get("clipping") == "intended" for u in parts):
            extra["clipping"] = "intended"
        lines.append(Utterance(id=pid, audio=str(Path(jobs[-1]["out"]).resolve()), duration=0.0,
                               text=" ".join(u.text for u in parts), speaker="pack", language=lang, sample_rate=RATE,
                               extra=extra))
    workers = workers or default_workers()
    if workers == 1 or len(jobs) < 4:
        results = [_write_pack(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            results = list(pool.map(_write_pack, jobs, chunksize=2))
    errors = [(j["id"], e) for j, (_, _, e) in zip(jobs, results, strict=True) if e]
    if errors:
        raise InputError(f"{manifest}: {len(errors)} pack(s) could not be read, e.g. {errors[0][0]}: {errors[0][1]}; "
                         "check the manifest (speech-tl manifest validate --check-audio) and run again")
    for line, (_, seconds, _) in zip(lines, results, strict=True):
        line.duration = round(seconds, 4)
    write_manifest(out, lines)
    keep = {Path(j[k]).name for j in jobs for k in ("out", "source_out") if k in j}
    for old_file in audio_dir.glob("*.wav"):
        if old_file.name not in keep:
            old_file.unlink()
    atomic_write_text(marker, json.dumps({"params": params, "files": {"packed": str(out.resolve())}}, indent=1))
    return PrepareResult(f"packs of {manifest.name}", "mixed", {"packed": lines}, [], {"packed": out})
