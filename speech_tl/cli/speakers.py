"""`speech-tl enroll | identify | verify | speakers ...`: the speaker enrollment tool."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import UserError, batch_size_option, device_option, main, user_errors  # noqa: F401

# --------------------------------------------------------------------------- speakers: enroll / identify / verify

db_opt = click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path),
                      help="Speaker database (an SQLite file).")


def speaker_db_errors(fn):
    """:func:`user_errors`, plus SQLite failures (disk full, read-only file, ...) as one line naming the database."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import sqlite3

        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as e:
            raise UserError(f"{kwargs.get('db')}: speaker database error: {e}") from None

    return user_errors(wrapper)


def _load_speaker_embedder(source: str, db: Path, device: str = "auto"):
    """The embedder of a backbone source string or a speaker checkpoint folder, with a clear error."""
    from ..device import resolve_device
    from ..speaker.embedder import load_embedder
    from ..speaker.registry import SpeakerRegistryError

    dev = resolve_device(device)  # a device error is the user's, not the model's
    try:
        return load_embedder(source, dev)
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        raise SpeakerRegistryError(f"cannot load speaker model {source} (for {db}): {e}") from None


def _open_speaker_db(db: Path, device: str = "auto"):
    """An existing database and the embedder of the model it was created with."""
    from ..speaker.registry import SpeakerRegistry, SpeakerRegistryError

    reg = SpeakerRegistry(db, create=False)
    if reg.model is None:
        raise SpeakerRegistryError(f"{db}: no speakers enrolled yet; enroll some with `speech-tl enroll`")
    embedder = _load_speaker_embedder(reg.model.source, db, device)
    reg.check_model(embedder)  # the weights behind the source may have changed since
    return reg, embedder


@main.command("enroll")
@db_opt
@click.option("--speaker", required=True, help="Name of the speaker (created if new, else the clips are added).")
@click.option("--model", default=None,
              help="Backbone source or speaker checkpoint folder (default: the database's model; "
                   "ge2e:resemblyzer for a new database).")
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@device_option
@batch_size_option
@speaker_db_errors
def enroll_cmd(db, speaker, model, audio, device, batch_size):
    """Add AUDIO clips of a speaker to the database (created if missing).

    Every clip is checked (readable, long enough, not silent, not clipped); if any fails, nothing
    is enrolled. A database keeps the model it was created with; other models are refused.
    """
    from ..audio import AudioError, load_checked
    from ..speaker.registry import DEFAULT_MODEL, DEFAULT_THRESHOLD, SpeakerRegistry

    reg = SpeakerRegistry(db, create=False) if db.exists() else None
    have = reg.model if reg is not None else None
    embedder = _load_speaker_embedder(model or (have.source if have else DEFAULT_MODEL), db, device)
    if reg is not None:
        reg.check_model(embedder)
    waves, bad = [], []
    for path in audio:
        try:
            waves.append(load_checked(path))
        except AudioError as e:
            bad.append(str(e))
    if bad:
        raise UserError(f"nothing enrolled: {len(bad)} of {len(audio)} clip(s) refused: " + "; ".join(bad))
    embeddings = list(embedder.embed_many(waves, batch_size))
    if reg is None:  # created only now, so a refused first call leaves no file behind
        reg = SpeakerRegistry(db)
    with reg:
        r = reg.enroll(speaker, embeddings, [str(Path(p).resolve()) for p in audio], embedder)
        meta = reg.meta()
    click.echo(f"enrolled {r['added']} clip(s) for {r['speaker']} ({'new speaker, ' if r['created'] else ''}"
               f"{r['n_clips']} in total) -> {db}")
    if meta["threshold"] == DEFAULT_THRESHOLD and meta["threshold_provenance"].startswith("default"):
        click.echo(f"note: the decision threshold {DEFAULT_THRESHOLD} is an uncalibrated placeholder; "
                   f"set it with `speech-tl speakers calibrate --db {db} RESULTS.json`", err=True)


