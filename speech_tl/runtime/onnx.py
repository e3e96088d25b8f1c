"""Run a folder written by ``speech-tl export onnx`` through ONNX Runtime, behind the interfaces the torch models have.

- :class:`OnnxCtcModel`: called like a :class:`~speech_tl.asr.model.CtcModel` (``wave (B, T)``, ``lengths (B,)``
  -> ``log_probs (B, T', V)``, ``frame_lengths (B,)``), with a ``backbone`` that tells
  :func:`speech_tl.asr.infer.ctc_posteriors` the frame size and the longest input; so batching, windows for long
  audio and beam search with the LM are the torch model's own.
- :func:`ort_session` and :func:`read_export` for the speaker models' runner
  (:func:`speech_tl.speaker.embedder.onnx_embedder`, which lives with the speaker code).

``backend``: ``auto`` runs an exported folder through ONNX Runtime and a checkpoint through torch; ``torch`` and
``onnx`` insist, and say what to do when the folder is of the other kind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import InputError
from . import EXPORT_FILE, ONNX_FILE, ONNX_FORMAT, ONNX_VERSION

BACKENDS = ("auto", "torch", "onnx")
# what every export.json holds, and what each graph adds
REQUIRED = ("task", "graph", "sample_rate", "meta")
REQUIRED_BY_GRAPH = {"ctc": ("vocabulary", "frame_samples", "max_input_seconds"), "ge2e-windows": ("embedding_dim",),
                     "pooled": ("embedding_dim", "max_input_seconds")}
log = logging.getLogger("speech_tl")


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``speech-tl export onnx``."""
    p = Path(path)
    return (p / EXPORT_FILE).is_file() and (p / ONNX_FILE).is_file()


def use_onnx(path: str | Path, backend: str) -> bool:
    """Whether ``path`` runs through ONNX Runtime under ``backend``; refuses a folder of the other kind."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    exported = is_exported(path)
    if backend == "onnx" and not exported:
        raise InputError(f"{path}: not an exported ONNX folder (no {EXPORT_FILE} and {ONNX_FILE}); export it first "
                         f"with `speech-tl export onnx {path} --out DIR` and give DIR, or use --backend torch")
    if backend == "torch" and exported:
        raise InputError(f"{path}: an exported ONNX folder, which runs with --backend onnx (or auto); give the "
                         "checkpoint folder it was exported from to run torch")
    return exported


def read_export(path: str | Path, task: str) -> dict:
    """``export.json`` of an exported folder, refusing another task's or an unknown format."""
    file = Path(path) / EXPORT_FILE
    try:
        export = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{file}: cannot read the export description ({e}); export the model again") from None
    if (not isinstance(export, dict) or export.get("format") != ONNX_FORMAT
            or int(export.get("version", 0)) > ONNX_VERSION):
        raise InputError(f"{file}: not a {ONNX_FORMAT} description of version <= {ONNX_VERSION} (written by another "
                         "tool, or a newer speech-tl?)")
    if export.get("task") != task:
        raise InputError(f"{path}: an exported {export.get('task')!r} model, not {task!r}")
    graph = export.get("graph")
    if graph not in REQUIRED_BY_GRAPH:
        raise InputError(f"{file}: unknown graph {graph!r} (known: {', '.join(REQUIRED_BY_GRAPH)}); export the model "
                         "again")
    missing = [k for k in (*REQUIRED, *REQUIRED_BY_GRAPH[graph]) if k not in export]
    if task == "speaker" and "fingerprint" not in export.get("meta", {}):
        missing.append("meta.fingerprint")
    if missing:
        raise InputError(f"{file}: missing {', '.join(missing)}; export the model again with `speech-tl export onnx`")
    return export


def ort_session(path: str | Path, device: torch.device):
    """An ONNX Runtime session with torch's intra-op thread count, on CUDA when ``device`` is a CUDA device and
    this onnxruntime has the CUDA provider (``onnxruntime-gpu``), else on the CPU, saying so: torch may see a GPU
    that the plain ``onnxruntime`` package cannot use."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        else:
            log.warning("%s: this onnxruntime has no CUDA provider (install onnxruntime-gpu to use the GPU); "
                        "ONNX Runtime runs on the CPU", path)
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxCtcModel:
    """An exported CTC model, called like :class:`~speech_tl.asr.model.CtcModel` (torch tensors in and out)."""

    def __init__(self, folder: str | Path, export: dict, device: torch.device):
        self.session = ort_session(Path(folder) / ONNX_FILE, device)
        self.backbone = SimpleNamespace(sample_rate=export["sample_rate"], frame_samples=export["frame_samples"],
                                        max_input_seconds=export["max_input_seconds"])

    def __call__(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, frames = self.session.run(None, {"waveform": wave.detach().cpu().float().numpy(),
                                                    "lengths": lengths.detach().cpu().long().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(frames)

    def eval(self) -> OnnxCtcModel:
        return self

    def to(self, device) -> OnnxCtcModel:
        return self


def load_onnx_asr(folder: str | Path, device: torch.device) -> tuple[OnnxCtcModel, object, dict]:
    """``(model, vocabulary, meta)`` of an exported ASR folder, like :func:`speech_tl.asr.evaluate.load_asr_model`."""
    import yaml

    from ..text import Vocabulary

    folder = Path(folder)
    export = read_export(folder, "asr")
    vocab = Vocabulary(list(export["vocabulary"]))
    config = folder / "config.yaml"
    cfg = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    meta = {**export["meta"], "folder": str(folder), "config": cfg or {}, "backend": "onnx"}
    return OnnxCtcModel(folder, export, device), vocab, meta
