"""``speech-tl export onnx|hf|ct2 MODEL --out DIR``: a model for another runtime (see :mod:`speech_tl.export.onnx`,
:mod:`speech_tl.export.hf`, :mod:`speech_tl.export.ct2`)."""

from __future__ import annotations

from pathlib import Path

import click

from . import check_outputs, main, overwrite_option, user_errors


@main.group("export")
def export() -> None:
    """Export a trained model for other runtimes."""


@export.command("onnx")
@click.argument("model", metavar="MODEL")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: model.onnx, export.json and what decoding needs (vocabulary, LM).")
@click.option("--check-audio", "check_audio", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Audio file on which ONNX Runtime is checked against torch (default: a synthetic "
                                 "speech-like signal).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Store the weights of matrix products as int8 (ONNX Runtime dynamic quantisation): "
                   "smaller and faster on CPUs. With --dev (ASR), its cost in CER is measured and checked.")
@click.option("--dev", "dev", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="ASR manifest with transcripts (the target domain's dev set): decoded with the float and the int8 "
                   "graph; both CERs go into export.json.")
@click.option("--max-cer-increase", type=click.FloatRange(min=0.0), default=0.01, show_default=True,
              help="Refuse an int8 export whose CER on --dev is more than this above the float graph's.")
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Apply ONNX Runtime's transformer fusions (GELU, layer norm, attention where it matches).")
@overwrite_option(help_text="Replace the --out folder if it exists.")
@user_errors
def export_onnx_cmd(model, out, check_audio, quantize, dev, max_cer_increase, optimize, overwrite):
    """Export MODEL (an ASR or speaker checkpoint folder, or a speaker backbone source such as ge2e:resemblyzer)
    to ONNX in --out, checked against torch with ONNX Runtime.

    Run the folder with `speech-tl transcribe DIR AUDIO...` / `evaluate asr DIR MANIFEST` (ASR) or
    `speech-tl enroll --model DIR ...` (speakers); --backend onnx insists on it.
    """
    from ..export.onnx import check_exportable, export_onnx

    check_exportable(model)
    check_outputs([out], overwrite, inputs=[Path(model)] if Path(model).exists() else [], what="export folder",
                  nested=True)
    if dev is not None and quantize is None:
        raise click.UsageError("--dev measures what int8 quantisation costs; give it with --quantize int8")
    info = export_onnx(model, out, check_audio, quantize=quantize, dev=dev, max_cer_increase=max_cer_increase,
                       optimize=optimize)
    v = info["verified"]
    click.echo(f"{model} -> {out / 'model.onnx'} ({info['task']}, graph {info['graph']}; ONNX Runtime within "
               f"{v['max_abs_diff']:.2g} of torch on {v['seconds']} s of audio)")
    q = info.get("quantization")
    if q and q.get("dev"):
        d = q["dev"]
        click.echo(f"int8 ({q['nodes']} nodes): {d['manifest']} CER {d['int8']['cer']:.4f} (float "
                   f"{d['float']['cer']:.4f}), WER {d['int8']['wer']:.4f} (float {d['float']['wer']:.4f}), "
                   f"{d['decoding']}")
    elif q:
        click.echo(f"int8 ({q['nodes']} nodes): largest difference to torch {q['max_abs_diff']:.2g} on the check "
                   "audio" + (f", embedding cosine >= {q['min_cosine_to_torch']:.4f}" if "min_cosine_to_torch" in q
                              else "; accuracy not measured (give --dev MANIFEST)"))


@export.command("hf")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: a transformers WhisperForConditionalGeneration (config.json, model.safetensors, "
                   "generation_config.json, tokenizer and feature extractor).")
@overwrite_option(help_text="Replace the --out folder if it exists.")
@user_errors
def export_hf_cmd(checkpoint, out, overwrite):
    """Export CHECKPOINT (trained with model.head: decoder) as a Hugging Face transformers Whisper folder.

    Load it with `WhisperForConditionalGeneration.from_pretrained(DIR)` and `WhisperProcessor.from_pretrained(DIR)`,
    or `pipeline("automatic-speech-recognition", model=DIR)`.
    """
    from ..export.hf import decoder_checkpoint, export_hf

    decoder_checkpoint(checkpoint)
    check_outputs([out], overwrite, inputs=[Path(checkpoint)], what="export folder", nested=True)
    info = export_hf(checkpoint, out)
    _report(checkpoint, out, info, "transformers")


@export.command("ct2")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write: a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json, ...).")
# CTranslate2's weight types, as speech_tl.export.ct2.QUANTIZATIONS (not imported here: it imports torch)
@click.option("--quantization", type=click.Choice(["int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                                                   "float16", "bfloat16", "float32"]),
              default=None, help="Weight type CTranslate2 stores (default: float32, as trained).")
@overwrite_option(help_text="Replace the --out folder if it exists.")
@user_errors
def export_ct2_cmd(checkpoint, out, quantization, overwrite):
    """Export CHECKPOINT (trained with model.head: decoder) as a CTranslate2 Whisper folder, what faster-whisper runs.

    Load it with `faster_whisper.WhisperModel(DIR)` or `ctranslate2.models.Whisper(DIR)`, or run it here with
    `speech-tl transcribe DIR ...` / `evaluate asr DIR ...` (--backend ct2).
    """
    from ..export.ct2 import export_ct2
    from ..export.hf import decoder_checkpoint

    decoder_checkpoint(checkpoint)
    check_outputs([out], overwrite, inputs=[Path(checkpoint)], what="export folder", nested=True)
    info = export_ct2(checkpoint, out, quantization)
    _report(checkpoint, out, info, f"CTranslate2 ({info['quantization']})")


def _report(checkpoint, out, info: dict, what: str) -> None:
    verified = info["verified"]
    verified = verified.get("transformers", verified)
    click.echo(f"{checkpoint} -> {out} ({what}; transformers' logits within {verified['max_abs_diff']:.2g} of "
               f"speech-tl's; language {info['language'] or 'none (English-only)'})")
    for note in info["notes"]:
        click.echo(f"note: {note}", err=True)
