"""Stage 8's and 9's tables: whole-Whisper transfer against zero-shot Whisper base on real German speech.

Reads ``<exp>/<condition>/real.json`` (``speech-tl evaluate asr``) and ``summary.json`` of each condition and
prints a Markdown table (written into the README between ``<!-- whisper:start -->`` and ``<!-- whisper:end -->``
with ``--readme``). With ``--phone`` (stage 9), also ``phone.json``, the same clips through telephone channels, as
two more columns and the ratio to zero-shot there, and ``amr.json`` / ``gsm.json`` (the mobile-codec twins) as the
mobile column and its ratio (table between ``<!-- phone:start -->`` and ``<!-- phone:end -->``).
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
    "clean_dec2": "previous recommendation: top 2 decoder layers on clean synthetic German (stage 8's base_dec2)",
    "phone_b3_fp32": "phone mix: top 3 encoder + top 2 decoder layers, lr 5e-5, float32",
    "phone_b3_teacher": "the same with the channel teacher (weight 1)",
    "phone_b3_bf16": "phone mix: top 3 encoder + top 2 decoder layers, lr 1e-4, bf16, 12 min",
    "phone_b3_lr1e4": "the same at 11 min (the first candidate for conf/transfer.yaml)",
    "phone_b0_bf16": "phone mix: all 6 encoder blocks + top 2 decoder layers, lr 5e-5, bf16",
    "phone_babble_any": "phone mix with babble of any language (`prepare channel --babble-language any`), top 3 + "
                        "top 2, lr 5e-5, bf16, 11 min (recommended before same-language babble)",
    "phone_b3_30min": "the recommended configuration at 30 minutes (dev every 60 steps)",
    "phone_dec6_lr1e4": "phone mix: top 3 encoder blocks only (decoder frozen), lr 1e-4, bf16",
    "phone_lora_all": "phone mix: LoRA rank 16 on every linear layer of all 6 encoder blocks and the decoder, lr 5e-4",
    "zeroshot_base_beam10": "Whisper base, zero-shot, beam 10",
    "phone_dense_eval100": "the recommended configuration, more speech in its 11 minutes: 18-28 s packs (1,492 "
                           "windows) and a dev evaluation every 100 steps",
    "phone_kd": "the same with the teacher at the decoder's output (`model.channel_teacher_kd_weight=1`)",
    "recommended": "**recommended** (`conf/transfer.yaml`: phone mix with same-language babble, top 3 + top 2, "
                   "lr 5e-5, bf16, 11 min, beam 10)",
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


def mobile_cer(d: Path) -> float | None:
    """CER on the two mobile-codec twins of the real dev set (``amr.json``, ``gsm.json``): the same 54 clips, so the
    same reference characters twice, and the pooled CER is the mean of the two."""
    amr, gsm = load(d / "amr.json"), load(d / "gsm.json")
    if amr is None or gsm is None or amr["num_utterances"] != gsm["num_utterances"]:
        return None  # not both, or not the same clips (a call rejected in one twin): no pooled figure
    return (amr["cer"] + gsm["cer"]) / 2


def phone_row(name: str, d: Path, zero_shot_phone: float | None, zero_shot_mobile: float | None) -> str:
    r, p, s = load(d / "real.json"), load(d / "phone.json"), load(d / "summary.json")
    steps = "-" if s is None else str(s.get("steps", "-"))
    minutes = "-" if s is None else f"{s.get('train_minutes', 0):.1f}"
    kept = "-" if s is None or "best_is_start" not in s else ("zero-shot" if s["best_is_start"]
                                                               else f"step {s.get('best_step')}")
    ratio = "-" if p is None or not zero_shot_phone else f"{p['cer'] / zero_shot_phone:.2f}"
    best = None if s is None else (s.get("best_dev") or {}).get("cer", s.get("best_dev_cer"))
    picked = "-" if best is None or "start_dev" not in s else f"{best:.3f} ({s['start_dev']['cer']:.3f})"
    clean = "- | -" if r is None else f"{fmt(r, 'cer')} | {fmt(r, 'wer')}"
    phone = "- | -" if p is None else f"{fmt(p, 'cer')} | {fmt(p, 'wer')}"
    m = mobile_cer(d)
    mobile = "- | -" if m is None else f"{m:.3f} | " + ("-" if not zero_shot_mobile else f"{m / zero_shot_mobile:.2f}")
    decoding = next((x["decoding"] for x in (r, p) if x and x.get("decoding")), "-")
    return (f"| {LABELS.get(name, name)} | {steps} | {minutes} | {kept} | {picked} | {decoding} | {clean} | {phone} | "
            f"{ratio} | {mobile} |")


def phone_table(exp: Path, conditions: list[str]) -> str:
    zs = load(exp / "zeroshot_base" / "phone.json")
    lines = ["| condition | steps | minutes | checkpoint kept | dev CER, greedy, both (at start) | decoding | "
             "clean CER | clean WER | phone CER | phone WER | phone CER / zero-shot (beam 5) | mobile CER (AMR-NB, "
             "GSM twins) | mobile / zero-shot (beam 5) |",
             "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(lines + [phone_row(c, exp / c, None if zs is None else zs["cer"],
                                         mobile_cer(exp / "zeroshot_base")) for c in conditions])


def table(exp: Path, conditions: list[str]) -> str:
    lines = ["| condition | steps | minutes | checkpoint kept | decoding | real dev CER | real dev WER |",
             "|---|---:|---:|---|---|---:|---:|"]
    return "\n".join(lines + [row(c, exp / c) for c in conditions])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exp", type=Path, required=True)
    ap.add_argument("--conditions", required=True, help="space-separated condition names")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--phone", action="store_true", help="clean and telephone columns (stage 9)")
    a = ap.parse_args()
    text = (phone_table if a.phone else table)(a.exp, a.conditions.split())
    print(text)
    if a.readme is not None:
        update_readme(a.readme, {"phone" if a.phone else "whisper": text})


if __name__ == "__main__":
    main()
