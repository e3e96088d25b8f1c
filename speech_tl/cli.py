"""The ``speech-tl`` command: a thin wrapper around the package's functions.

Heavy imports (torch, soundfile) happen inside the commands, so ``--help`` is quick.
Errors a user can act on are printed as one ``error:`` line (exit status 2), no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click


class UserError(click.ClickException):
    exit_code = 2


def user_errors(fn):
    """Turn the package's expected errors into clean one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .audio import AudioError
        from .manifest import ManifestError
        from .prepare.tts import ToolMissing

        try:
            return fn(*args, **kwargs)
        except (ManifestError, AudioError, ToolMissing, FileNotFoundError, ValueError, RuntimeError) as e:
            raise UserError(str(e)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="speech-tl")
def main() -> None:
    """speech-tl: adapt English-pretrained speech models to new tasks.

    Stages: prepare manifests -> train (adapt) -> evaluate -> report.
    """


# --------------------------------------------------------------------------- prepare

@main.group()
def prepare() -> None:
    """Write JSONL manifests for a corpus (or synthesise an offline one)."""


out_dir_opt = click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="Folder for the manifests.")
workers_opt = click.option("--workers", type=int, default=None, help="Processes (default: CPU cores, at most 8).")
force_opt = click.option("--force", is_flag=True, help="Redo even if finished outputs exist.")
corpus_arg = click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


def _report(result) -> None:
    click.echo(result.summary())


@prepare.command("commonvoice")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="de", show_default=True, help="Language code of this Common Voice folder.")
@click.option("--use-validated", is_flag=True, help="Train on validated.tsv minus dev/test clips and speakers.")
@workers_opt
@force_opt
@user_errors
def prepare_commonvoice_cmd(corpus_dir, out_dir, lang, use_validated, workers, force):
    """Common Voice: CORPUS_DIR holds train.tsv, dev.tsv, test.tsv and clips/."""
    from .prepare import prepare_commonvoice

    _report(prepare_commonvoice(corpus_dir, out_dir, lang, use_validated, workers, force))


@prepare.command("librispeech")
@corpus_arg
@out_dir_opt
@workers_opt
@force_opt
@user_errors
def prepare_librispeech_cmd(corpus_dir, out_dir, workers, force):
    """LibriSpeech: one subset folder, or a folder of subsets."""
    from .prepare import prepare_librispeech

    _report(prepare_librispeech(corpus_dir, out_dir, workers, force))


@prepare.command("voxceleb")
@corpus_arg
@out_dir_opt
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="VoxCeleb1 iden_split.txt (default: CORPUS_DIR/iden_split.txt if present).")
@workers_opt
@force_opt
@user_errors
def prepare_voxceleb_cmd(corpus_dir, out_dir, split_file, workers, force):
    """VoxCeleb: wav/idNNNNN/<video>/<utt>.wav."""
    from .prepare import prepare_voxceleb

    _report(prepare_voxceleb(corpus_dir, out_dir, split_file, workers, force))


@prepare.command("mailabs")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="de", show_default=True)
@workers_opt
@force_opt
@user_errors
def prepare_mailabs_cmd(corpus_dir, out_dir, lang, workers, force):
    """M-AILABS: by_book/<female|male|mix>/<speaker>/<book>/metadata.csv + wavs/."""
    from .prepare import prepare_mailabs

    _report(prepare_mailabs(corpus_dir, out_dir, lang, workers, force))


@prepare.command("folder")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="und", show_default=True, help="Language code written into the manifest.")
@click.option("--name", default="folder", show_default=True, help="Corpus name used in the manifest file names.")
@click.option("--speaker-level", type=int, default=1, show_default=True,
              help="Folder level naming the speaker (1 = the file's parent folder, 0 = one speaker per file).")
