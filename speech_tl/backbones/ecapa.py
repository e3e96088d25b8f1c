"""ECAPA-TDNN speaker encoders through SpeechBrain: ``speechbrain:<folder or hub id>``.

A SpeechBrain speaker model folder (e.g. ``speechbrain/spkrec-ecapa-voxceleb``) holds
``hyperparams.yaml`` and ``embedding_model.ckpt``. The YAML is read as plain data (its
``!new:`` tags become mappings, ``!ref <key>`` is substituted; nothing is constructed or
executed), the architecture is built with SpeechBrain's own ``ECAPA_TDNN`` class and the
weights are loaded with ``torch.load(..., weights_only=True)``.

Behind the Backbone interface: frontend = 80-mel filterbank (SpeechBrain ``Fbank``) with
per-utterance mean normalisation, ``layers`` = the TDNN block and the SE-Res2Net blocks
(bottom first), ``finish`` = multi-layer feature aggregation. The hidden state between
layers is the concatenation of every block output so far ``(B, T, sum C)``, because the
aggregation needs all of them. :meth:`EcapaBackbone.pool` is ECAPA's attentive statistics
pooling + batch norm + linear: frame features ``(B, T, C)`` -> embedding ``(B, lin_neurons)``.
Padding is not exact here (the convolutions see it, as in SpeechBrain itself).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
import yaml
from torch import nn

from .base import Backbone, BackboneError


class _TagsAsData(yaml.SafeLoader):
    """SafeLoader that reads ``!new:...``/``!name:...`` nodes as mappings and ``!ref`` as a marker."""


def _tagged(loader, tag_suffix, node):
    if isinstance(node, yaml.MappingNode):
        return {"__tag__": tag_suffix, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {"__tag__": tag_suffix, "__args__": loader.construct_sequence(node, deep=True)}
    return {"__tag__": tag_suffix, "__value__": loader.construct_scalar(node)}


_TagsAsData.add_multi_constructor("!", _tagged)


def read_hyperparams(path: Path) -> dict:
    """``hyperparams.yaml`` as plain data with ``!ref <key>`` resolved from top-level keys."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TagsAsData)  # noqa: S506 - a SafeLoader

    def resolve(v):
        if isinstance(v, dict) and v.get("__tag__") == "ref":
            m = re.fullmatch(r"<([\w.]+)>", str(v.get("__value__", "")).strip())
            if not m or m.group(1) not in data:
                raise BackboneError(f"{path}: cannot resolve !ref {v.get('__value__')!r} (only <top-level key>)")
            return resolve(data[m.group(1)])
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        if isinstance(v, list):
            return [resolve(x) for x in v]
        return v

    return {k: resolve(v) for k, v in data.items()}


