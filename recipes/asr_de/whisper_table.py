"""Stage 8's table: whole-Whisper transfer against zero-shot Whisper base on real German speech.

Reads ``<exp>/<condition>/real.json`` (``speech-tl evaluate asr``) and ``summary.json`` of each condition and
prints a Markdown table (written into the README between ``<!-- whisper:start -->`` and ``<!-- whisper:end -->``
with ``--readme``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speech_tl.report.readme import fmt, update_readme
from speech_tl.report.readme import load_result as load

LABELS = {
    "zeroshot_base": "Whisper base, zero-shot (no training)",
    "base_lora": "Whisper base, LoRA rank 16 on the decoder's attention (encoder frozen)",
    "base_lora_13min": "the same LoRA run again at 13 minutes (`conf/whisper.yaml` run by hand)",
    "base_dec2": "Whisper base, top 2 of 6 decoder layers trained (encoder, embeddings frozen)",
    "base_ctc": "Whisper base encoder + new CTC head (bottom 4 of 6 blocks frozen)",
    "tinyen_ctc": "Whisper tiny.en encoder + CTC head (the previous recommendation)",
    "tinyen_decoder": "Whisper tiny.en with its own decoder learning German (no language token)",
}


def row(name: str, d: Path) -> str:
    r, s = load(d / "real.json"), load(d / "summary.json")
    if r is None:
        return f"| {LABELS.get(name, name)} | - | - | - | - | - | - |"
    steps = "-" if s is None else str(s.get("steps", "-"))
    minutes = "-" if s is None else f"{s.get('train_minutes', 0):.1f}"
    kept = "-" if s is None or "best_is_start" not in s else ("zero-shot" if s["best_is_start"]
                                                               else f"step {s.get('best_step')}")
    return (f"| {LABELS.get(name, name)} | {steps} | {minutes} | {kept} | {r['decoding']} | {fmt(r, 'cer')} | "
            f"{fmt(r, 'wer')} |")


def table(exp: Path, conditions: list[str]) -> str:
    lines = ["| condition | steps | minutes | checkpoint kept | decoding | real dev CER | real dev WER |",
             "|---|---:|---:|---|---|---:|---:|"]
    return "\n".join(lines + [row(c, exp / c) for c in conditions])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", type=Path, required=True)
    ap.add_argument("--conditions", required=True, help="space-separated condition names")
    ap.add_argument("--readme", type=Path, default=None)
    a = ap.parse_args()
    text = table(a.exp, a.conditions.split())
    print(text)
    if a.readme is not None:
        update_readme(a.readme, {"whisper": text})


if __name__ == "__main__":
    main()
