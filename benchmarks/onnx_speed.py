"""ONNX Runtime against torch on 2 CPU cores: a trained CTC model and the GE2E embedder, exported as
`speech-tl export onnx` exports them (float, with ONNX Runtime's fusions, int8), side by side in one run.

Both sides run the same weights on the same waveforms in one process, one after the other (never at once), with the
same thread count. See benchmarks/README.md (`onnx_speed.py`) for what is timed.

    .venv/bin/python benchmarks/onnx_speed.py --write-readme
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host, replace_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CV_DE = REPO.parent / "shared" / "data" / "commonvoice" / "de" / "clips"
CHECKPOINT = REPO / "exp" / "asr_de" / "whisper" / "base_ctc" / "best"
DEV = REPO / "manifests" / "commonvoice_de_dev.jsonl"


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return runs


def attention_fused_copy(folder: Path, out: Path) -> dict:
    """``folder`` copied to ``out`` with onnxscript's ONNX Runtime fusions (attention as ``MultiHeadAttention``)."""
    from onnxscript import ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    shutil.copytree(folder, out)
    model = ir.load(str(folder / "model.onnx"))
    model, counts = optimize_for_ort(model)
    ir.save(model, str(out / "model.onnx"))
    return {k: v for k, v in counts.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINT,
                    help="a trained CTC checkpoint (default: the asr_de recipe's base_ctc, Whisper base + CTC head)")
    ap.add_argument("--dev", type=Path, default=DEV, help="real dev manifest the int8 export is scored on")
    ap.add_argument("--clips", type=int, default=54, help="Common Voice German clips (../shared) to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from speech_tl.asr.evaluate import load_asr_model
    from speech_tl.audio import load_audio
    from speech_tl.data import pad_waves
    from speech_tl.export.onnx import export_onnx
    from speech_tl.speaker.embedder import load_embedder

    clips = sorted(CV_DE.glob("*.mp3"))[: args.clips]
    if not clips:
        raise SystemExit(f"{CV_DE}: no Common Voice clips (../shared is needed for this benchmark)")
    if not (args.checkpoint / "meta.json").is_file():
        raise SystemExit(f"{args.checkpoint}: no trained checkpoint; train one with `recipes/asr_de/run.sh --stage 8 "
                         "--stop-stage 8` (base_ctc) or give --checkpoint")
    waves = [load_audio(c) for c in clips]
    audio_s = sum(w.numel() for w in waves) / 16000
    order = sorted(range(len(waves)), key=lambda i: -waves[i].numel())
    batches = [pad_waves([waves[i] for i in order[a:a + 8]]) for a in range(0, len(order), 8)]
    singles = [pad_waves([w]) for w in waves]

    rows, notes = [], []
    cer = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        plain = export_onnx(args.checkpoint, tmp / "plain", clips[0], optimize=False)
        shown = args.checkpoint.relative_to(REPO) if args.checkpoint.resolve().is_relative_to(REPO) else args.checkpoint
        notes.append(f"ASR export ({shown}, "
                     f"{plain['meta']['backbone']} + CTC head): {time.perf_counter() - t:.1f} s, model.onnx "
                     f"{(tmp / 'plain' / 'model.onnx').stat().st_size / 2**20:.0f} MiB float, largest log-probability "
                     f"difference to torch {plain['verified']['max_abs_diff']:.1e}")
        fused = export_onnx(args.checkpoint, tmp / "fused", clips[0])
        notes.append(f"ONNX Runtime's transformer fusions at export: {fused['verified']['fusions']}")
        int8 = export_onnx(args.checkpoint, tmp / "int8", clips[0], quantize="int8", dev=args.dev)
        q = int8["quantization"]
        notes.append(f"int8: {q['nodes']} matrix products, model.onnx "
                     f"{(tmp / 'int8' / 'model.onnx').stat().st_size / 2**20:.0f} MiB; real dev ({q['dev']['manifest']}"
                     f", {q['dev']['int8']['utterances']} clips, {q['dev']['decoding']}) CER float "
                     f"{q['dev']['float']['cer']:.4f}, int8 {q['dev']['int8']['cer']:.4f}; WER float "
                     f"{q['dev']['float']['wer']:.4f}, int8 {q['dev']['int8']['wer']:.4f}")
        cer = {"float": q["dev"]["float"]["cer"], "int8": q["dev"]["int8"]["cer"]}
        mha = attention_fused_copy(tmp / "fused", tmp / "mha")
        notes.append(f"onnxscript's attention fusion on top (not applied by the export): {mha}")

        torch_model, _, _ = load_asr_model(args.checkpoint)
        models = {"torch float32": torch_model}
        for name, folder in (("ONNX Runtime float32, as exported", "plain"),
                             ("ONNX Runtime float32 + transformer fusions (the default export)", "fused"),
                             ("ONNX Runtime float32 + fusions + attention as MultiHeadAttention", "mha"),
                             ("ONNX Runtime int8 (`--quantize int8`)", "int8")):
            models[name] = load_asr_model(tmp / folder, backend="onnx")[0]

        def run_ctc(model, inputs):
            def go():
                with torch.no_grad():
                    for wave, lengths in inputs:
                        model(wave=wave, lengths=lengths)
            return go

        for label, inputs in (("one clip at a time", singles), ("batches of 8 (sorted by length, padded)", batches)):
            times = {name: timed(run_ctc(m, inputs), args.repeats) for name, m in models.items()}
            base = statistics.median(times["torch float32"])
            for name, t in times.items():
                rows.append(("ASR: " + name, label, statistics.median(t), base))

        ge2e = export_onnx("ge2e:resemblyzer", tmp / "ge2e", clips[1])
        ge2e8 = export_onnx("ge2e:resemblyzer", tmp / "ge2e8", clips[1], quantize="int8")
        notes.append(f"GE2E export: largest embedding difference {ge2e['verified']['max_abs_diff']:.1e}; int8 "
                     f"({ge2e8['quantization']['op_types']}): lowest embedding cosine to torch "
                     f"{ge2e8['quantization']['min_cosine_to_torch']:.4f}")
        embedders = {"torch float32": load_embedder("ge2e:resemblyzer"),
                     "ONNX Runtime float32": load_embedder(str(tmp / "ge2e")),
                     "ONNX Runtime int8": load_embedder(str(tmp / "ge2e8"))}
        for label, bs in (("one clip at a time", 1), ("16 clips per call", 16)):
            times = {name: timed(lambda e=e, b=bs: e.embed_many(waves, b), args.repeats)
                     for name, e in embedders.items()}
            base = statistics.median(times["torch float32"])
            for name, t in times.items():
                rows.append(("speaker GE2E: " + name, label, statistics.median(t), base))

    import onnxruntime

    lines = [f"{len(clips)} real Common Voice German clips ({audio_s / 60:.1f} min of audio, 48 kHz MP3 decoded to "
             "16 kHz in memory first; timed from the waveform). Every model runs the same weights in one process, one "
             f"after the other, {args.threads} threads each (torch intra-op threads; ONNX Runtime "
             f"intra_op_num_threads). Median of {args.repeats} passes after a warm-up pass; speed-up = torch float32's "
             "time / this row's (above 1: faster than torch).", "",
             "| model | inputs | seconds | speed-up over torch | x real time | real dev CER |",
             "|---|---|---:|---:|---:|---:|"]
    for what, label, t, base in rows:
        c = cer["int8"] if what.endswith("(`--quantize int8`)") else cer["float"] if "default export" in what else None
        lines.append(f"| {what} | {label} | {t:.2f} | {base / t:.2f} | {audio_s / t:.0f} | "
                     f"{'-' if c is None else f'{c:.4f}'} |")
    lines += ["", *[f"- {n}" for n in notes], "",
              f"Machine: {host()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"cer": cer}))
    if args.write_readme:
        replace_section(REPO / "benchmarks" / "README.md", "<!-- onnx-speed:start -->", "<!-- onnx-speed:end -->",
                        text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
