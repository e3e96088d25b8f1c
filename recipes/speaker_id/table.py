"""Collect the speaker recipe's results into a Markdown table (printed, and written into the README)."""

from __future__ import annotations

import argparse
from pathlib import Path

from speech_tl.probe.result import probe_markdown
from speech_tl.report.readme import fmt, update_readme
from speech_tl.report.readme import load_result as load

LABELS = {"baseline": "GE2E unadapted (pretrained on English)", "full": "adapted, all layers trainable",
          "bottom0": "adapted, frontend frozen"}


def label(c: str, exp: Path | None = None) -> str:
    if c.endswith("-wise"):
        meta = load(exp / c / "best" / "meta.json") if exp else None
        alpha = meta["interpolation"]["alpha"] if meta else "?"
        return f"{label(c[:-5])}, then WiSE-FT alpha {alpha}"
    return LABELS.get(c, f"adapted, bottom {c[6:]} of 3 LSTM layers frozen" if c.startswith("bottom") else c)


DEPTH = {"full": 0, "bottom0": 0, "bottom1": 1, "bottom2": 2, "bottom3": 3}


def probe_table(exp: Path, conditions: list[str]) -> str | None:
    """The probe's curve beside the sweep's test EER at the same freeze depth."""
    p = load(exp / "probe" / "probe.json")
    if p is None:
        return None
    swept = {DEPTH[c]: (load(exp / c / "test.json") or {}).get("eer") for c in conditions if c in DEPTH}
    return probe_markdown(p, swept, "sweep: test EER, k layers frozen")


def xlang_table(exp: Path) -> str | None:
    xl = exp / "xlang"
    rows = ["| model | cross-language EER (en enrol, de test) | EER 95% CI | minDCF | trials |",
            "|---|---:|---:|---:|---:|"]
    names = {"baseline": "GE2E unadapted", "plain": "adapted (bottom 2 frozen), no domain confusion",
             "confusion": "adapted (bottom 2 frozen), with language confusion (GRL)"}
    found = False
    for c, label_ in names.items():
        r = load(xl / c / "xlang.json")
        found |= r is not None
        ci = f"[{r['eer_ci95'][0]:.3f}, {r['eer_ci95'][1]:.3f}]" if r and r.get("eer_ci95") else "-"
        rows.append(f"| {label_} | {fmt(r, 'eer')} | {ci} | {fmt(r, 'min_dcf')} | {r['num_trials'] if r else '-'} |")
    return "\n".join(rows) if found else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", required=True)
    ap.add_argument("--conditions", required=True)
    ap.add_argument("--minutes", required=True)
    ap.add_argument("--readme")
    a = ap.parse_args()
    exp = Path(a.exp)
    rows = ["| model | trainable params | train min | test EER | test minDCF | test ID acc | FSDD EER | FSDD minDCF |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ["baseline", *a.conditions.split()]:
        s = load(exp / c / "summary.json")
        t, f = load(exp / c / "test.json"), load(exp / c / "fsdd.json")
        params = f"{s['trainable_parameters']:,}" if s else "0"
        minutes = f"{s['train_minutes']:.1f}" if s else "0"
        rows.append(f"| {label(c, exp)} | {params} | {minutes} | {fmt(t, 'eer')} | {fmt(t, 'min_dcf')} | "
                    f"{fmt(t, 'identification_accuracy')} | {fmt(f, 'eer')} | {fmt(f, 'min_dcf')} |")
    demo = load(exp / "enroll_demo.json")
    table = "\n".join(rows)
    if demo:
        table += (f"\n\nEnrollment demo ({demo['model']}): {demo['enrolled_speakers']} held-out speakers enrolled with "
                  f"{demo['enroll_clips']} clips each; {demo['identified_clips']} other clips identified, top-1 "
                  f"accuracy {demo['top1_accuracy']:.3f}, {demo['unknown']} answered unknown "
                  f"(threshold {demo['threshold']:.3f}).")
    print(table)
    probe, xlang = probe_table(exp, a.conditions.split()), xlang_table(exp)
    for t in (probe, xlang):
        if t:
            print("\n" + t)
    if a.readme:
        update_readme(a.readme, {"results": table, "probe": probe, "xlang": xlang})


if __name__ == "__main__":
    main()