@click.option("--speaker-regex", default=None, help="Take the speaker from the file name: first group of this regex.")
@click.option("--no-text", is_flag=True, help="Transcripts are optional (speaker corpora).")
@workers_opt
@force_opt
@user_errors
def prepare_folder_cmd(corpus_dir, out_dir, lang, name, speaker_level, speaker_regex, no_text, workers, force):
    """A folder of audio files with same-name .txt transcripts."""
    from .prepare import prepare_folder

    _report(prepare_folder(corpus_dir, out_dir, lang, name, speaker_level, speaker_regex, not no_text, workers,
                           force))


@prepare.command("kaldi")
@corpus_arg
@out_dir_opt
@click.option("--lang", default="und", show_default=True)
@click.option("--name", default="kaldi", show_default=True, help="Corpus name used in the manifest file names.")
@workers_opt
@force_opt
@user_errors
def prepare_kaldi_cmd(corpus_dir, out_dir, lang, name, workers, force):
    """A Kaldi data dir: wav.scp, text, utt2spk (+ segments)."""
    from .prepare import prepare_kaldi

    _report(prepare_kaldi(corpus_dir, out_dir, lang, name, workers, force))


@prepare.command("synth-asr")
@out_dir_opt
@click.option("--lang", default="de", show_default=True)
@click.option("--num-utterances", type=int, default=3000, show_default=True)
@click.option("--sentences", type=click.Path(exists=True, dir_okay=False), default=None,
              help="One sentence per line (default: German sentences of Debian's trans-de-en).")
@click.option("--seed", type=int, default=0, show_default=True)
@workers_opt
@force_opt
@user_errors
def prepare_synth_asr_cmd(out_dir, lang, num_utterances, sentences, seed, workers, force):
    """Offline German ASR corpus spoken by espeak-ng, MBROLA and pico voices."""
    from .prepare import prepare_synth_asr

    _report(prepare_synth_asr(out_dir, lang, num_utterances, sentences, seed, workers, force))


@prepare.command("synth-speakers")
@out_dir_opt
@click.option("--utterances-per-speaker", type=int, default=24, show_default=True)
@click.option("--num-test-speakers", type=int, default=20, show_default=True)
@click.option("--num-dev-speakers", type=int, default=10, show_default=True)
@click.option("--max-speakers", type=int, default=None, help="Use at most this many voices (quick runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@workers_opt
@force_opt
@user_errors
def prepare_synth_speakers_cmd(out_dir, utterances_per_speaker, num_test_speakers, num_dev_speakers, max_speakers,
                               seed, workers, force):
    """Offline speaker-ID corpus from MBROLA, pico and espeak-ng voices, with augmentation."""
    from .prepare import prepare_synth_speakers

    _report(prepare_synth_speakers(out_dir, utterances_per_speaker, num_test_speakers, num_dev_speakers, seed,
                                   workers, force, max_speakers))


# --------------------------------------------------------------------------- manifest

@main.group()
def manifest() -> None:
    """Inspect, check, filter and split manifests."""


manifest_arg = click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path))


@manifest.command("stats")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--max-speakers", type=int, default=20, show_default=True, help="Speakers listed in the text output.")
@user_errors
def manifest_stats_cmd(manifests, as_json, max_speakers):
    """Hours, utterances, speakers, per-speaker counts and the character inventory."""
    from .manifest import format_stats, manifest_stats, read_manifest

    all_stats = {str(m): manifest_stats(read_manifest(m)) for m in manifests}
    if as_json:
        click.echo(json.dumps(all_stats, ensure_ascii=False, indent=1))
    else:
        click.echo("\n\n".join(format_stats(k, v, max_speakers) for k, v in all_stats.items()))


