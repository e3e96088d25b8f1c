"""Collect the sweep's results into a Markdown table (printed, and written into the README between markers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
LABELS = {"full": "full fine-tuning (all trainable)", "bottom0": "frontend frozen",
          "feature_extraction": "feature extraction (encoder frozen, head only)",
          "scratch": "random init, all trainable (no transfer)"}


def label(c: str) -> str:
    if c.startswith("bottom") and c != "bottom0":
        return f"frontend + bottom {c[6:]} of 4 blocks frozen"
    return LABELS.get(c, c)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", required=True)
    ap.add_argument("--conditions", required=True)
    ap.add_argument("--minutes", required=True)
    ap.add_argument("--readme")
    a = ap.parse_args()
    rows = ["| condition | trainable params | steps | train min | test CER | test WER | CER beam+LM | WER beam+LM |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in a.conditions.split():
        d = Path(a.exp) / c
        try:
            s = json.loads((d / "summary.json").read_text())
            g = json.loads((d / "test_greedy.json").read_text())
            b = json.loads((d / "test_beam.json").read_text())
        except FileNotFoundError as e:
            rows.append(f"| {label(c)} | missing: {e.filename} | | | | | | |")
            continue
        rows.append(f"| {label(c)} | {s['trainable_parameters']:,} | {s['steps']} | {s['train_minutes']:.1f} | "
                    f"{g['cer']:.3f} | {g['wer']:.3f} | {b['cer']:.3f} | {b['wer']:.3f} |")
    table = "\n".join(rows)
    print(table)
    if a.readme:
        path = Path(a.readme)
        text = path.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            path.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
