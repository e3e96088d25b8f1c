"""Collect the ASR recipe's results into Markdown tables (printed, and written into the README between markers).

Blocks: ``results`` (the freeze sweep), ``probe`` (layer probe beside the sweep), ``confusion`` (English
source data with and without domain confusion), ``multitask`` (shared encoder against single-task runs) and
``levers`` (synthetic-to-real transfer, judged on real German speech). Every row has synthetic-test and
real-dev columns ("-" where the real dev set was not there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speech_tl.probe.result import probe_markdown
from speech_tl.report.readme import fmt, update_readme
from speech_tl.report.readme import load_result as load

LABELS = {"full": "full fine-tuning (all trainable)", "bottom0": "frontend frozen",
          "feature_extraction": "feature extraction (encoder frozen, head only)",
          "scratch": "random init, all trainable (no transfer)",
          "recommended": "recommended transfer (conf/transfer.yaml: Whisper base with its decoder)",
          "ctc": "tiny.en + CTC head (conf/transfer_ctc.yaml)",
          "ctc_scratch": "the same network from random init, all trainable (no transfer)"}
DEPTH = {"full": 0, "bottom0": 0, "bottom1": 1, "bottom2": 2, "bottom3": 3, "feature_extraction": 4}


def label(c: str) -> str:
    if c.startswith("bottom") and c != "bottom0":
        return f"frontend + bottom {c[6:]} of 4 blocks frozen"
    return LABELS.get(c, c)


def asr_row(name: str, d: Path) -> str:
    """Synthetic test (greedy, beam + LM) and real dev speech (greedy, beam + LM) of one run folder."""
    s, g, b = load(d / "summary.json"), load(d / "test_greedy.json"), load(d / "test_beam.json")
    if s is None:
        return f"| {name} | missing results in {d} |" + " |" * 10
    rg, rb = load(d / "real_greedy.json"), load(d / "real_beam.json")
    return (f"| {name} | {s['trainable_parameters']:,} | {s['steps']} | {s['train_minutes']:.1f} | "
            f"{fmt(g, 'cer')} | {fmt(g, 'wer')} | {fmt(b, 'cer')} | {fmt(b, 'wer')} | "
            f"{fmt(rg, 'cer')} | {fmt(rg, 'wer')} | {fmt(rb, 'cer')} | {fmt(rb, 'wer')} |")


HEADER = ["| condition | trainable params | steps | train min | test CER | test WER | CER beam+LM | WER beam+LM "
          "| real CER | real WER | real CER beam+LM | real WER beam+LM |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def sweep_table(exp: Path, conditions: list[str]) -> str:
    return "\n".join(HEADER + [asr_row(label(c), exp / c) for c in conditions])


def probe_table(exp: Path, conditions: list[str], name: str = "probe", results: str = "test_greedy.json",
                what: str = "test") -> str | None:
    """The probe's curve beside the sweep's CER (``results`` of each run) at the same freeze depth."""
    p = load(exp / name / "probe.json")
    if p is None:
        return None
    swept = {DEPTH[c]: (load(exp / c / results) or {}).get("cer") for c in conditions if c in DEPTH}
    return probe_markdown(p, swept, f"sweep: {what} CER, k blocks frozen (greedy)")


def confusion_table(exp: Path) -> str | None:
    if not (exp / "bilingual").is_dir():
        return None
    return "\n".join(HEADER + [
        asr_row("German only, bottom 2 frozen (the sweep's run)", exp / "bottom2"),
        asr_row("German + English CTC, bottom 2 frozen", exp / "bilingual"),
        asr_row("German + English CTC + language confusion (GRL)", exp / "bilingual_confusion")])


def multitask_table(exp: Path) -> str | None:
    mt = exp / "multitask"
    if not mt.is_dir():
        return None
    runs = [("1.0 CTC + 1.0 AAM", mt), ("1.0 CTC + 0.1 AAM", exp / "multitask_spk0.1")]
    asr = "\n".join(HEADER + [asr_row("single-task ASR, bottom 2 frozen (the sweep's run)", exp / "bottom2")]
                     + [asr_row(f"multitask, {w}, bottom 2 frozen", d / "asr") for w, d in runs if d.is_dir()])
    rows = ["| speaker model on the Whisper encoder | train min | test EER | test minDCF | test ID acc |",
            "|---|---:|---:|---:|---:|"]
    for name, d in [("unadapted encoder, mean-pooled", exp / "speaker_whisper_unadapted"),
                    ("single-task speaker, bottom 2 frozen", exp / "speaker_whisper")] + [
                    (f"multitask, {w}, bottom 2 frozen", d / "speaker") for w, d in runs if d.is_dir()]:
        s, t = load(d / "summary.json"), load(d / "test.json")
        minutes = f"{s['train_minutes']:.1f}" if s else "0"
        rows.append(f"| {name} | {minutes} | {fmt(t, 'eer')} | {fmt(t, 'min_dcf')} | "
                    f"{fmt(t, 'identification_accuracy')} |")
    return asr + "\n\n" + "\n".join(rows)


LEVERS = [("clean synthetic corpus (7 voices), bottom 2 of 4 blocks frozen", "clean_b2"),
          ("realistic channels + many voices, bottom 2 frozen", "real_b2"),
          ("realistic channels + many voices, bottom 3 frozen", "real_b3"),
          ("... bottom 3 frozen + hidden-state masks (cache kept)", "real_b3_mask"),
          ("... bottom 3 frozen + sim-to-real domain confusion (untranscribed real audio)", "real_b3_dann"),
          ("realistic channels + many voices, whole encoder frozen (head only)", "real_fe"),
          ("WiSE-FT of 'bottom 3 frozen', alpha 0.25", "real_b3_wise0.25"),
          ("WiSE-FT of 'bottom 3 frozen', alpha 0.5", "real_b3_wise0.5"),
          ("WiSE-FT of 'bottom 3 frozen', alpha 0.75", "real_b3_wise0.75")]


def levers_table(exp: Path) -> str | None:
    """Stage 7: each lever at the same budget, on the synthetic test and the real dev set."""
    levers = exp / "levers"
    if not levers.is_dir():
        return None
    return "\n".join(HEADER + [asr_row(name, levers / d) for name, d in LEVERS if (levers / d).is_dir()])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", required=True)
    ap.add_argument("--conditions", required=True)
    ap.add_argument("--minutes", required=True)
    ap.add_argument("--readme")
    a = ap.parse_args()
    exp, conditions = Path(a.exp), a.conditions.split()
    blocks = {"results": sweep_table(exp, conditions), "probe": probe_table(exp, conditions),
              "probe_real": probe_table(exp, conditions, "probe_real", "real_greedy.json", "real dev"),
              "confusion": confusion_table(exp), "multitask": multitask_table(exp), "levers": levers_table(exp)}
    print("\n\n".join(t for t in blocks.values() if t))
    if a.readme:
        update_readme(a.readme, blocks)


if __name__ == "__main__":
    main()
