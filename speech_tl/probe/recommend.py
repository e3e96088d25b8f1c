"""From per-depth probe errors to a recommended freeze depth.

Freezing a layer is worth it while the representation below it is still general: the light
probe on top of it does nearly as well as on any deeper layer. Freezing past the point where
the probe stops improving buys no better features and takes adaptation capacity away; the
layers above that point are the ones to train. So the recommendation is the *shallowest* depth
whose probe error is within ``tolerance`` of the spread between the best and the worst depth:

    k* = min { k : err[k] <= best + tolerance * (worst - best) }

``tolerance`` 0 is the arg-min (freeze everything up to the best layer); the default 0.1 was set
before the recipes' sweeps were run and is not tuned to them.
"""

from __future__ import annotations

DEFAULT_TOLERANCE = 0.1


def recommend_depth(errors: list[float], tolerance: float = DEFAULT_TOLERANCE) -> int:
    """Index into ``errors`` (per depth 0..L, lower is better) of the recommended freeze depth."""
    if not errors:
        raise ValueError("no probe errors to recommend from")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    best, worst = min(errors), max(errors)
    limit = best + tolerance * (worst - best)
    return next(k for k, e in enumerate(errors) if e <= limit + 1e-12)
