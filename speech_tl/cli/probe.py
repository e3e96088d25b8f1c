"""`speech-tl probe asr|speaker`: per-layer probes of a frozen backbone and a recommended freeze depth."""

from __future__ import annotations

from pathlib import Path

import click

from . import batch_size_option, check_outputs, device_option, main, overwrite_option, user_errors

_common = [
    click.argument("backbone"),
    click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="probe.json to write"),
    click.option("--eval", "eval_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Held-out utterances (default: held-out speakers of MANIFEST)."),
    click.option("--tolerance", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
                 help="Recommend the shallowest depth within this fraction of (worst - best) of the best."),
    click.option("--seed", type=int, default=0, show_default=True),
    device_option,
    batch_size_option,
    overwrite_option(help_text="Replace OUT if it exists."),
]


def common(fn):
    for deco in reversed(_common):
        fn = deco(fn)
    return fn


def show(r: dict) -> None:
    m = r["metric"]
    for row in r["layers"]:
        mark = "  <- recommended freeze depth" if row["depth"] == r["recommended_freeze_depth"] else ""
        click.echo(f"depth {row['depth']}: {m.upper()} {row[m]:.4f}{mark}")
    if r.get("note"):
        click.echo(f"note: {r['note']}")
    click.echo(f"recommended: freeze the frontend and the bottom {r['recommended_freeze_depth']} of "
               f"{r['num_layers']} layers (best probe at depth {r['best_depth']}; {r['seconds']:.0f} s)")


@main.group()
def probe() -> None:
    """Fit a light head on every layer of a frozen backbone: which layers to freeze, before fine-tuning."""


@probe.command("asr")
@common
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True, help="Training steps (heads).")
@click.option("--max-utterances", type=click.IntRange(min=1), default=800, show_default=True)
@click.option("--language", default=None, help="Alphabet of the vocabulary (default: the manifest's language).")
@user_errors
def probe_asr_cmd(backbone, manifest, out, eval_manifest, tolerance, seed, device, batch_size, overwrite, steps,
                  max_utterances, language):
    """Per-layer CER of small CTC character heads on BACKBONE's frozen layers, trained on MANIFEST."""
    from ..probe.asr import probe_asr

    check_outputs([out], overwrite, inputs=[manifest, eval_manifest])
    r = probe_asr(backbone, manifest, out, eval_manifest, steps=steps, max_utterances=max_utterances,
                  language=language, tolerance=tolerance, seed=seed,
                  device=device, feature_batch_size=batch_size)
    show(r)


@probe.command("speaker")
@common
@click.option("--max-utterances", type=click.IntRange(min=2), default=1500, show_default=True)
@user_errors
def probe_speaker_cmd(backbone, manifest, out, eval_manifest, tolerance, seed, device, batch_size, overwrite,
                      max_utterances):
    """Per-layer EER (statistics pooling + LDA fitted on MANIFEST's speakers, cosine) on held-out speakers."""
    from ..probe.speaker import probe_speaker

    check_outputs([out], overwrite, inputs=[manifest, eval_manifest])
    r = probe_speaker(backbone, manifest, out, eval_manifest, max_utterances=max_utterances, tolerance=tolerance,
                      seed=seed, device=device, batch_size=batch_size)
    show(r)