class FbankFrontend(nn.Module):
    """SpeechBrain ``Fbank`` + per-utterance mean normalisation: ``(B, T)`` -> ``(B, frames, n_mels)``."""

    traceable = False  # set by :func:`speech_tl.export.onnx.traceable`: the STFT as real convolutions (no complex)

    def __init__(self, n_mels: int = 80):
        super().__init__()
        from speechbrain.lobes.features import Fbank

        self.fbank = Fbank(n_mels=n_mels)

    def _fbank(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, frames, n_mels)``: SpeechBrain's ``Fbank``, or (traceable) the same numbers from the
        power spectrum of :func:`~speech_tl.backbones.whisper.stft_power_real` through SpeechBrain's filterbank."""
        if not self.traceable:
            return self.fbank(wave)
        from .whisper import stft_power_real

        stft = self.fbank.compute_STFT
        if self.fbank.deltas or self.fbank.context or stft.normalized_stft or not stft.center:
            raise BackboneError("this Fbank (deltas, context window, normalised or uncentred STFT) has no "
                                "exportable form")
        power = stft_power_real(wave, stft.window, stft.n_fft, stft.hop_length, center_pad=stft.pad_mode)
        return self.fbank.compute_fbanks(power.transpose(1, 2))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self._fbank(wave.float())
        frames = (torch.div(lengths, 160, rounding_mode="floor") + 1).clamp(max=feats.shape[1])
        valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None])[..., None]
        mean = (feats * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
        return (feats - mean) * valid, frames


class EcapaBackbone(Backbone):
    def __init__(self, ecapa: nn.Module, n_mels: int, source: str, kwargs: dict | None = None):
        super().__init__()
        self.source = source
        self.kwargs = dict(kwargs or {})
        self.n_mels = n_mels
        self.ecapa = ecapa
        self.frontend = FbankFrontend(n_mels)
        self.layers = ecapa.blocks
        self.mfa = ecapa.mfa
        self.channels = list(ecapa.channels)
        self.output_dim = ecapa.fc.conv.out_channels

    def arch(self) -> dict:
        return {"kind": "ecapa", "kwargs": self.kwargs, "n_mels": self.n_mels}

    @staticmethod
    @contextlib.contextmanager
    def export_context():
        """While exporting (:func:`speech_tl.export.onnx.traceable`): SpeechBrain's ``length_to_mask`` sizes its mask
        with ``len(length)``, a Python int that fixes the batch size of an exported graph; the same mask by
        broadcasting instead. ``(B,)`` lengths -> ``(B, max_len)`` mask."""
        import speechbrain.lobes.models.ECAPA_TDNN as sb_ecapa

        original = sb_ecapa.length_to_mask

        def length_to_mask(length, max_len=None, dtype=None, device=None):
            if max_len is None:  # data-dependent size: not exportable either way
                return original(length, max_len, dtype, device)
            mask = torch.arange(max_len, device=length.device, dtype=length.dtype)[None, :] < length[:, None]
            return mask.to(dtype=dtype or length.dtype, device=device or length.device)

        sb_ecapa.length_to_mask = length_to_mask
        try:
            yield
        finally:
            sb_ecapa.length_to_mask = original

    @staticmethod
    def _relative(lengths: torch.Tensor, total: int) -> torch.Tensor:
        return lengths.float() / max(1, total)

    def embed(self, wave, lengths):
        return self.frontend(wave, lengths)

    def run_layer(self, index, hidden, lengths):
        from speechbrain.lobes.models.ECAPA_TDNN import TDNNBlock

        block = self.layers[index]
        x = hidden if index == 0 else hidden[..., -self.channels[index - 1]:]
        x = x.transpose(1, 2)
        out = block(x) if isinstance(block, TDNNBlock) else block(x, lengths=self._relative(lengths, x.shape[-1]))
        out = out.transpose(1, 2)
        return out if index == 0 else torch.cat([hidden, out], dim=-1)

    def finish(self, hidden):
        """Multi-layer feature aggregation over the SE-Res2Net outputs: ``(B, T, channels[-1])``."""
        x = hidden[..., self.channels[0]:].transpose(1, 2)
        return self.mfa(x).transpose(1, 2)

    def pool(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ECAPA's attentive statistics pooling, batch norm and linear layer: ``(B, T, C)`` -> ``(B, D)``."""
        x = feats.transpose(1, 2)
        x = self.ecapa.asp(x, lengths=self._relative(lengths, x.shape[-1]))
        x = self.ecapa.fc(self.ecapa.asp_bn(x))
        return x.squeeze(-1)


def load_ecapa(spec: str, pretrained: bool = True) -> EcapaBackbone:
    """``speechbrain:<folder>`` or ``speechbrain:<hub id>`` (the hub needs a network)."""
    source = f"speechbrain:{spec}"
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(spec, allow_patterns=["hyperparams.yaml", "*.ckpt"]))
        except Exception as e:  # offline, unknown id, ...
            raise BackboneError(f"{source}: not a local folder, and the hub could not be reached (no network?) or "
                                f"has no such model ({str(e).splitlines()[0][:160]})") from None
    hp_path = folder / "hyperparams.yaml"
    if not hp_path.is_file():
        raise BackboneError(f"{source}: {folder} has no hyperparams.yaml; give a SpeechBrain speaker model folder")
    hp = read_hyperparams(hp_path)
    arch = hp.get("embedding_model")
    if not isinstance(arch, dict) or "ECAPA_TDNN" not in str(arch.get("__tag__", "")):
        raise BackboneError(f"{source}: {hp_path} has no ECAPA_TDNN embedding_model (supported: ECAPA-TDNN)")
    kwargs = {k: v for k, v in arch.items() if not k.startswith("__")}
    ecapa = new_ecapa(source, kwargs, hp_path)
    if pretrained:
        ckpt = folder / "embedding_model.ckpt"
        if not ckpt.is_file():
            raise BackboneError(f"{source}: {ckpt} not found")
        ecapa.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    fbank = hp.get("compute_features", {})
    n_mels = int(fbank.get("n_mels", kwargs.get("input_size", 80))) if isinstance(fbank, dict) else 80
    return EcapaBackbone(ecapa, n_mels, source, kwargs)


def new_ecapa(source: str, kwargs: dict, where: object) -> nn.Module:
    """speechbrain's ``ECAPA_TDNN(**kwargs)``, random init; ``where`` names the file the arguments came from."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    try:
        return ECAPA_TDNN(**kwargs)
    except TypeError as e:
        raise BackboneError(f"{source}: {where}: embedding_model arguments not understood ({e})") from None


def ecapa_from_arch(arch: dict, source: str) -> EcapaBackbone:
    """The architecture :meth:`EcapaBackbone.arch` describes, random init."""
    return EcapaBackbone(new_ecapa(source, arch["kwargs"], "the checkpoint's backbone_arch"), int(arch["n_mels"]),
                         source, arch["kwargs"])
