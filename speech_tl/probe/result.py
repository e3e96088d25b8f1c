"""``probe.json``: what both probes write (per-depth errors, the best and the recommended depth)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import atomic_write_text
from .recommend import recommend_depth

FLAT = 0.01  # a spread of probe errors below this is noise, not a curve


def probe_result(kind: str, backbone: str, metric: str, layers: list[dict], tolerance: float, started: float,
                 extra: dict) -> dict:
    """The ``probe.json`` mapping shared by both probes."""
    errors = [row[metric] for row in layers]
    depth = recommend_depth(errors, tolerance)
    best = min(range(len(errors)), key=errors.__getitem__)
    flat = max(errors) - min(errors) < FLAT
    note = (f"the probe {metric} differs by less than {FLAT} between depths: the recommendation says little "
            "(did the heads learn? try more --steps or data)") if flat else ""
    return {"task": "probe", "probe": kind, "backbone": backbone, "metric": metric, "num_layers": len(layers) - 1,
            "layers": layers, "best_depth": best, "recommended_freeze_depth": depth, "tolerance": tolerance,
            "rule": f"shallowest depth whose {metric} is within {tolerance:g} x (worst - best) of the best",
            "seconds": round(time.time() - started, 1), "note": note, **extra}


def write_probe(out: str | Path, result: dict) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")


def probe_markdown(probe: dict, swept: dict[int, float | None], what: str) -> str:
    """Markdown: probe error per depth beside ``swept[k]`` (the sweep's test error with k layers frozen), and
    whether the recommendation is within one layer of the sweep's best depth. ``what`` names the sweep column."""
    m = probe["metric"]
    extra = [k for k in ("wer", "eer_no_lda") if k in probe["layers"][0]]
    names = {"wer": "probe WER", "eer_no_lda": "probe EER without LDA"}
    rows = [f"| depth k | probe {m.upper()} | " + "".join(f"{names[k]} | " for k in extra) + f"{what} |",
            "|---:|---:|" + "---:|" * len(extra) + "---:|"]
    rec = probe["recommended_freeze_depth"]
    for r in probe["layers"]:
        mark = " (recommended)" if r["depth"] == rec else ""
        v = swept.get(r["depth"])
        rows.append(f"| {r['depth']}{mark} | {r[m]:.3f} | " + "".join(f"{r[k]:.3f} | " for k in extra)
                    + ("-" if v is None else f"{v:.3f}") + " |")
    scored = {k: v for k, v in swept.items() if v is not None}
    if not scored:
        return "\n".join(rows)
    best = min(scored, key=scored.get)
    verdict = "agrees within one layer" if abs(rec - best) <= 1 else "does NOT agree within one layer"
    return "\n".join(rows) + (f"\n\nThe probe recommends freezing {rec} layer(s); the sweep's best froze {best} "
                              f"({verdict}). Probe time {probe['seconds'] / 60:.1f} min.")
