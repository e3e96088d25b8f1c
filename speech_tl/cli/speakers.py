"""`speech-tl enroll | identify | verify | speakers ...`: the speaker enrollment tool."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import (  # noqa: F401
    UserError,
    backend_option,
    batch_size_option,
    check_outputs,
    device_option,
    main,
    overwrite_option,
    user_errors,
)

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


def errors_exit_2(fn):
    """For `verify`, whose status 1 means "rejected": its errors exit 2 (as grep's do), so a script never reads
    an error as a rejection."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            e.exit_code = 2
            raise

    return wrapper


def model_for_reading(fn):
    """``--model`` of identify and verify: another copy of the database's model, e.g. its ONNX export."""
    return click.option("--model", default=None,
                        help="Run this model instead of the one the database names: the same weights in another "
                             "form (a folder written by `speech-tl export onnx`, or the checkpoint it came from); "
                             "a model with other weights is refused.")(fn)


def _service(db: Path, model: str | None = None, device: str = "auto", readonly: bool = False,
             batch_size: int = 16, **kwargs):
    """The database and its model, loaded once (:class:`speech_tl.speaker.service.SpeakerService`)."""
    from ..speaker.service import Limits, SpeakerService

    kwargs.setdefault("limits", Limits(max_seconds=float("inf")))  # the command line reads what it is given
    return SpeakerService(db, model=model, device=device, readonly=readonly, batch_size=batch_size, **kwargs)


def _manifest_items(path: Path, service):
    """``(speaker, clip, load)`` for each utterance of a manifest (segments with offset/duration kept)."""
    from ..manifest import read_manifest

    items = []
    for u in read_manifest(path):
        audio = u.audio_path()
        clip = str(audio.resolve()) + (f"@{u.offset:g}+{u.duration:g}" if u.offset is not None else "")
        offset, duration = (u.offset, u.duration) if u.offset is not None else (0.0, None)
        items.append((u.speaker, clip, lambda a=audio, o=offset, d=duration: service.load(a, o, d)))
    return items


@main.command("enroll")
@db_opt
@click.option("--speaker", default=None, help="Name of the speaker (created if new, else the clips are added).")
@click.option("--from-folder", "from_folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Enroll every speaker of a folder: DIR/<speaker>/<clips> (any depth, any audio format).")
@click.option("--from-manifest", "from_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Enroll every utterance of a manifest under its 'speaker' field.")
@click.option("--model", default=None,
              help="Backbone source or speaker checkpoint folder (default: the database's model; "
                   "ge2e:resemblyzer for a new database).")
@click.option("--json", "as_json", is_flag=True,
              help='Print the result as JSON: {"speaker", "created", "added", "n_clips"}; for a batch '
                   '{"speakers": [...], "refused": [{"speaker", "clip", "reason"}], "skipped": [...], '
                   '"enrolled_clips"}.')
@click.argument("audio", nargs=-1, type=click.Path(path_type=Path))
@device_option
@backend_option
@batch_size_option
@speaker_db_errors
def enroll_cmd(db, speaker, from_folder, from_manifest, model, as_json, audio, device, backend, batch_size):
    """Add AUDIO clips of a speaker to the database (created if missing), or a whole batch of speakers.

    \b
    One speaker: --speaker NAME AUDIO...; every clip is checked (readable, long enough, not silent,
    not clipped), and if any fails nothing is enrolled.
    A batch: --from-folder DIR (one sub-folder per speaker) or --from-manifest M.jsonl, with one model
    load; a clip that fails is listed with its reason and the others go on (exit status 1 only when
    nothing could be enrolled); clips already enrolled are skipped, so a batch can be run again.
    A database keeps the model it was created with; other models are refused.
    """
    from ..speaker.registry.auto_threshold import MIN_TARGET_TRIALS

    sources = [x for x in (audio or speaker, from_folder, from_manifest) if x]
    if len(sources) != 1:
        raise click.UsageError("give either --speaker NAME AUDIO..., or --from-folder DIR, or --from-manifest FILE")
    if audio and not speaker:
        raise click.UsageError("AUDIO clips need --speaker NAME")
    if speaker and not audio:
        raise click.UsageError("--speaker needs the AUDIO clips to enroll")
    if from_folder is not None or from_manifest is not None:
        from ..speaker.service import folder_items

        listed = folder_items(from_folder) if from_folder is not None else None  # a bad folder: before the model
        service = _service(db, model, device, batch_size=batch_size, backend=backend)
        if listed is not None:
            items = [(spk, clip, lambda p=path: service.load(p)) for spk, clip, path in listed]
        else:
            items = _manifest_items(from_manifest, service)
        r = service.enroll_many(items)
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            click.echo(f"enrolled {r['enrolled_clips']} clip(s) of {len(r['speakers'])} speaker(s) -> {db}"
                       + (f"; skipped {len(r['skipped'])} already enrolled" if r["skipped"] else ""))
            for bad in r["refused"]:
                click.echo(f"refused: {bad['reason']}")
        if r["refused"]:
            click.echo(f"{len(r['refused'])} clip(s) refused (listed above, with the reason)", err=True)
        if not r["speakers"] and not r["skipped"]:
            raise UserError(f"nothing enrolled: all {len(r['refused'])} clip(s) refused")
    else:
        from ..audio import AudioError

        service = _service(db, model, device, batch_size=batch_size, backend=backend)
        waves, bad = [], []
        for path in audio:
            try:
                waves.append(service.load(path))
            except AudioError as e:
                bad.append(str(e))
        if bad:
            raise UserError(f"nothing enrolled: {len(bad)} of {len(audio)} clip(s) refused: " + "; ".join(bad))
        r = service.enroll(speaker, waves, [str(Path(p).resolve()) for p in audio])
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            click.echo(f"enrolled {r['added']} clip(s) for {r['speaker']} ({'new speaker, ' if r['created'] else ''}"
                       f"{r['n_clips']} in total) -> {db}")
    meta = service.speakers()
    if meta["threshold_origin"] == "default":
        click.echo(f"note: the decision threshold {meta['threshold']:g} is an uncalibrated placeholder until 2 or more "
                   f"speakers with {MIN_TARGET_TRIALS} clips among those with 2 or more are enrolled (then it is "
                   f"calibrated on them); or set it with `speech-tl speakers calibrate --db {db} RESULTS.json`",
                   err=True)


@main.command("identify")
@db_opt
@click.argument("audio", type=click.Path(path_type=Path))
@click.option("--top", "top_k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Candidates listed.")
@click.option("--segments", is_flag=True,
              help="Who spoke when: split AUDIO at pauses (voice activity) and label each stretch of speech with "
                   "an enrolled speaker or 'unknown'.")
@click.option("--rttm", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --segments: also write them as NIST RTTM to this file.")
@click.option("--open-set", "open_set", type=click.BOOL, default=True, show_default=True,
              help="With --segments: a voice whose best enrolled match scores at or under the threshold is "
                   "'unknown'. false: closed set, every voice gets its best enrolled match (only enrolled people "
                   "speak).")
@click.option("--min-score", type=float, default=None,
              help="With --segments: name a voice above this score instead of the database's threshold.")
@overwrite_option
@click.option("--json", "as_json", is_flag=True,
              help='Print {"speaker", "score", "threshold", "candidates": [{"speaker", "score"}]}; with --segments '
                   '{"segments": [{"start", "end", "speaker", "score"}]} (seconds).')
@model_for_reading
@device_option
@backend_option
@speaker_db_errors
def identify_cmd(db, audio, top_k, segments, rttm, open_set, min_score, overwrite, as_json, model, device, backend):
    """Which enrolled speaker is AUDIO? The best one if its score is above the threshold, else 'unknown'.

    Reads the database only (it may be on read-only media)."""
    if rttm is not None and not segments:
        raise click.UsageError("--rttm needs --segments")
    if (min_score is not None or not open_set) and not segments:
        raise click.UsageError("--open-set and --min-score are for --segments")
    if rttm is not None:
        check_outputs([rttm], overwrite, inputs=[audio, db])
    service = _service(db, model, device=device, readonly=True, backend=backend)
    if segments:
        from ..atomic import atomic_write_text
        from ..speaker.segments import to_rttm

        r = service.segments(service.load(audio), open_set=open_set, min_score=min_score)
        if rttm is not None:
            atomic_write_text(rttm, to_rttm(r["segments"], Path(audio).stem))
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
            return
        how = "closed set: every voice named" if not r["open_set"] else (
            f"named above {r['threshold']:.3f} ({r['threshold_origin']})")
        click.echo(f"{audio}: {len(r['segments'])} segments, {how}")
        for seg in r["segments"]:
            click.echo(f"{seg['start']:8.2f} {seg['end']:8.2f}  {seg['speaker']}  {seg['score']:.3f}  "
                       f"voice {seg['cluster']}")
        return
    r = service.identify(service.load(audio), top_k)
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
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
@model_for_reading
@device_option
@backend_option
@errors_exit_2
@speaker_db_errors
def verify_cmd(db, speaker, audio, as_json, model, device, backend):
    """Is AUDIO the enrolled SPEAKER? Exit status 0: accepted, 1: rejected, 2: error.

    Reads the database only (it may be on read-only media)."""
    service = _service(db, model, device=device, readonly=True, backend=backend)
    r = service.verify(speaker, service.load(audio))
    speaker = r["speaker"]  # the name as stored (normalised)
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
    elif r["accepted"]:
        click.echo(f"accept: {audio} is {speaker} (score {r['score']:.3f} > threshold {r['threshold']:.3f})")
    else:
        click.echo(f"reject: {audio} is not {speaker} (score {r['score']:.3f} <= threshold {r['threshold']:.3f})")
    sys.exit(0 if r["accepted"] else 1)


@main.command("serve")
@db_opt
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File whose first line is the bearer token for every call (default: $SPEECH_TL_TOKEN).")
@click.option("--read-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File with a second token that may only read: identify, verify, list "
                   "(default: $SPEECH_TL_READ_TOKEN, else none).")
@click.option("--no-auth", is_flag=True, help="No token at all; only with a loopback --host.")
@click.option("--model", default=None, help="Model for a new database (default ge2e:resemblyzer); an existing "
                                            "database keeps its own.")
@click.option("--read-only", "read_only", is_flag=True, help="Refuse every change (enroll, remove, rename, "
                                                              "calibrate); the database may be on read-only media.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=50.0, show_default=True,
              help="Largest request body.")
@click.option("--max-seconds", type=click.FloatRange(min=1.0), default=600.0, show_default=True,
              help="Longest clip, checked from its header before decoding.")
@device_option
@backend_option
@speaker_db_errors
def serve_cmd(db, host, port, token_file, read_token_file, no_auth, model, read_only, max_upload_mb, max_seconds,
              device, backend):
    """An HTTP service and web page for enrolling and identifying speakers, with the model kept loaded.

    \b
    The page: http://HOST:PORT/ . The JSON API (/api/enroll, /api/identify, /api/verify, /api/speakers, ...)
    answers in the shapes the commands print with --json; see speech_tl/speaker/server.py.
    Every API call needs 'Authorization: Bearer TOKEN'; --no-auth is accepted only on a loopback host.
    """
    from ..speaker.server import READ_TOKEN_ENV, TOKEN_ENV, Tokens, is_loopback, read_token, serve
    from ..speaker.service import Limits

    if no_auth:
        if token_file or read_token_file:
            raise click.UsageError("--no-auth and a token file exclude each other")
        if not is_loopback(host):
            raise UserError(f"--no-auth only on a loopback host (127.0.0.1, ::1, localhost), not {host}: anyone "
                            "who can reach it could enroll and remove speakers. Give --token-file")
        tokens = Tokens(None)
    else:
        write = read_token(token_file, TOKEN_ENV)
        if write is None:
            raise UserError(f"no access token: give --token-file FILE or set ${TOKEN_ENV} (or --no-auth on a "
                            "loopback host)")
        read = read_token(read_token_file, READ_TOKEN_ENV)
        if read == write:
            raise UserError("the read token equals the write token; give a different one, or none")
        tokens = Tokens(write, read)
    service = _service(db, model, device, readonly=read_only, serving=True, backend=backend,
                       limits=Limits(max_seconds=max_seconds, max_upload_bytes=int(max_upload_mb * 1024 * 1024)))
    click.echo(f"serving {db} ({service.embedder.source}) on http://{host}:{port}/ "
               f"({'token required' if tokens.required else 'no authentication'})", err=True)
    serve(service, tokens, host, port)


@main.group()
def speakers() -> None:
    """List, remove and rename enrolled speakers; calibrate the decision threshold."""


@speakers.command("list")
@db_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@speaker_db_errors
def speakers_list_cmd(db, as_json):
    """The database's model, threshold and speakers (clips, date enrolled). Reads the database only."""
    from ..speaker.registry import SpeakerRegistry
    from ..speaker.service import listing

    with SpeakerRegistry(db, create=False, readonly=True) as reg:
        meta, rows = reg.meta(), reg.speakers()
        listed = listing(reg)
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    model = (f"{meta['model_source']} (fingerprint {meta['model_fingerprint']}, dim {meta['embedding_dim']})"
             if meta["model_fingerprint"] else "none yet")
    click.echo(f"{db}: model {model}")
    scoring = (f"AS-Norm against {listed['cohort_size']} cohort clip(s)" if meta["score"] == "as-norm" else "cosine")
    click.echo(f"scores: {scoring}; threshold {meta['threshold']:.4f} ({meta['threshold_origin']}): "
               f"{meta['threshold_provenance']}")
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
    from ..speaker.registry import SpeakerRegistry, normalize_name

    with SpeakerRegistry(db, create=False) as reg:
        n = reg.remove(name)
    click.echo(f"removed {normalize_name(name)} ({n} clip(s)) from {db}")


@speakers.command("rename")
@db_opt
@click.argument("old")
@click.argument("new")
@speaker_db_errors
def speakers_rename_cmd(db, old, new):
    """Rename speaker OLD to NEW (refused if NEW exists)."""
    from ..speaker.registry import SpeakerRegistry, normalize_name

    with SpeakerRegistry(db, create=False) as reg:
        reg.rename(old, new)
    click.echo(f"renamed {normalize_name(old)} -> {normalize_name(new)} in {db}")


@speakers.command("cohort")
@db_opt
@click.option("--from-folder", "from_folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Every audio file below this folder (sub-folders named after speakers are checked against the "
                   "enrolled ones).")
@click.option("--from-manifest", "from_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Every utterance of a manifest.")
@click.option("--clear", is_flag=True, help="Remove the cohort: scores are cosine again.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@device_option
@backend_option
@batch_size_option
@speaker_db_errors
def speakers_cohort_cmd(db, from_folder, from_manifest, clear, as_json, device, backend, batch_size):
    """Score with AS-Norm against a cohort of OTHER speakers' clips (or --clear it).

    \b
    With a cohort, identify and verify answer adaptive s-norm scores: each cosine is compared with the
    scores of the 100 cohort clips closest to either side. On real speech this lowered GE2E's EER from
    0.114 to 0.091 (Common Voice) and 0.171 to 0.128 (FSDD); see recipes/speaker_id/README.md. A few
    hundred clips of speakers like the ones you enroll (language, microphone) make a good cohort.
    Adding the first cohort sets the threshold to an uncalibrated placeholder (0 for AS-Norm scores):
    calibrate it with an evaluation run with --cohort.
    """
    if sum(x is not None and x is not False for x in (from_folder, from_manifest, clear or None)) != 1:
        raise click.UsageError("give one of --from-folder DIR, --from-manifest FILE or --clear")
    service = _service(db, device=device, batch_size=batch_size, backend=backend)
    if clear:
        r = service.clear_cohort()
        click.echo(json.dumps(r) if as_json else f"removed the cohort ({r['removed']} clip(s)); scores are cosine "
                                                  f"again, threshold {r['threshold']:.4f} (placeholder) -> {db}")
        return
    if from_folder is not None:
        from ..speaker.service import audio_files

        root = from_folder.resolve()
        items = [(p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "", str(p.resolve()),
                  lambda p=p: service.load(p)) for p in audio_files(from_folder)]
    else:
        items = _manifest_items(from_manifest, service)
    r = service.add_cohort(items)
    if as_json:
        click.echo(json.dumps(r, ensure_ascii=False))
    else:
        click.echo(f"cohort: {r['added']} clip(s) added, {r['cohort_size']} in all; scores: {r['score']}, "
                   f"threshold {r['threshold']:.4f} -> {db}" + (f"; skipped {len(r['skipped'])} already there"
                                                                 if r["skipped"] else ""))
        for bad in r["refused"]:
            click.echo(f"refused: {bad['clip']}: {bad['reason']}")
    if r["added"] and r["score"] == "as-norm" and r["cohort_size"] == r["added"] and \
            service.speakers()["threshold_origin"] == "default":
        click.echo("note: scores are AS-Norm now; the threshold is an uncalibrated placeholder: calibrate it with "
                   f"`speech-tl speakers calibrate --db {db} RESULTS.json` from `speech-tl evaluate speaker ... "
                   "--cohort`", err=True)


@speakers.command("calibrate")
@db_opt
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--target-far", type=float, default=None,
              help="Pick the threshold whose false-accept rate is at most this (default: the EER threshold).")
@click.option("--auto", "auto", is_flag=True,
              help="Forget a set threshold: it comes from data again (the enrolled clips, or the model's shipped "
                   "calibration).")
@speaker_db_errors
def speakers_calibrate_cmd(db, results, target_far, auto):
    """Set the decision threshold from a speaker evaluation's RESULTS.json of the same model, or (--auto) let it
    come from data again.

    Without either, a database's threshold already comes from data: the enrolled clips themselves (leave-one-out
    trials) once there are enough, else the model's shipped calibration (GE2E), else a placeholder.
    RESULTS.json: "eer_threshold" (float), and for --target-far "calibration": {"thresholds": [...],
    "far": [...]}; optional "model_fingerprint" must match the database's model. See
    speech_tl/speaker/registry/thresholds.py for the exact format.
    """
    from ..speaker.registry import SpeakerRegistry

    if (results is None) == (not auto):
        raise click.UsageError("give RESULTS.json, or --auto")
    with SpeakerRegistry(db, create=False) as reg:
        if auto:
            m = reg.use_automatic_threshold()
            click.echo(f"threshold {m['threshold']:.4f} ({m['threshold_origin']}: {m['threshold_provenance']}) "
                       f"-> {db}")
            return
        r = reg.calibrate_threshold(results, target_far)
    click.echo(f"threshold {r['threshold']:.4f} ({r['provenance']}) -> {db}")
