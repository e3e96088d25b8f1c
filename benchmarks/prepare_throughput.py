"""Throughput of corpus preparation: speech-tl's ``prepare_folder`` against a naive preparer.

Generates N real 16 kHz mono 16-bit WAV files (1-6 s of tone + noise, fixed seed) with
same-name ``.txt`` transcripts in a ``<speaker>/<file>.wav`` layout, then times, on the
same files in the same run:

* ``prepare_folder(..., force=True)`` end to end (listing, transcripts, header reads across
  processes, manifest write) with the default number of workers and with ``workers=1``;
* a naive preparer: one plain Python loop that lists the files, reads each transcript,
  fully decodes each WAV with ``soundfile.read`` to get its duration and writes a JSONL
  manifest (soundfile + the standard library only).

Each method runs once to warm up (the page cache cannot be dropped without root), then
``--repeats`` times; the median is reported. Generation time is not measured.

    .venv/bin/python benchmarks/prepare_throughput.py --files 10000 --write-readme

This is a benchmark, not a test: it asserts nothing about speed, only that every method
saw the same files and the same durations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import host, replace_section

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SAMPLE_RATE = 16000
FILES_PER_SPEAKER = 100
TARGET_FILES_PER_S = 1000
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()

sys.path.insert(0, str(REPO))  # run from a checkout without installing


# --------------------------------------------------------------------------- data


def generate(corpus: Path, n: int, seed: int) -> None:
    """Write ``n`` WAV files + transcripts under ``corpus`` unless an identical set is already there."""
    stamp = corpus / ".generated.json"
    want = {"files": n, "seed": seed, "sample_rate": SAMPLE_RATE, "per_speaker": FILES_PER_SPEAKER}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        print(f"reusing {n} files in {corpus}", file=sys.stderr)
        return
    if corpus.exists():
        shutil.rmtree(corpus)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for i in range(n):
        speaker = f"spk{i // FILES_PER_SPEAKER:04d}"
        folder = corpus / speaker
        if i % FILES_PER_SPEAKER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        frames = int(rng.uniform(1.0, 6.0) * SAMPLE_RATE)
        t = np.arange(frames, dtype=np.float32) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * rng.standard_normal(frames)
        stem = f"{speaker}_{i:06d}"
        sf.write(folder / f"{stem}.wav", wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
        (folder / f"{stem}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
        if (i + 1) % 2000 == 0:
            print(f"  generated {i + 1}/{n}", file=sys.stderr)
    stamp.write_text(json.dumps(want))
    print(f"generated {n} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    # Flush the ~1 GB just written: background writeback during the first timed runs
    # otherwise slows them down (seen as a 1.6 s instead of 1.0 s median on 2 cores).
    if hasattr(os, "sync"):
        os.sync()


# --------------------------------------------------------------------------- methods


def run_speech_tl(corpus: Path, out: Path, workers: int | None) -> dict[str, float]:
    from speech_tl.prepare import prepare_folder

    res = prepare_folder(corpus, out, language="en", name="bench", workers=workers, force=True)
    if res.rejected:
        raise RuntimeError(f"speech-tl rejected {len(res.rejected)} files: {res.rejected[0]}")
    return {u.id: u.duration for u in res.splits["all"]}


def run_naive(corpus: Path, out: Path) -> dict[str, float]:
    """What a straightforward preparer does: decode every file to learn its length."""
    durations: dict[str, float] = {}
    lines = []
    for path in sorted(corpus.rglob("*.wav")):
        rel = path.relative_to(corpus)
        utt_id = rel.with_suffix("").as_posix().replace("/", "-")
        text = " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split())
        data, sr = sf.read(str(path))
        duration = round(len(data) / sr, 4)
        durations[utt_id] = duration
        lines.append(json.dumps({"id": utt_id, "audio": str(path), "duration": duration, "text": text,
                                 "speaker": rel.parts[0], "language": "en", "sample_rate": sr}) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "naive_en_all.jsonl").write_text("".join(lines), encoding="utf-8")
    return durations


def measure(fn: Callable[[], dict[str, float]], repeats: int) -> tuple[float, list[float], dict[str, float]]:
    """One warm-up call, then ``repeats`` timed calls; returns (median s, all times, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def import_seconds(repeats: int) -> float:
    """Median time of ``import speech_tl.prepare`` in a fresh interpreter (paid once per CLI run, not timed above)."""
    import subprocess

    code = "import time; t = time.perf_counter(); import speech_tl.prepare; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    times = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                  env=env).stdout) for _ in range(repeats)]
    return statistics.median(times)


# --------------------------------------------------------------------------- report


def machine() -> str:
    import speech_tl

    return (f"{host()}, soundfile {sf.__version__} (libsndfile "
            f"{sf.__libsndfile_version__}), numpy {np.__version__}, speech-tl "
            f"{getattr(speech_tl, '__version__', '?')}")


def table(n: int, rows: list[tuple[str, float, list[float]]], naive_s: float, repeats: int,
          import_s: float) -> str:
    out = [f"{n:,} WAV files (16 kHz mono 16-bit, 1-6 s, {FILES_PER_SPEAKER} per speaker folder), "
           f"median of {repeats} runs after one warm-up (page cache warm).",
           "",
           "| method | median time (s) | files/s | vs naive | all runs (s) |",
           "|---|---:|---:|---:|---|"]
    for name, med, times in rows:
        ratio = f"{naive_s / med:.2f}x" if naive_s == naive_s else "-"  # NaN with --skip-naive
        out.append(f"| {name} | {med:.2f} | {n / med:,.0f} | {ratio} | "
                   f"{', '.join(f'{t:.2f}' for t in times)} |")
    out += ["", f"Target: {TARGET_FILES_PER_S:,} files/s on 2 cores. Not in the times above: "
            f"`import speech_tl.prepare` in a fresh interpreter takes {import_s:.2f} s (median of {repeats}), "
            "paid once per `speech-tl prepare` command.", "", f"Machine: {machine()}"]
    return "\n".join(out)


def write_readme(text: str) -> None:
    replace_section(README, START, END, text)
    print(f"wrote the table into {README}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    from speech_tl.prepare.common import default_workers

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000, help="number of WAV files (default 10000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method after the warm-up (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, help="keep (and reuse) the generated files here instead of a temp dir")
    ap.add_argument("--workers", type=int, default=None,
                    help=f"workers for the parallel speech-tl run (default: speech-tl's default, {default_workers()})")
    ap.add_argument("--skip-naive", action="store_true", help="time speech-tl only")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"replace the table between the result markers in {README.relative_to(REPO)}")
    args = ap.parse_args(argv)
    if args.files < 1 or args.repeats < 1:
        ap.error("--files and --repeats must be at least 1")

    tmp = None
    if args.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="speech_tl_bench_")
        work = Path(tmp.name)
    else:
        work = args.work_dir.resolve()
    try:
        corpus, out = work / "corpus", work / "out"
        generate(corpus, args.files, args.seed)
        workers = args.workers or default_workers()
        methods: list[tuple[str, Callable[[], dict[str, float]]]] = [
            (f"speech-tl `prepare_folder`, workers={workers} (default)" if args.workers is None
             else f"speech-tl `prepare_folder`, workers={workers}",
             lambda: run_speech_tl(corpus, out, args.workers)),
            ("speech-tl `prepare_folder`, workers=1", lambda: run_speech_tl(corpus, out, 1)),
        ]
        if not args.skip_naive:
            methods.append(("naive loop, `soundfile.read` (full decode)", lambda: run_naive(corpus, out)))
        rows, results = [], []
        for name, fn in methods:
            print(f"timing: {name} ...", file=sys.stderr)
            med, times, result = measure(fn, args.repeats)
            print(f"  median {med:.2f} s = {args.files / med:,.0f} files/s", file=sys.stderr)
            rows.append((name, med, times))
            results.append(result)
        for (name, _, _), result in zip(rows, results, strict=True):
            if len(result) != args.files:
                raise SystemExit(f"{name}: {len(result)} utterances, expected {args.files}")
            if result != results[0]:
                raise SystemExit(f"{name}: durations differ from {rows[0][0]}")
        naive_s = rows[-1][1] if not args.skip_naive else float("nan")
        text = table(args.files, rows, naive_s, args.repeats, import_seconds(args.repeats))
        print(text)
        if args.write_readme:
            write_readme(text)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
