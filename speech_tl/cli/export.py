"""``speech-tl export onnx MODEL --out DIR``: a model for another runtime (see :mod:`speech_tl.export.onnx`)."""

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
@overwrite_option(help_text="Replace the --out folder if it exists.")
@user_errors
def export_onnx_cmd(model, out, check_audio, overwrite):
    """Export MODEL (an ASR or speaker checkpoint folder, or a speaker backbone source such as ge2e:resemblyzer)
    to ONNX in --out, checked against torch with ONNX Runtime.

    Run the folder with `speech-tl transcribe DIR AUDIO...` / `evaluate asr DIR MANIFEST` (ASR) or
    `speech-tl enroll --model DIR ...` (speakers); --backend onnx insists on it.
    """
    from ..export.onnx import check_exportable, export_onnx

    check_exportable(model)
    check_outputs([out], overwrite, inputs=[Path(model)] if Path(model).exists() else [], what="export folder",
                  nested=True)
    info = export_onnx(model, out, check_audio)
    v = info["verified"]
    click.echo(f"{model} -> {out / 'model.onnx'} ({info['task']}, graph {info['graph']}; ONNX Runtime within "
               f"{v['max_abs_diff']:.2g} of torch on {v['seconds']} s of audio)")
