"""Write reports/index.html linking both reports, and print the demo's summary."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

from speech_tl.atomic import atomic_write_text


def best(runs: list[Path], results: str, key: str) -> tuple[str, dict] | None:
    scored = []
    for run in runs:
        f = run / results
        if f.is_file():
            scored.append((json.loads(f.read_text())[key], run.name, json.loads(f.read_text())))
    if not scored:
        return None
    scored.sort(key=lambda t: t[0])
    return scored[0][1], scored[0][2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", required=True)
    ap.add_argument("--reports", required=True)
    ap.add_argument("--seconds", type=int, default=0)
    a = ap.parse_args()
    exp, reports = Path(a.exp), Path(a.reports)
    lines = []
    for run, what in (("zeroshot_base", "Whisper base zero-shot (no training)"),
                      ("recommended", "transfer (recommended, adapted)"), ("ctc", "tiny.en + CTC transfer"),
                      ("ctc_scratch", "no transfer (random init)")):
        d = exp / "asr_de" / run
        parts = []
        if (d / "test_greedy.json").is_file():
            g = json.loads((d / "test_greedy.json").read_text())
            parts.append(f"held-out synthetic voices CER {g['cer']:.3f}, WER {g['wer']:.3f}")
        if (d / "real_beam.json").is_file():
            r = json.loads((d / "real_beam.json").read_text())
            parts.append(f"real speech (Common Voice dev) CER {r['cer']:.3f}, WER {r['wer']:.3f} ({r['decoding']})")
        if parts:
            lines.append(f"ASR (German) {what}: " + "; ".join(parts))
    spk = best(sorted((exp / "speaker_id").glob("*/")), "test.json", "eer")
    if spk:
        lines.append(f"Speakers (held-out synthetic voices): best {spk[0]}: EER {spk[1]['eer']:.3f}, "
                     f"minDCF {spk[1]['min_dcf']:.3f}")
    demo = exp / "speaker_id" / "enroll_demo.json"
    if demo.is_file():
        d = json.loads(demo.read_text())
        lines.append(f"Enrollment demo: {d['enrolled_speakers']} speakers enrolled, {d['identified_clips']} clips "
                     f"identified, top-1 accuracy {d['top1_accuracy']:.3f}")
    items = "".join(f"<li><a href=\"{name}.html\">{html.escape(title)}</a></li>" for name, title in
                    (("asr_de", "German ASR by transfer"), ("speaker_id", "Speaker identification by transfer"))
                    if (reports / f"{name}.html").is_file())
    summary = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    atomic_write_text(reports / "index.html", f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>speech-tl demo reports</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}}</style></head>
<body><h1>speech-tl demo reports</h1><ul>{items}</ul><h2>Summary</h2><ul>{summary}</ul>
<p>Demo budget; run <code>recipes/asr_de/run.sh</code> and <code>recipes/speaker_id/run.sh</code> for the measured
tables. Total time: {a.seconds // 60} min {a.seconds % 60} s.</p></body></html>
""")
    print("\n".join(lines))
    print(f"reports: {(reports / 'index.html').resolve()}  (demo took {a.seconds // 60} min {a.seconds % 60} s)")


if __name__ == "__main__":
    main()
