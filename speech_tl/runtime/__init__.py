"""Which engine runs a model: torch (a checkpoint folder), ONNX Runtime (a folder written by ``speech-tl export
onnx``) or CTranslate2 (a folder written by ``speech-tl export ct2``, or any faster-whisper model folder).

Below the tasks: :mod:`speech_tl.asr` and :mod:`speech_tl.speaker` choose an engine here and never import the
exporters (:mod:`speech_tl.export` writes the folders these modules read, and imports the tasks). What a folder is
told by the files it holds:

- :mod:`.onnx`: ``export.json`` + ``model.onnx``; :class:`~.onnx.OnnxCtcModel` and :func:`~.onnx.onnx_embedder`
  behave like the torch models;
- :mod:`.ct2`: ``model.bin`` + ``config.json`` without ``meta.json``; :class:`~.ct2.Ct2Whisper` transcribes like
  :func:`speech_tl.asr.seq2seq_infer.transcribe_seq2seq`.

``--backend auto`` takes the engine the folder is for; ``torch``, ``onnx`` or ``ct2`` insist, and a folder of
another kind is refused saying what to give instead.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

EXPORT_FILE = "export.json"  # what an ONNX export says about itself (kind, inputs, settings, provenance)
ONNX_FILE = "model.onnx"
ONNX_FORMAT = "speech-tl-onnx"
ONNX_VERSION = 1
CT2_INFO_FILE = "speech_tl_export.json"  # beside a CTranslate2 / transformers export: where it came from
BACKENDS = ("auto", "torch", "onnx", "ct2")


def engine_of(path: str | Path) -> str:
    """``onnx``, ``ct2`` or ``torch``: what the folder ``path`` is for."""
    from .ct2 import is_ct2_folder
    from .onnx import is_exported

    if is_exported(path):
        return "onnx"
    if is_ct2_folder(path):
        return "ct2"
    return "torch"


def choose_backend(path: str | Path, backend: str, allowed: tuple[str, ...] = BACKENDS) -> str:
    """The engine that runs ``path`` under ``backend`` (auto: the folder's own); a folder of another kind than the
    one insisted on is refused, saying what to do. ``allowed``: the engines this model kind has."""
    if backend not in allowed:
        raise InputError(f"backend must be one of {', '.join(allowed)}, got {backend!r}")
    engine = engine_of(path)
    if engine not in allowed:
        raise InputError(f"{path}: a folder for {engine}, which this command cannot run (it runs "
                         f"{', '.join(a for a in allowed if a != 'auto')})")
    if backend in ("auto", engine):
        return engine
    kind = {"torch": "a checkpoint folder", "onnx": "an exported ONNX folder", "ct2": "a CTranslate2 folder"}
    advice = {"onnx": f"export it first with `speech-tl export onnx {path} --out DIR` and give DIR",
              "ct2": f"export it first with `speech-tl export ct2 {path} --out DIR` and give DIR",
              "torch": "give the checkpoint folder it was exported from"}[backend]
    raise InputError(f"{path}: {kind[engine]}, not {kind[backend]} (--backend {backend}); {advice}, or run it with "
                     f"--backend {engine} (or auto)")
