"""ONNX Runtime's own tools on an exported graph: transformer fusions at export, and int8 dynamic quantisation.

Both are ONNX Runtime's (``onnxruntime.transformers.optimizer`` and ``onnxruntime.quantization.quantize_dynamic``);
this module only chooses what they apply to and says what they did.

- :func:`fuse_transformer`: the transformer fusions ONNX Runtime's optimizer finds in the graph torch's dynamo
  exporter writes (GELU and bias + GELU, layer norm; attention where its pattern matches), saved into the file so
  every runtime loads the fused graph. ``benchmarks/onnx_speed.py`` measures the graph before and after, and also
  onnxscript's attention fusion (``MultiHeadAttention``), which was no faster on CPUs (see benchmarks/README.md) and is
  therefore not applied.
- :func:`quantize_int8`: the weights of the model's linear layers (their ``MatMul``/``Gemm`` nodes, found by value)
  stored as int8 with one scale per output channel, activations quantised per call (dynamic quantisation: no
  calibration data needed). Per channel, not per tensor: on Whisper base with a CTC head (real Common Voice German
  dev, beam + LM) per-tensor int8 cost 0.020 CER (0.303 -> 0.323), per channel none (0.297). What is left in
  float32, on purpose: the feature front end (the STFT kernels and the mel filterbank: quantising them moves every
  feature), convolutions (``ConvInteger`` is slower than float convolutions in ONNX Runtime on CPUs), products of
  two activations (attention scores), and LSTMs: ONNX Runtime's int8 LSTM moved GE2E's window embeddings to a cosine
  of 0.36 (per tensor) or 0.90 (per channel) with the float ones on real speech, so a GE2E export gets int8 only in
  its final projection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

QUANTIZABLE = ("MatMul", "Gemm")


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's tools print shape-inference notes and advice to stdout and the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def fuse_transformer(path: Path) -> dict[str, int]:
    """Apply ONNX Runtime's transformer fusions to ``path`` in place; returns ``{fused operator: count}`` (those
    found). Heads and hidden size are read from the graph (``num_heads=0``, ``hidden_size=0``)."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        stats = model.get_fused_operator_statistics()
        model.save_model_to_file(str(path))
    return {k: int(v) for k, v in stats.items() if v}


def linear_weights(model) -> list:
    """The ``(out, in)`` weights of a torch model's ``nn.Linear`` layers outside its feature front end (modules named
    ``frontend``): the matrix products :func:`quantize_int8` may quantise."""
    from torch import nn

    return [m.weight.detach().cpu().float().numpy() for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and "frontend" not in name.split(".")]


def _key(array) -> tuple:
    import hashlib

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.float32)
    return a.shape, hashlib.sha1(a.tobytes()).hexdigest()


def quantizable_nodes(model, weights: list) -> list[str]:
    """Names of the nodes :func:`quantize_int8` quantises in ``model`` (an ``onnx.ModelProto``): matrix products
    whose weight initializer is one of ``weights`` (:func:`linear_weights`; stored as exported, ``(in, out)``, or
    as in torch). Found by value, not by name: the exporter names folded weights ``val_N``, and a filterbank or STFT
    matrix must never be taken for a layer."""
    from onnx import numpy_helper

    keys = {k for w in weights for k in (_key(w), _key(w.T))}
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type in QUANTIZABLE and len(node.input) >= 2 and node.input[1] in inits \
                and _key(numpy_helper.to_array(inits[node.input[1]])) in keys:
            nodes.append(node.name)
    return nodes


