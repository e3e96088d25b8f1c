"""Export an ASR or speaker model to ONNX, checked against the torch model with ONNX Runtime.

``speech-tl export onnx MODEL --out DIR`` (MODEL: an ASR or speaker checkpoint folder, or a speaker backbone source
such as ``ge2e:resemblyzer``) writes into DIR:

- ``model.onnx``: the graph, exported by ``torch.onnx.export`` (torch's dynamo exporter, through onnxscript); its
  metadata (``metadata_props``) repeats ``export.json`` and, for ASR, the vocabulary, so the file alone is usable;
- ``export.json``: what the graph takes and gives, the settings the runtime needs, where it came from (checkpoint,
  backbone, weights fingerprint) and how closely ONNX Runtime reproduced torch on the check audio;
- ASR: ``vocab.json``, ``config.yaml``, and ``decoder.json`` / ``lm.arpa`` when the checkpoint has them, so beam
  search with the word LM decodes the exported model as it decodes the checkpoint.

The graphs (shapes; B utterances, T samples at 16 kHz):

- ASR (Whisper and wav2vec 2.0 / HuBERT / WavLM backbones, from transformers or torchaudio): ``waveform (B, T)``
  float32 and ``lengths (B,)`` int64 -> ``log_probs (B, T', V)`` float32 (CTC log-probabilities, blank 0) and
  ``frame_lengths (B,)`` int64; padded rows are masked as in torch. One input is at most ``max_input_seconds``
  (Whisper: 30 s; wav2vec2: no limit); :mod:`.runtime` cuts longer audio into windows.
- speaker, GE2E backbone (last-frame pooling): ``windows (W, 25840)`` float32, the 1.6 s partial windows with the
  STFT's 200 samples of context either side -> ``embeddings (W, D)``, L2-normalised per window; :mod:`.runtime`
  cuts the windows and averages them per utterance exactly as the torch model does.
- speaker, mean-pooled Whisper or wav2vec2-family backbone: ``waveform (B, T)``, ``lengths (B,)`` ->
  ``embeddings (B, D)``.

For export the models run in a traceable form (:func:`traceable`): the STFT as two real convolutions (ONNX has no
complex numbers), masks always applied instead of data-dependent shortcuts (Whisper, the wav2vec2 family),
GE2E's LSTMs without packing (its windows all have one length), ECAPA-TDNN's filterbank from the real-convolution
STFT and SpeechBrain's masks without a fixed batch size (``EcapaBackbone.export_context``).
``--quantize int8`` and the transformer fusions: :mod:`.ort_graph`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones.ge2e import waveform_windows as ge2e_windows
from ..errors import InputError, SpeechTlError
from ..runtime import EXPORT_FILE, ONNX_FILE, ONNX_FORMAT, ONNX_VERSION

FORMAT, VERSION = ONNX_FORMAT, ONNX_VERSION
OPSET = 18
# ONNX Runtime against torch on the check audio: |onnx - torch| <= atol + rtol * |torch| everywhere (log-probabilities
# for ASR: float32 rounding grows with the magnitude of a rare label's log-probability; embedding components for
# speakers); export.json keeps the largest differences measured (about 1e-4 for tiny.en's log-probs, 1e-7 for GE2E)
TOLERANCE = {"asr": {"atol": 2e-3, "rtol": 1e-3}, "speaker": {"atol": 1e-4, "rtol": 0.0}}
MIN_CHECK_SAMPLES = 4 * 16000  # shorter check audio is repeated to 4 s


class ExportError(SpeechTlError, ValueError):
    """A model that cannot be exported, or an export that does not reproduce the torch model."""


@contextlib.contextmanager
def traceable(model: nn.Module):
    """Switch every submodule with a ``traceable`` flag (Whisper's log-mel, GE2E's mel, ECAPA's filterbank) to its
    exportable form, inside the ``export_context()`` of every submodule that has one (ECAPA's masks)."""
    flagged = [m for m in model.modules() if hasattr(type(m), "traceable")]
    for m in flagged:
        m.traceable = True
    try:
        with contextlib.ExitStack() as stack:
            for m in model.modules():
                if hasattr(type(m), "export_context"):
                    stack.enter_context(m.export_context())
            yield model
    finally:
        for m in flagged:
            del m.traceable  # back to the class default


class CtcGraph(nn.Module):
    """``waveform (B, T)``, ``lengths (B,)`` -> ``log_probs (B, T', V)``, ``frame_lengths (B,)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(wave=waveform, lengths=lengths)


class PooledSpeakerGraph(nn.Module):
    """``waveform (B, T)``, ``lengths (B,)`` -> ``embeddings (B, D)`` (a mean-pooled speaker model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(wave=waveform, lengths=lengths)


class Ge2eWindowGraph(nn.Module):
    """``windows (W, 25840)`` -> L2-normalised ``embeddings (W, D)``: mel power (no centre padding: the window
    carries its context), the LSTMs, ``finish`` on the last frame, the model's projection."""

    def __init__(self, backbone: nn.Module, project: nn.Module):
        super().__init__()
        self.backbone, self.project = backbone, project

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        from ..backbones.whisper import stft_power_real

        mel_power = self.backbone.frontend
        power = stft_power_real(windows, mel_power.window, center_pad=None)  # (W, 201, 160)
        hidden = (mel_power.mel_filters @ power).transpose(1, 2)  # (W, 160, 40)
        for lstm in self.backbone.layers:
            hidden = lstm(hidden)[0]
        emb = self.project(self.backbone.finish(hidden[:, -1]))
        return nn.functional.normalize(emb, dim=1)


# --------------------------------------------------------------------------- loading what is exported

def _asr_model(folder: Path) -> tuple[nn.Module, dict, dict]:
    from ..asr.evaluate import load_asr_model

    model, vocab, meta = load_asr_model(folder)
    if vocab is None:  # a Whisper decoder model
        from ..errors import InputError

        raise InputError(f"{folder}: a Whisper decoder model (model.head: decoder); export it where Whisper runs: "
                         f"`speech-tl export ct2 {folder} --out DIR` (faster-whisper) or `speech-tl export "
                         "hf` (transformers). `export onnx` exports CTC and speaker models")
    bb = model.backbone
    settings = {"graph": "ctc", "vocabulary": vocab.symbols, "frame_samples": bb.frame_samples,
                "max_input_seconds": bb.max_input_seconds}
    return model, meta, settings


def _speaker_model(model_ref: str) -> tuple[nn.Module, dict, dict]:
    from ..backbones import load_backbone
    from ..checkpoint import fingerprint
    from ..speaker.model import SpeakerModel, load_speaker_model

    if Path(model_ref).is_dir():
        model, meta = load_speaker_model(model_ref)
        fp = meta.get("fingerprint") or fingerprint(model)
        meta = {k: v for k, v in meta.items() if k not in ("config", "speakers")}
    else:  # an unadapted backbone source: the embedder `enroll --model SOURCE` uses
        backbone = load_backbone(model_ref).eval()
        fp = fingerprint(backbone)
        model = SpeakerModel(backbone, 1, "auto")
        meta = {"task": "speaker", "backbone": model_ref, "backbone_arch": backbone.arch()}
    kind = type(model.backbone).__name__
    if model.pooling == "last" and kind == "Ge2eBackbone":
        graph = "ge2e-windows"
    elif (model.pooling == "mean" and any(hasattr(type(m), "traceable") for m in model.backbone.modules())
          or model.pooling == "backbone" and kind == "EcapaBackbone"):
        graph = "pooled"
    else:
        raise ExportError(f"{model_ref}: ONNX export supports GE2E and ECAPA-TDNN speaker models and mean-pooled "
                          f"Whisper or wav2vec2-family ones; this one is {meta['backbone']!r} with {model.pooling!r} "
                          "pooling")
    settings = {"graph": graph, "embedding_dim": model.embedding_dim}
    if graph == "pooled":
        settings["max_input_seconds"] = model.backbone.max_input_seconds
    return model.eval(), {**meta, "fingerprint": fp}, settings


# --------------------------------------------------------------------------- export

def _export_graph(graph: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic: dict) -> None:
    import logging
    import warnings

    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({e}); `pip install onnx onnxscript`"
                          ) from None
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" and the exporter's progress lines
    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_shapes=dynamic, opset_version=OPSET, dynamo=True, external_data=False,
                              verbose=False)
        finally:
            onnx_log.setLevel(level)


def _session(path: Path):
    from ..runtime.onnx import ort_session

    return ort_session(path, torch.device("cpu"))


def _check_audio(check_audio: str | Path | None, seconds: float = 4.0) -> tuple[torch.Tensor, str]:
    """The audio the export is checked on: the given file, else a seeded speech-like signal."""
    if check_audio is not None:
        from ..audio import load_audio

        return torch.as_tensor(load_audio(check_audio)).reshape(-1).float(), str(check_audio)
    t = torch.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000
    x = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.1 * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))
    noise = 0.01 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    return (x + noise).float(), "a synthetic speech-like signal (give --check-audio for real audio)"