@main.command("identify")
@db_opt
@click.argument("audio", type=click.Path(path_type=Path))
@click.option("--top", "top_k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Candidates listed.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"speaker", "score", "threshold", "candidates": [{"speaker", "score"}]}.')
@device_option
@speaker_db_errors
def identify_cmd(db, audio, top_k, as_json, device):
    """Which enrolled speaker is AUDIO? The best one if its score is above the threshold, else 'unknown'."""
    reg, embedder = _open_speaker_db(db, device)
    with reg:
        r = reg.identify(embedder.embed_file(audio), top_k, model=embedder)
    if as_json:
        click.echo(json.dumps(r))
        return
    best = r["candidates"][0]
    if r["speaker"] == "unknown":
        click.echo(f"{audio}: unknown (best {best['speaker']} {best['score']:.3f} <= threshold {r['threshold']:.3f})")
    else:
        click.echo(f"{audio}: {r['speaker']} (score {r['score']:.3f} > threshold {r['threshold']:.3f})")
    width = max(len(c["speaker"]) for c in r["candidates"])
    for i, c in enumerate(r["candidates"], 1):
        click.echo(f"  {i:>2}. {c['speaker']:<{width}}  {c['score']:.3f}")


@main.command("verify")
@db_opt
@click.option("--speaker", required=True, help="The enrolled speaker AUDIO claims to be.")
@click.argument("audio", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help='Print {"speaker", "accepted", "score", "threshold"}.')
@device_option
@speaker_db_errors
def verify_cmd(db, speaker, audio, as_json, device):
    """Is AUDIO the enrolled SPEAKER? Exit status 0: accepted, 1: rejected, 2: error."""
    reg, embedder = _open_speaker_db(db, device)
    with reg:
        r = reg.verify(speaker, embedder.embed_file(audio), model=embedder)
    if as_json:
        click.echo(json.dumps(r))
    elif r["accepted"]:
        click.echo(f"accept: {audio} is {speaker} (score {r['score']:.3f} > threshold {r['threshold']:.3f})")
    else:
        click.echo(f"reject: {audio} is not {speaker} (score {r['score']:.3f} <= threshold {r['threshold']:.3f})")
    sys.exit(0 if r["accepted"] else 1)


@main.group()
def speakers() -> None:
    """List, remove and rename enrolled speakers; calibrate the decision threshold."""


@speakers.command("list")
@db_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@speaker_db_errors
def speakers_list_cmd(db, as_json):
    """The database's model, threshold and speakers (clips, date enrolled)."""
    from ..speaker.registry import SpeakerRegistry

    with SpeakerRegistry(db, create=False) as reg:
        meta, rows = reg.meta(), reg.speakers()
    if as_json:
        click.echo(json.dumps({"model_source": meta["model_source"], "model_fingerprint": meta["model_fingerprint"],
                               "embedding_dim": meta["embedding_dim"], "threshold": meta["threshold"],
                               "threshold_provenance": meta["threshold_provenance"],
                               "speakers": [{"speaker": n, "clips": k, "created": c} for n, k, c in rows]}))
        return
    model = (f"{meta['model_source']} (fingerprint {meta['model_fingerprint']}, dim {meta['embedding_dim']})"
             if meta["model_fingerprint"] else "none yet")
    click.echo(f"{db}: model {model}")
    click.echo(f"threshold {meta['threshold']:.4f}: {meta['threshold_provenance']}")
    width = max([len(n) for n, _, _ in rows] + [7])
    if rows:
        click.echo(f"{'speaker':<{width}}  {'clips':>5}  created")
    for n, k, c in rows:
        click.echo(f"{n:<{width}}  {k:>5}  {c}")
    click.echo(f"{len(rows)} speaker(s), {sum(k for _, k, _ in rows)} clip(s)")


@speakers.command("remove")
@db_opt
@click.argument("name")
@speaker_db_errors
def speakers_remove_cmd(db, name):
    """Delete speaker NAME and all its clips."""
    from ..speaker.registry import SpeakerRegistry

    with SpeakerRegistry(db, create=False) as reg:
        n = reg.remove(name)
    click.echo(f"removed {name} ({n} clip(s)) from {db}")


@speakers.command("rename")
@db_opt
@click.argument("old")
@click.argument("new")
@speaker_db_errors
def speakers_rename_cmd(db, old, new):
    """Rename speaker OLD to NEW (refused if NEW exists)."""
    from ..speaker.registry import SpeakerRegistry

    with SpeakerRegistry(db, create=False) as reg:
        reg.rename(old, new)
    click.echo(f"renamed {old} -> {new} in {db}")


@speakers.command("calibrate")
@db_opt
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target-far", type=float, default=None,
              help="Pick the threshold whose false-accept rate is at most this (default: the EER threshold).")
@speaker_db_errors
def speakers_calibrate_cmd(db, results, target_far):
    """Set the decision threshold from a speaker evaluation's RESULTS.json of the same model.

    RESULTS.json: "eer_threshold" (float), and for --target-far "calibration": {"thresholds": [...],
    "far": [...]}; optional "model_fingerprint" must match the database's model. See
    speech_tl/speaker/registry.py for the exact format.
    """
    from ..speaker.registry import SpeakerRegistry

    with SpeakerRegistry(db, create=False) as reg:
        r = reg.calibrate_threshold(results, target_far)
    click.echo(f"threshold {r['threshold']:.4f} ({r['provenance']}) -> {db}")