def quantize_int8(src: Path, dst: Path, weights: list) -> dict:
    """``src`` float32 graph -> ``dst`` with int8 weights (ONNX Runtime dynamic quantisation, signed int8, one
    scale per output channel); returns ``{"weights", "method", "nodes": N, "op_types": {...}}``. Refuses a graph
    with nothing to quantise (an ECAPA-TDNN is all convolutions)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx import ExportError

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        # ONNX Runtime's pre-processing: shapes inferred and constants folded, so weights the exporter computes in
        # the graph become initializers the quantiser can see
        folded = Path(tmp) / "folded.onnx"
        with _quiet():
            quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)
        model = onnx.load(str(folded))
        nodes = quantizable_nodes(model, weights)
        if not nodes:
            raise ExportError(f"{src.parent}: nothing to quantise to int8 in this graph (int8 covers matrix products "
                              f"with stored weights, {', '.join(QUANTIZABLE)}; convolutions and LSTMs stay float); "
                              "export it without --quantize")
        kinds: dict[str, int] = {}
        by_name = {n.name: n.op_type for n in model.graph.node}
        for name in nodes:
            kinds[by_name[name]] = kinds.get(by_name[name], 0) + 1
        with _quiet():
            quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                             op_types_to_quantize=sorted(kinds), per_channel=True, reduce_range=False)
    return {"weights": "int8 per output channel", "method": "onnxruntime dynamic quantisation (quantize_dynamic)",
            "nodes": len(nodes), "op_types": kinds}


def is_transformer(model) -> bool:
    """Whether a torch model holds attention layers (what :func:`fuse_transformer` is for)."""
    return any("Attention" in type(m).__name__ for m in model.modules())


MIN_INT8_COSINE = 0.98  # speaker embeddings of the int8 graph against torch's, on the check audio


def quantize_export(folder: Path, model, export: dict, feeds: dict, wave, dev: str | Path | None,
                    max_cer_increase: float) -> dict:
    """Replace ``folder/model.onnx`` (a complete, verified float export) by its int8 form; returns the
    ``quantization`` section of ``export.json``.

    ASR with ``dev``: the folder is evaluated as users run it (``evaluate asr``: the checkpoint's decoding, LM
    included) before and after; refused when the int8 CER is more than ``max_cer_increase`` above the float one.
    ASR without ``dev``: the cost is not measured, and the section says so. Speakers: refused when an int8
    embedding of the check audio has a cosine below :data:`MIN_INT8_COSINE` with torch's.
    """
    import os

    import numpy as np

    from ..logs import warning
    from ..runtime import ONNX_FILE
    from .onnx import ExportError, _outputs

    path = folder / ONNX_FILE
    float_dev = _dev_scores(folder, dev) if dev is not None and export["task"] == "asr" else None
    int8_path = folder / "model.int8.onnx"
    section = quantize_int8(path, int8_path, linear_weights(model))
    os.replace(int8_path, path)
    got, want = _outputs(path, model, export["task"], export["graph"], feeds, wave)
    if not all(bool(np.isfinite(g).all()) for g in got):
        raise ExportError(f"{export['source']}: the int8 graph gives non-finite outputs on the check audio; export "
                          "without --quantize")
    section["max_abs_diff"] = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    if export["task"] == "speaker":
        g = np.concatenate([np.atleast_2d(x) for x in got])  # (N, D) embeddings
        w = np.concatenate([np.atleast_2d(x) for x in want])
        cos = float(((g * w).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1))).min())
        section["min_cosine_to_torch"] = cos
        if not cos >= MIN_INT8_COSINE:
            raise ExportError(f"{export['source']}: int8 embeddings are too far from torch's (cosine {cos:.4f} < "
                              f"{MIN_INT8_COSINE} on the check audio); export without --quantize")
        return section
    if float_dev is None:
        warning("%s: int8 quantisation's cost in accuracy is not measured: give --dev MANIFEST (transcribed audio "
                "of the target domain) to measure and check it", export["source"])
        section["dev"] = None
        return section
    int8_dev = _dev_scores(folder, dev)
    section["dev"] = {"manifest": str(dev), "decoding": int8_dev.pop("decoding"), "float": float_dev,
                      "int8": int8_dev, "max_cer_increase": max_cer_increase}
    float_dev.pop("decoding", None)
    if not int8_dev["cer"] <= float_dev["cer"] + max_cer_increase:
        raise ExportError(f"{export['source']}: int8 quantisation costs too much on {dev}: CER {int8_dev['cer']:.4f} "
                          f"against {float_dev['cer']:.4f} in float (allowed: +{max_cer_increase:g}); export "
                          "without --quantize, or allow more with --max-cer-increase")
    return section


def _dev_scores(folder: Path, dev: str | Path) -> dict:
    """``{"cer", "wer", "utterances", "decoding"}`` of the exported folder on the manifest ``dev``."""
    import tempfile

    from ..asr.evaluate import evaluate_asr

    with tempfile.TemporaryDirectory() as tmp:
        r = evaluate_asr(folder, dev, Path(tmp) / "dev.json", backend="onnx", device="cpu")
    return {"cer": r["cer"], "wer": r["wer"], "utterances": r["num_utterances"], "decoding": r["decoding"]}
