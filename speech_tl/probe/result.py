"""``probe.json``: what both probes write (per-depth errors, the best and the recommended depth)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import atomic_write_text
from .recommend import recommend_depth


def probe_result(kind: str, backbone: str, metric: str, layers: list[dict], tolerance: float, started: float,
                 extra: dict) -> dict:
    """The ``probe.json`` mapping shared by both probes."""
    errors = [row[metric] for row in layers]
    depth = recommend_depth(errors, tolerance)
    best = min(range(len(errors)), key=errors.__getitem__)
    return {"task": "probe", "probe": kind, "backbone": backbone, "metric": metric, "num_layers": len(layers) - 1,
            "layers": layers, "best_depth": best, "recommended_freeze_depth": depth, "tolerance": tolerance,
            "rule": f"shallowest depth whose {metric} is within {tolerance:g} x (worst - best) of the best",
            "seconds": round(time.time() - started, 1), **extra}


def write_probe(out: str | Path, result: dict) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
