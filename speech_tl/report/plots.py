"""The report's figures as PNG bytes (matplotlib's Agg canvas, no pyplot state, no display needed).

Labels and titles hold run names and file names as found; every text is drawn as written, never parsed as
mathtext (a ``$`` in a run name would otherwise be read as TeX and could fail the whole report).
"""

from __future__ import annotations

import functools
import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

DPI = 100
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _literal_text(fn):
    """Run a plotting function with ``text.parse_math`` off: its texts (run names included) are drawn as is."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no "Software"/date metadata: the same results give the same bytes
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


@_literal_text
def training_curves(log: list[dict], title: str) -> bytes | None:
    """Training loss (left) and the dev metrics logged at each evaluation (right) over steps."""
    train = [r for r in log if isinstance(r.get("loss"), int | float) and "step" in r]
    evals = [r for r in log if "step" in r and any(k.startswith("dev_") for k in r)]
    if not train and not evals:
        return None
    fig = Figure(figsize=(9.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    if train:
        ax1.plot([r["step"] for r in train], [r["loss"] for r in train], color=COLORS[0], lw=1.5)
        if min(r["loss"] for r in train) > 0 and max(r["loss"] for r in train) / min(r["loss"] for r in train) > 20:
            ax1.set_yscale("log")
    else:
        ax1.text(0.5, 0.5, "no training-loss lines logged", ha="center", va="center", transform=ax1.transAxes)
    ax1.set(xlabel="step", ylabel="training loss", title="loss")
    keys = sorted({k for r in evals for k, v in r.items() if k.startswith("dev_") and isinstance(v, int | float)})
    for c, key in enumerate(keys):
        pts = [(r["step"], r[key]) for r in evals if isinstance(r.get(key), int | float)]
        ax2.plot(*zip(*pts, strict=True), marker="o", ms=4, lw=1.5, color=COLORS[(c + 1) % len(COLORS)],
                 label=key.removeprefix("dev_").upper())
    if keys:
        ax2.legend(loc="best", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no dev evaluations logged", ha="center", va="center", transform=ax2.transAxes)
    ax2.set(xlabel="step", ylabel="dev error rate", title="dev set")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


@_literal_text
def comparison_bars(labels: list[str], series: list[tuple[str, list[float | None], list[list[float] | None]]],
                    best: int | None, ylabel: str, title: str) -> bytes:
    """Grouped bars: one group per run (``labels``), one bar per ``(name, values, ci95s)`` series.

    The bars of run ``best`` get a thick black edge. Missing values (None) leave a gap.
    """
    n_series = max(1, len(series))
    width = 0.8 / n_series
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2.5), 3.8))
    ax = fig.subplots()
    top = 0.0
    for s, (_name, values, cis) in enumerate(series):
        pos = x - 0.4 + width * (s + 0.5)
        for k, v in enumerate(values):
            if v is None:
                continue
            ci = cis[k] if cis and cis[k] else None
            err, label_at = None, v
            if ci is not None and len(ci) == 2:
                err = [[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]]
                label_at = max(v, ci[1])
            ax.bar(pos[k], v, width * 0.92, color=COLORS[s % len(COLORS)], yerr=err, capsize=3,
                   edgecolor="black" if k == best else "none", linewidth=2.0 if k == best else 0)
            ax.annotate(f"{v:.3f}", (pos[k], label_at), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)
            top = max(top, label_at)
    for k in range(len(labels)):
        if all(vals[k] is None for _, vals, _ in series):
            ax.text(x[k], 0.01, "no results", ha="center", va="bottom", fontsize=8, color="grey",
                    transform=ax.get_xaxis_transform())
    ax.set_xticks(x, [("[best] " if k == best else "") + lab for k, lab in enumerate(labels)], fontsize=8)
    ax.set_ylim(0, max(0.05, top * 1.15))
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    if len(labels) == 1:  # one run: a bar of normal width, not the whole axis
        ax.set_xlim(-1.5, 1.5)
    if series:  # proxies: the best run's black edge is not part of a series' look; outside, clear of the bars
        ax.legend(handles=[Patch(color=COLORS[s % len(COLORS)], label=name) for s, (name, _, _) in enumerate(series)],
                  fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


PROBIT_TICKS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99]


@_literal_text
def det_curve(curves: list[tuple[str, list[float], list[float], float | None]], title: str) -> bytes:
    """DET curves (miss rate over false-alarm rate) on normal-deviate (probit) axes.

    ``curves``: ``(label, far, frr, eer)``. Rates of exactly 0 or 1 cannot be drawn on probit axes; they are
    clipped to the axes' edge: half the smallest non-zero rate (at least 0.05 %, at most 1 %).
    """
    from scipy.stats import norm

    fig = Figure(figsize=(4.8, 4.6))
    ax = fig.subplots()
    # the axes start near the smallest rate the trials can show (no empty decade of ticks for small lists)
    positive = [v for _, far, frr, _ in curves for v in (*far, *frr) if v > 0]
    lo = max(5e-4, min(0.01, 0.5 * min(positive))) if positive else 0.01
    hi = 1 - 5e-4
    for c, (label, far, frr, e) in enumerate(curves):
        fa, fr = np.clip(np.asarray(far, float), lo, hi), np.clip(np.asarray(frr, float), lo, hi)
        ax.plot(norm.ppf(fa), norm.ppf(fr), color=COLORS[c % len(COLORS)], lw=1.8,
                label=label + (f" (EER {e:.3f})" if e is not None else ""))
        if e is not None:
            p = norm.ppf(float(np.clip(e, lo, hi)))
            ax.plot([p], [p], "o", color=COLORS[c % len(COLORS)], ms=5)
    ticks = [t for t in PROBIT_TICKS if lo <= t <= hi]
    pos = norm.ppf(ticks)
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(pos, labels, fontsize=7)
    ax.set_yticks(pos, labels, fontsize=7)
    lim = (norm.ppf(lo), norm.ppf(0.99))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.plot(lim, lim, ls=":", color="grey", lw=1, label="EER line (FAR = FRR)")
    ax.set(xlabel="false acceptance rate (%)", ylabel="false rejection (miss) rate (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


@_literal_text
def score_histogram(bins: list[float], target: list[int], nontarget: list[int], threshold: float | None,
                    title: str) -> bytes:
    """Target and non-target score distributions (each as fractions of its trials) and the EER threshold."""
    edges = np.asarray(bins, float)
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    for counts, label, color in ((nontarget, "non-target (different speaker)", COLORS[3]),
                                 (target, "target (same speaker)", COLORS[2])):
        c = np.asarray(counts, float)
        frac = c / c.sum() if c.sum() > 0 else c
        ax.stairs(frac, edges, fill=True, alpha=0.45, color=color, label=f"{label}, {int(c.sum())} trials")
        ax.stairs(frac, edges, color=color, lw=1.2)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"EER threshold {threshold:.3f}")
    ax.set(xlabel="cosine score", ylabel="fraction of trials", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _png(fig)


@_literal_text
def probe_curve(depths: list[int], errors: list[float], metric: str, recommended: int, best: int,
                finetuned: list[tuple[int, float]], title: str) -> bytes:
    """Probe error over freeze depth; the recommended depth marked; fine-tuned runs' test errors when given."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ax.plot(depths, errors, marker="o", lw=1.8, color=COLORS[0], label=f"probe {metric.upper()} (frozen backbone)")
    ax.axvline(recommended, color=COLORS[2], ls="--", lw=1.2, label=f"recommended freeze depth {recommended}")
    ax.plot([best], [errors[depths.index(best)]], marker="*", ms=13, color=COLORS[1], ls="none",
            label=f"best probe (depth {best})")
    if finetuned:
        xs, ys = zip(*sorted(finetuned), strict=True)
        ax.plot(xs, ys, marker="s", lw=1.2, color=COLORS[3], label=f"fine-tuned, bottom k frozen ({metric.upper()})")
    ax.set(xlabel="depth k (frontend + bottom k layers)", ylabel=metric.upper(), title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _png(fig)