def export_onnx(model_ref: str | Path, out: str | Path, check_audio: str | Path | None = None, *,
                quantize: str | None = None, dev: str | Path | None = None, max_cer_increase: float = 0.01,
                optimize: bool = True) -> dict:
    """Export ``model_ref`` (checkpoint folder or speaker backbone source) into the new folder ``out``; returns
    the ``export.json`` written. The folder appears only complete (written beside it, then renamed into place).

    ``optimize``: ONNX Runtime's transformer fusions (:func:`.ort_graph.fuse_transformer`). ``quantize="int8"``:
    int8 weights (:func:`.ort_graph.quantize_int8`); for ASR, ``dev`` (a manifest with transcripts) is decoded with
    the float and the int8 graph, both CERs go into ``export.json``, and the export is refused when int8 is more
    than ``max_cer_increase`` worse (:func:`.ort_graph.quantize_export`)."""
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be int8 (or none), got {quantize!r}")
    if dev is not None and quantize is None:
        raise ExportError("--dev measures what int8 quantisation costs; it needs --quantize int8")
    from ..atomic import replace_dir, temporary_dir_beside
    from ..checkpoint import read_meta, resolve_checkpoint

    out = Path(out)
    task = "speaker"
    folder = None
    if Path(model_ref).is_dir():
        folder = resolve_checkpoint(model_ref)
        task = read_meta(folder)["task"]
    if task == "speaker" and dev is not None:
        raise ExportError(f"{model_ref}: --dev scores an ASR export's int8 CER; a speaker export's int8 graph is "
                          "checked by its embeddings of the check audio (leave --dev out)")
    if task == "asr":
        model, meta, settings = _asr_model(folder)
    elif task == "speaker":
        model, meta, settings = _speaker_model(str(model_ref))
    else:
        raise ExportError(f"{model_ref}: a {task!r} checkpoint; ONNX export takes ASR and speaker checkpoints (export "
                          "the views of a multitask run: RUN/asr or RUN/speaker)")
    wave, audio_name = _check_audio(check_audio)
    if wave.numel() < MIN_CHECK_SAMPLES:  # a short clip repeated: the export's example inputs need some length
        wave = wave.repeat(MIN_CHECK_SAMPLES // max(1, wave.numel()) + 1)[:MIN_CHECK_SAMPLES]
    if not bool(torch.isfinite(wave).all()) or float(wave.abs().max()) == 0.0:
        raise InputError(f"{audio_name}: silent or not finite audio; give --check-audio a recording of speech")
    tmp = temporary_dir_beside(out)
    try:
        info, feeds, wave = _export_into(tmp, model, task, settings, wave, optimize=optimize)
        export = {"format": FORMAT, "version": VERSION, "task": task, **settings, "sample_rate": 16000,
                  "opset": OPSET, "torch": torch.__version__,
                  "meta": {k: v for k, v in meta.items() if k != "folder"},
                  "source": str(Path(model_ref).resolve()) if folder is not None else str(model_ref),
                  "verified": {"audio": audio_name, **info, "tolerance": TOLERANCE[task]}}
        if not info["within_tolerance"]:  # NaN fails too
            tol = TOLERANCE[task]
            raise ExportError(f"{model_ref}: ONNX Runtime differs from torch by up to {info['max_abs_diff']:.3g} on "
                              f"{audio_name} (tolerance {tol['atol']:g} + {tol['rtol']:g} x |torch|); the export is "
                              "not written")
        _write_metadata(tmp / ONNX_FILE, export)
        (tmp / EXPORT_FILE).write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
        if task == "asr":
            for name in ("vocab.json", "config.yaml", "decoder.json", "lm.arpa"):
                if (folder / name).is_file():
                    shutil.copyfile(folder / name, tmp / name)
        if quantize:
            from .ort_graph import quantize_export

            export["quantization"] = quantize_export(tmp, model, export, feeds, wave, dev, max_cer_increase)
            _write_metadata(tmp / ONNX_FILE, export)
            (tmp / EXPORT_FILE).write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export


def _export_into(tmp: Path, model: nn.Module, task: str, settings: dict, wave: torch.Tensor,
                 optimize: bool = True) -> tuple[dict, dict, torch.Tensor]:
    """Export the graph into ``tmp/model.onnx`` (with ONNX Runtime's transformer fusions when ``optimize`` and the
    model has attention layers) and compare ONNX Runtime with torch on ``wave``; returns ``{"max_abs_diff",
    "within_tolerance", "seconds", "fusions"}`` (see :data:`TOLERANCE`), and the graph's check inputs and the check
    audio as used (cut to the graph's longest input), for comparing the int8 graph later."""
    from .ort_graph import fuse_transformer, is_transformer

    path = tmp / ONNX_FILE
    graph_kind = settings["graph"]
    with traceable(model), torch.no_grad():
        if graph_kind == "ge2e-windows":
            graph = Ge2eWindowGraph(model.backbone, model.project).eval()
            windows = ge2e_windows(wave)
            _export_graph(graph, (windows,), path, ["windows"], ["embeddings"],
                          {"windows": {0: torch.export.Dim("windows", min=1, max=4096)}})
            feeds = {"windows": windows.numpy()}
        else:
            graph = (CtcGraph(model) if task == "asr" else PooledSpeakerGraph(model)).eval()
            limit = int((settings.get("max_input_seconds") or 30.0) * 16000)
            wave = wave[:limit]
            batch = torch.stack([wave, nn.functional.pad(wave[: wave.numel() * 2 // 3], (0, wave.numel()
                                                                                          - wave.numel() * 2 // 3))])
            lengths = torch.tensor([wave.numel(), wave.numel() * 2 // 3])
            samples = torch.export.Dim("samples", min=4000, max=limit)
            batch_dim = torch.export.Dim("batch", min=1, max=1024)
            outputs = ["log_probs", "frame_lengths"] if task == "asr" else ["embeddings"]
            _export_graph(graph, (batch, lengths), path, ["waveform", "lengths"], outputs,
                          {"waveform": {0: batch_dim, 1: samples}, "lengths": {0: batch_dim}})
            feeds = {"waveform": batch.numpy(), "lengths": lengths.numpy()}
    fusions = fuse_transformer(path) if optimize and is_transformer(model) else {}
    got, want = _outputs(path, model, task, graph_kind, feeds, wave)
    tol = TOLERANCE[task]
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    within = all(bool((np.abs(g - w) <= tol["atol"] + tol["rtol"] * np.abs(w)).all())
                 for g, w in zip(got, want, strict=True))
    return {"max_abs_diff": diff, "within_tolerance": within and diff == diff,
            "seconds": round(wave.numel() / 16000, 2), "fusions": fusions}, feeds, wave


def _outputs(path: Path, model: nn.Module, task: str, graph_kind: str, feeds: dict,
             wave: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ONNX Runtime's outputs of the graph at ``path`` on ``feeds`` and the torch model's as it runs in speech-tl
    (not its traceable form), paired: log-probabilities ``(T', V)`` per utterance for ASR, embeddings for speakers."""
    with torch.no_grad():
        if graph_kind == "ge2e-windows":
            want = [model.embed_batch([wave])[0].numpy()]
            from ..speaker.model import average_windows

            got_w = _session(path).run(None, feeds)[0]
            got = [average_windows(torch.from_numpy(got_w), [got_w.shape[0]])[0].numpy()]
        elif task == "asr":
            lp, fl = model(wave=torch.from_numpy(feeds["waveform"]), lengths=torch.from_numpy(feeds["lengths"]))
            want = [lp[i, : int(fl[i])].numpy() for i in range(2)]
            got_lp, got_fl = _session(path).run(None, feeds)
            if not np.array_equal(got_fl, fl.numpy()):
                raise ExportError(f"ONNX frame lengths {got_fl.tolist()} differ from torch's {fl.tolist()}")
            got = [got_lp[i, : int(got_fl[i])] for i in range(2)]
        else:
            want = [model(wave=torch.from_numpy(feeds["waveform"]), lengths=torch.from_numpy(feeds["lengths"])).numpy()]
            got = [_session(path).run(None, feeds)[0]]
    return got, want


def _write_metadata(path: Path, export: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "speech_tl"]  # one entry, the latest
    del model.metadata_props[:]
    for key, value in (*kept, ("speech_tl", json.dumps(export, ensure_ascii=False))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "speech-tl"
    onnx.save(model, str(path))


def check_exportable(model_ref: str | Path) -> None:
    """Refuse early what is neither a checkpoint folder nor a backbone source string."""
    if not Path(model_ref).is_dir() and ":" not in str(model_ref):
        raise InputError(f"{model_ref}: not a checkpoint folder, and not a backbone source such as ge2e:resemblyzer")
