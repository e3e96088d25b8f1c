"""Turn audio into speaker embeddings with a backbone source string or an adapted checkpoint.

``load_embedder("ge2e:resemblyzer")`` or ``load_embedder("exp/speaker_id/bottom2", device="cuda")`` gives an
:class:`Embedder`: ``embed(wave (T,) at 16 kHz) -> (D,)`` L2-normalised, ``embed_batch`` / ``embed_many`` for
many utterances per forward pass, plus ``source`` and a ``fingerprint`` of the exact weights, so that
embeddings of different models are never mixed. Embeddings come back on the CPU whatever the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import load_checked
from ..checkpoint import fingerprint
from ..device import resolve_device
from ..errors import InputError


@dataclass
class Embedder:
    """A model that maps waveforms to L2-normalised speaker embeddings."""

    source: str
    fingerprint: str
    dim: int
    _embed_batch: Callable[[list[torch.Tensor]], torch.Tensor]  # [(T_i,)] on ``device`` -> (B, D)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def embed_batch(self, waves: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[(T_i,)]`` 16 kHz waveforms -> ``(B, D)`` float32 on the CPU, one forward pass."""
        with torch.no_grad():
            e = self._embed_batch([w.float().reshape(-1).to(self.device) for w in waves]).float().cpu()
        return e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def embed_many(self, waves: Sequence[torch.Tensor], batch_size: int = 16) -> torch.Tensor:
        """``(N, D)`` for any number of waveforms, in order, ``batch_size`` per pass (similar lengths together)."""
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
        if not waves:
            return torch.zeros(0, self.dim)
        order = sorted(range(len(waves)), key=lambda i: -waves[i].numel())
        out = torch.zeros(len(waves), self.dim)
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            out[idx] = self.embed_batch([waves[i] for i in idx])
        return out

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed_batch([wave])[0]

    def embed_file(self, path: str | Path) -> torch.Tensor:
        """Load (any format/rate), check (too short, silent, clipped, unreadable) and embed one file."""
        return self.embed(load_checked(path))


def load_embedder(model: str, device: str | torch.device = "cpu", backend: str = "auto") -> Embedder:
    """A backbone source string (unadapted), a speaker checkpoint folder (adapted) or a folder exported by
    ``speech-tl export onnx`` (run by ONNX Runtime), on ``device`` (``auto``, ``cpu``, ``cuda``: see
    :func:`speech_tl.device.resolve_device`); ``backend``: auto, torch or onnx
    (:func:`speech_tl.runtime.onnx.use_onnx`)."""
    from ..runtime.onnx import use_onnx

    dev = resolve_device(device)
    path = Path(model)
    if use_onnx(path, backend):
        return onnx_embedder(path, dev)
    if path.is_dir():
        from .model import load_speaker_model

        net, meta = load_speaker_model(path)
        fp = meta.get("fingerprint") or fingerprint(net)
        return Embedder(str(path.resolve()), fp, net.embedding_dim, net.to(dev).embed_batch, dev)
    from ..backbones import load_backbone

    backbone = load_backbone(model).eval()
    fp = fingerprint(backbone)
    backbone.to(dev)
    if model.startswith("ge2e:"):
        return Embedder(model, fp, backbone.output_dim, lambda waves: ge2e_embed_batch(backbone, waves), dev)

    def mean_pool(waves: list[torch.Tensor]) -> torch.Tensor:
        from ..backbones.base import mean_pool as pool
        from ..data import pad_waves

        wave, lengths = pad_waves(waves)
        feats, out_lengths = backbone(wave.to(dev), lengths.to(dev))
        if hasattr(backbone, "pool"):  # ECAPA: its own attentive statistics pooling
            return backbone.pool(feats, out_lengths)
        return pool(feats, out_lengths)

    return Embedder(model, fp, backbone.output_dim, mean_pool, dev)


def ge2e_embed_batch(backbone, waves: list[torch.Tensor]) -> torch.Tensor:
    """The pretrained GE2E's :func:`~speech_tl.backbones.ge2e.embed_utterance` for many utterances at once:
    all their partial windows in one LSTM pass (equal lengths, nothing padded)."""
    from ..backbones.ge2e import PARTIAL_FRAMES
    from .model import average_windows, ge2e_windows

    windows = [ge2e_windows(backbone.frontend, w) for w in waves]
    hidden = torch.cat(windows)
    lengths = torch.full((hidden.shape[0],), PARTIAL_FRAMES, dtype=torch.long)
    for i in range(len(backbone.layers)):
        hidden = backbone.run_layer(i, hidden, lengths)
    partial = backbone.finish(hidden[:, -1])
    partial = partial / partial.norm(dim=1, keepdim=True)
    return average_windows(partial, [w.shape[0] for w in windows])


def onnx_embedder(folder: str | Path, device: torch.device):
    """An :class:`Embedder` running a speaker folder written by ``speech-tl export onnx`` through ONNX Runtime; its
    fingerprint is the exported model's, so a database enrolled with the checkpoint accepts its export and the other
    way round (``identify/verify --model EXPORTED``, ``enroll --model EXPORTED``)."""
    from ..runtime import ONNX_FILE
    from ..runtime.onnx import ort_session, read_export

    folder = Path(folder)
    export = read_export(folder, "speaker")
    session = ort_session(folder / ONNX_FILE, device)

    if export["graph"] == "ge2e-windows":
        from ..backbones.ge2e import waveform_windows as ge2e_windows
        from .model import average_windows

        def embed(waves: list[torch.Tensor]) -> torch.Tensor:
            windows = [ge2e_windows(w.reshape(-1).cpu().float()) for w in waves]
            out = session.run(None, {"windows": torch.cat(windows).numpy()})[0]
            return average_windows(torch.from_numpy(out), [w.shape[0] for w in windows])
    else:
        from ..data import pad_waves

        limit = export["max_input_seconds"]

        def embed(waves: list[torch.Tensor]) -> torch.Tensor:
            longest = max(w.numel() for w in waves) / export["sample_rate"]
            if limit and longest > limit:  # what the torch model says (the graph would fail inside ONNX Runtime)
                raise InputError(f"input of {longest:.1f} s is longer than this model's {limit:g} s; cut it into "
                                 "shorter segments")
            wave, lengths = pad_waves([w.reshape(-1).cpu().float() for w in waves])
            return torch.from_numpy(session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})[0])

    return Embedder(str(folder.resolve()), str(export["meta"]["fingerprint"]), int(export["embedding_dim"]), embed,
                    torch.device("cpu"))