@manifest.command("validate")
@manifest_arg
@click.option("--check-audio", is_flag=True, help="Also decode every file and check it (silence, clipping, ...).")
@user_errors
def manifest_validate_cmd(manifest_path, check_audio):
    """Check every line; with --check-audio also every audio file. Exit 1 if anything is wrong."""
    from .audio import AudioError, load_checked
    from .manifest import check_audio_files, read_manifest

    utts = read_manifest(manifest_path)
    problems = [f"{u.id}: {msg}" for u, msg in check_audio_files(utts)]
    if check_audio and not problems:
        for u in utts:
            try:
                load_checked(u.audio_path(), offset=u.offset or 0.0,
                             duration=u.duration if u.offset is not None else None)
            except AudioError as e:
                problems.append(f"{u.id}: {e}")
    for p in problems:
        click.echo(p, err=True)
    click.echo(f"{manifest_path}: {len(utts)} utterances, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


@manifest.command("filter")
@manifest_arg
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--min-duration", type=float, default=0.0, show_default=True)
@click.option("--max-duration", type=float, default=float("inf"))
@click.option("--vocab", default=None, help="Allowed characters (a string, or @FILE with one per line).")
@user_errors
def manifest_filter_cmd(manifest_path, out, min_duration, max_duration, vocab):
    """Keep utterances within duration bounds and a character set; the rest go to OUT's .rejected.jsonl."""
    from .manifest import filter_duration, filter_vocabulary, read_manifest, write_jsonl, write_manifest

    utts = read_manifest(manifest_path)
    kept, rejected = filter_duration(utts, min_duration, max_duration)
    if vocab:
        chars = Path(vocab[1:]).read_text(encoding="utf-8").splitlines() if vocab.startswith("@") else list(vocab)
        kept, bad = filter_vocabulary(kept, [c if c else " " for c in chars])
        rejected += bad
    write_manifest(out, kept)
    rej = out.with_name(out.stem + ".rejected.jsonl")
    write_jsonl(rej, ({**u.to_dict(), "reason": why} for u, why in rejected))
    click.echo(f"kept {len(kept)} -> {out}; rejected {len(rejected)} -> {rej}")


@manifest.command("split")
@manifest_arg
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["speaker", "text", "speaker+text"]), default="speaker", show_default=True)
@click.option("--fractions", default="train=0.8,dev=0.1,test=0.1", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def manifest_split_cmd(manifest_path, out_dir, by, fractions, seed):
    """Seeded split into parts disjoint by speaker and/or text: writes <stem>_<part>.jsonl."""
    from .manifest import read_manifest, split_manifest, write_jsonl, write_manifest

    try:
        fr = {k.strip(): float(v) for k, v in (p.split("=") for p in fractions.split(","))}
    except ValueError:
        raise UserError(f"--fractions {fractions!r}: expected name=share pairs, e.g. train=0.8,dev=0.1,test=0.1") \
            from None
    parts, rejected = split_manifest(read_manifest(manifest_path), fr, by, seed)
    stem = manifest_path.stem.removesuffix("_all")
    for name, utts in parts.items():
        n = write_manifest(out_dir / f"{stem}_{name}.jsonl", utts)
        click.echo(f"{name:<8} {n:>7} utterances, {len({u.speaker for u in utts}):>5} speakers")
    if rejected:
        rej = out_dir / f"{stem}_split-rejected.jsonl"
        write_jsonl(rej, ({**u.to_dict(), "reason": why} for u, why in rejected))
        click.echo(f"not placed: {len(rejected)} utterances (speaker and text in different parts) -> {rej}")


@manifest.command("to-kaldi")
@manifest_arg
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@user_errors
def manifest_to_kaldi_cmd(manifest_path, data_dir):
    """Export a manifest as a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, segments)."""
    from .manifest import read_manifest
    from .prepare import export_kaldi

    utts = read_manifest(manifest_path)
    export_kaldi(utts, data_dir)
    click.echo(f"{len(utts)} utterances -> {data_dir}")


# --------------------------------------------------------------------------- train / evaluate / transcribe

@main.group()
def train() -> None:
    """Adapt a pretrained backbone to a task (one training loop for every task)."""


@train.command("asr", context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@user_errors
def train_asr_cmd(config, overrides):
    """CTC character head on a pretrained encoder. OVERRIDES: dotted key=value, e.g. freeze.bottom_layers=2."""
    from .asr.task import AsrConfig, train_asr
    from .config import load_config

    cfg = load_config(AsrConfig, config, list(overrides))
    summary = train_asr(cfg)
    click.echo(json.dumps(summary, indent=1))


@train.command("speaker", context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@user_errors
def train_speaker_cmd(config, overrides):
    """AAM-softmax adaptation of a speaker encoder. OVERRIDES: dotted key=value, e.g. freeze.bottom_layers=2."""
    from .config import load_config
    from .speaker.task import SpeakerConfig, train_speaker

    cfg = load_config(SpeakerConfig, config, list(overrides))
    click.echo(json.dumps(train_speaker(cfg), indent=1))


@main.group()
def evaluate() -> None:
    """Score a checkpoint (or a pretrained backbone) on a manifest."""


@evaluate.command("asr")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="results.json to write")
@click.option("--beam", type=int, default=0, show_default=True, help="Beam width (0: greedy).")
@click.option("--device", default="auto", show_default=True)
@user_errors
def evaluate_asr_cmd(checkpoint, manifest_path, out, beam, device):
    """WER and CER (with 95% bootstrap intervals, per speaker) of CHECKPOINT on MANIFEST."""
    from .asr.evaluate import evaluate_asr

    r = evaluate_asr(checkpoint, manifest_path, out, beam, device)
    click.echo(f"{manifest_path}: WER {r['wer']:.4f} [{r['wer_ci95'][0]:.4f}, {r['wer_ci95'][1]:.4f}]  "
               f"CER {r['cer']:.4f} [{r['cer_ci95'][0]:.4f}, {r['cer_ci95'][1]:.4f}]  "
               f"({r['num_utterances']} utterances, {r['decoding']}) -> {out}")


@main.command("transcribe")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--beam", type=int, default=0, show_default=True)
@user_errors
def transcribe_cmd(checkpoint, audio, beam):
    """Print a transcript for each AUDIO file."""
    from .asr.evaluate import transcribe_files

    for path, text in transcribe_files(checkpoint, list(audio), beam):
        click.echo(f"{path}\t{text}")


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


def _load_speaker_embedder(source: str, db: Path):
    """The embedder of a backbone source string or a speaker checkpoint folder, with a clear error."""
    from .speaker.embedder import load_embedder
    from .speaker.registry import SpeakerRegistryError

    try:
        return load_embedder(source)
    except (ValueError, OSError, RuntimeError, ImportError) as e:
        raise SpeakerRegistryError(f"cannot load speaker model {source} (for {db}): {e}") from None


def _open_speaker_db(db: Path):
    """An existing database and the embedder of the model it was created with."""
    from .speaker.registry import SpeakerRegistry, SpeakerRegistryError

    reg = SpeakerRegistry(db, create=False)
    if reg.model is None:
        raise SpeakerRegistryError(f"{db}: no speakers enrolled yet; enroll some with `speech-tl enroll`")
    embedder = _load_speaker_embedder(reg.model.source, db)
    reg.check_model(embedder)  # the weights behind the source may have changed since
    return reg, embedder


@main.command("enroll")
@db_opt
@click.option("--speaker", required=True, help="Name of the speaker (created if new, else the clips are added).")
@click.option("--model", default=None,
              help="Backbone source or speaker checkpoint folder (default: the database's model; "
                   "ge2e:resemblyzer for a new database).")
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@speaker_db_errors
def enroll_cmd(db, speaker, model, audio):
    """Add AUDIO clips of a speaker to the database (created if missing).

    Every clip is checked (readable, long enough, not silent, not clipped); if any fails, nothing
    is enrolled. A database keeps the model it was created with; other models are refused.
    """
    from .audio import AudioError
    from .speaker.registry import DEFAULT_MODEL, DEFAULT_THRESHOLD, SpeakerRegistry

    reg = SpeakerRegistry(db, create=False) if db.exists() else None
    have = reg.model if reg is not None else None
    embedder = _load_speaker_embedder(model or (have.source if have else DEFAULT_MODEL), db)
    if reg is not None:
        reg.check_model(embedder)
    embeddings, bad = [], []
    for path in audio:
        try:
            embeddings.append(embedder.embed_file(path))
        except AudioError as e:
            bad.append(str(e))
    if bad:
        raise UserError(f"nothing enrolled: {len(bad)} of {len(audio)} clip(s) refused: " + "; ".join(bad))
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
@speaker_db_errors
def identify_cmd(db, audio, top_k, as_json):
    """Which enrolled speaker is AUDIO? The best one if its score is above the threshold, else 'unknown'."""
    reg, embedder = _open_speaker_db(db)
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
@speaker_db_errors
def verify_cmd(db, speaker, audio, as_json):
    """Is AUDIO the enrolled SPEAKER? Exit status 0: accepted, 1: rejected, 2: error."""
    reg, embedder = _open_speaker_db(db)
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
    from .speaker.registry import SpeakerRegistry

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
    from .speaker.registry import SpeakerRegistry

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
    from .speaker.registry import SpeakerRegistry

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
    from .speaker.registry import SpeakerRegistry

    with SpeakerRegistry(db, create=False) as reg:
        r = reg.calibrate_threshold(results, target_far)
    click.echo(f"threshold {r['threshold']:.4f} ({r['provenance']}) -> {db}")



# --------------------------------------------------------------------------- speaker evaluation

@evaluate.command("speaker")
@click.argument("model")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="results.json to write (the embeddings go beside it, as <stem>.embeddings.pt).")
@click.option("--trials", "trials_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="VoxCeleb-style trial list 'LABEL ENROLL TEST' (default: all same-speaker pairs and sampled "
                   "different-speaker pairs of MANIFEST).")
@click.option("--cohort", "cohort_manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest of other speakers: also score with AS-Norm against their embeddings.")
@click.option("--asnorm-top-k", type=click.IntRange(min=2), default=200, show_default=True,
              help="Cohort scores averaged per utterance by AS-Norm.")
@click.option("--enroll-per-speaker", type=click.IntRange(min=1), default=3, show_default=True,
              help="Identification: utterances (first by id) averaged into each speaker's enrolment.")
@click.option("--nontarget-per-target", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Generated trials: sampled different-speaker pairs per same-speaker pair.")
@click.option("--seed", type=int, default=0, show_default=True, help="Trial sampling and bootstrap seed.")
@user_errors
def evaluate_speaker_cmd(model, manifest_path, out, trials_file, cohort_manifest, asnorm_top_k, enroll_per_speaker,
                         nontarget_per_target, seed):
    """Verification EER/minDCF and identification accuracy of MODEL on MANIFEST.

    MODEL is a speaker checkpoint folder or a backbone source string, e.g. ge2e:resemblyzer.
    """
    from .speaker.evaluate import evaluate_speaker

    r = evaluate_speaker(model, manifest_path, out, trials_file, cohort_manifest, asnorm_top_k, enroll_per_speaker,
                         seed, nontarget_per_target)
    line = (f"{manifest_path}: EER {r['eer']:.4f} [{r['eer_ci95'][0]:.4f}, {r['eer_ci95'][1]:.4f}]  "
            f"minDCF(0.01) {r['min_dcf']:.4f}  ({r['num_trials']} trials, {r['num_target_trials']} target)")
    if r["asnorm"] is not None:
        line += f"  AS-Norm EER {r['asnorm']['eer']:.4f} minDCF {r['asnorm']['min_dcf']:.4f}"
    if r["identification_accuracy"] is not None:
        line += (f"  identification top-1 {r['identification_accuracy']:.4f} "
                 f"top-5 {r['identification_top5_accuracy']:.4f}")
    click.echo(line + f" -> {out}")


if __name__ == "__main__":
    main()
