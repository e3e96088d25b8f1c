"""Training data loading: audio seconds per second delivered from 48 kHz MP3 with 0, 1 and 2 loader
workers, next to what one training step consumes; and the prefix cache's filling epoch, batched against
one utterance at a time.

Input: Common Voice clips (48 kHz MP3, Common Voice's own format) from ``../shared/data/commonvoice``
when it is there (``--clips``), else ``--files`` synthetic 48 kHz MP3 files written first (speech-shaped
noise bursts; decoding cost does not depend on content). Everything runs in one process, side by side:

1. **loader**: :func:`speech_tl.loader.make_loader` over the training batches of these files
   (:func:`speech_tl.data.duration_batches`, 120 s of audio per batch), iterated once per worker count:
   decoding, 48 -> 16 kHz resampling and collation, as a training run gets them. The OS page cache is
   warm (a first pass reads every file), so this is decoding cost, not disk.
2. **training step**: ``Trainer.train_step`` of the recommended ASR configuration
   (``recipes/asr_de/conf/transfer.yaml``: Whisper tiny.en, bottom 3 of 4 blocks frozen) with the prefix
   cache off, on batches already in memory: the audio seconds per second a step consumes when nothing is
   cached (the most a loader must deliver). With the cache on, later epochs need no audio at all.
3. **cache filling**: the frozen prefix (frontend and 3 blocks) over every utterance once, as the first
   epoch fills the cache: one utterance at a time, and batched by padded length
   (:func:`speech_tl.prefix_cache.prefix_outputs` with the trainer's CPU settings, ``FILL_ROWS["cpu"]`` rows
   per pass), 32 duration-sorted utterances at a time as a training batch's missing ones come.

    .venv/bin/python benchmarks/data_loading.py --write-readme

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import host, replace_section

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- data-loading:start -->", "<!-- data-loading:end -->"
SHARED = REPO.parent / "shared" / "data" / "commonvoice"
sys.path.insert(0, str(REPO))


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def clips(limit: int, work: Path) -> tuple[list, str]:
    """Utterances of 48 kHz MP3 files: Common Voice clips when there, else synthetic files."""
    from speech_tl.manifest import Utterance

    found = sorted(SHARED.glob("*/clips/*.mp3"))[:limit] if SHARED.is_dir() else []
    if found:
        import soundfile as sf

        utts = [Utterance(id=p.stem, audio=str(p), duration=sf.info(p).duration, text="ab",
                           speaker="s", language="de") for p in found]
        return utts, f"{len(utts)} Common Voice clips (48 kHz MP3) from {SHARED}"
    import soundfile as sf

    rng = np.random.default_rng(0)
    utts = []
    for i in range(limit):
        seconds = float(rng.uniform(2.0, 7.0))
        t = np.arange(int(seconds * 48000)) / 48000
        x = 0.2 * rng.standard_normal(t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) ** 2
        path = work / f"clip{i:04d}.mp3"
        sf.write(path, x.astype(np.float32), 48000, format="MP3")
        utts.append(Utterance(id=path.stem, audio=str(path), duration=sf.info(path).duration, text="ab",
                              speaker="s", language="de"))
    return utts, f"{len(utts)} synthetic 48 kHz MP3 files (no ../shared/data/commonvoice here)"


def loader_rate(utts, workers: int) -> float:
    from speech_tl.data import UtteranceDataset, duration_batches
    from speech_tl.loader import BatchPlan, TrainingItems, make_loader

    plan = BatchPlan()
    plan.set(duration_batches([u.duration for u in utts], 120.0, 64, 0, 0), 0)
    loader = make_loader(TrainingItems(UtteranceDataset(utts), 0), plan, workers, pin_memory=False)
    t0 = time.perf_counter()
    seconds = sum(float(b["lengths"].sum()) / 16000 for b in loader)
    return seconds / (time.perf_counter() - t0)


def trainer_for(utts, work: Path):
    from speech_tl.asr.task import AsrConfig, AsrTask
    from speech_tl.config import load_config
    from speech_tl.manifest import write_jsonl
    from speech_tl.train import Trainer

    manifest = work / "train.jsonl"
    write_jsonl(manifest, (u.to_dict() for u in utts))
    cfg = load_config(AsrConfig, REPO / "recipes/asr_de/conf/transfer.yaml",
                      [f"data.train={manifest}", "data.dev=null", f"out_dir={work / 'run'}", "decode.lm_order=0",
                       "decode.lm_texts=[]", "decode.lm_unigrams=''", "decode.tune_on=''", "train.prefix_cache='off'",
                       "train.max_steps=1000", "train.max_minutes=null", "data.max_duration=20"])
    return Trainer(AsrTask(cfg, lambda *a: None), cfg.train, cfg.out_dir, cfg.data, lambda *a: None)


def step_rate(trainer, steps: int) -> float:
    from speech_tl.data import collate, duration_batches

    ds = trainer.task.train_set
    batches = duration_batches(ds.durations, 120.0, 64, 0, 0)[: steps + 1]
    loaded = [collate([ds[i] for i in b]) for b in batches]
    trainer.train_step(batches[0], 100, [loaded[0]])  # warm-up
    t0 = time.perf_counter()
    for b, batch in zip(batches[1:], loaded[1:], strict=True):
        trainer.train_step(b, 100, [batch])
    return sum(ds.durations[i] for b in batches[1:] for i in b) / (time.perf_counter() - t0)


def fill_rates(trainer) -> tuple[float, float]:
    import torch

    from speech_tl.prefix_cache import prefix_outputs
    from speech_tl.train import BUCKET_SECONDS, FILL_ROWS

    backbone, depth = trainer.task.model.backbone.eval(), trainer.plan.depth
    waves = [trainer.task.train_set[i][0] for i in range(len(trainer.task.train_set))]
    audio = sum(w.numel() for w in waves) / 16000

    def run(wave, lengths):
        return backbone.forward_to(depth, wave, lengths)

    with torch.no_grad():
        t0 = time.perf_counter()
        for w in waves:
            run(w[None], torch.tensor([w.numel()]))
        alone = audio / (time.perf_counter() - t0)
        order = sorted(range(len(waves)), key=lambda i: waves[i].numel())  # as duration-sorted batches come
        t0 = time.perf_counter()
        for start in range(0, len(order), 32):
            prefix_outputs(run, [waves[i] for i in order[start:start + 32]], int(16000 * BUCKET_SECONDS),
                           FILL_ROWS["cpu"])
        batched = audio / (time.perf_counter() - t0)
    return alone, batched


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=300, help="MP3 files to use (default 300)")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps (default 6)")
    ap.add_argument("--write-readme", action="store_true", help="replace the section in benchmarks/README.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        utts, source = clips(args.clips, work)
        audio = sum(u.duration for u in utts)
        log(f"{source}: {audio / 60:.1f} min of audio")
        loader_rate(utts, 0)  # warm the page cache
        rates = {}
        for workers in (0, 1, 2):
            rates[workers] = loader_rate(utts, workers)
            log(f"loader, {workers} workers: {rates[workers]:.0f} audio s/s")
        trainer = trainer_for(utts, work)
        step = step_rate(trainer, args.steps)
        log(f"training step (prefix cache off): {step:.0f} audio s/s")
        alone, batched = fill_rates(trainer)
        from speech_tl.train import FILL_ROWS

        rows = FILL_ROWS["cpu"]
        log(f"cache filling: {alone:.0f} audio s/s one at a time, {batched:.0f} batched")
    lines = [f"Measured on {host()}; {source}, {audio / 60:.1f} min of audio; one run, side by side "
             "(`.venv/bin/python benchmarks/data_loading.py --write-readme`).", "",
             "| what | audio seconds per second | ratio |", "|---|---:|---:|"]
    for workers, rate in rates.items():
        lines.append(f"| loader, {workers} worker{'s' if workers != 1 else ''} (decode MP3, resample 48 -> 16 kHz, "
                     f"collate) | {rate:.0f} | {rate / rates[0]:.2f}x of 0 workers |")
    lines.append(f"| one training step consumes (recommended ASR config, prefix cache off) | {step:.0f} | "
                 f"loader with 2 workers delivers {rates[2] / step:.1f}x this |")
    lines.append(f"| cache filling, one utterance at a time | {alone:.0f} | 1.00x |")
    lines.append(f"| cache filling, batched by padded length ({rows} rows per pass, as on a CPU) | {batched:.0f} | "
                 f"{batched / alone:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        replace_section(README, START, END, text)


if __name__ == "__main__":
    main()
