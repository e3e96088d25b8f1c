"""Whisper encoders: from a CTranslate2 (faster-whisper) folder or a Hugging Face checkpoint.

The blocks are transformers' own ``WhisperEncoder`` modules; a CTranslate2 ``model.bin``
is mapped into them (fused q/k/v split apart). Inputs shorter than 30 s run with the
position table sliced to their length, and padded frames are masked out of attention.

Shapes: wave ``(B, T)`` 16 kHz -> log-mel ``(B, n_mels, T // 160)`` -> conv stem (stride 2)
-> hidden ``(B, ceil(T // 160 / 2), d_model)``: 50 frames per second.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .base import Backbone, BackboneError, padding_mask
from .ct2_format import read_ct2_model
from .ct2_sources import ct2_files, resolve_ct2_dir  # noqa: F401  (resolve_ct2_dir: where CTranslate2 loads it)

N_FFT = 400
HOP = 160


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram: ``(B, T)`` samples -> ``(B, n_mels, T // 160)``, lengths in frames.

    Same numbers as ``WhisperFeatureExtractor``: Hann-windowed 400-point STFT, Slaney mel
    filters, log10, floor at (max - 8) per utterance over its own frames, then (x + 4) / 4.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000):
        super().__init__()
        import librosa

        mel = librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=n_mels)
        self.register_buffer("mel_filters", torch.from_numpy(mel.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    traceable = False  # set by :func:`speech_tl.export.onnx.traceable`: no complex numbers, no Python loops

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.traceable:
            power = stft_power_real(reflect_tails_gather(wave.float(), lengths, N_FFT // 2), self.window)[..., :-1]
        else:
            wave = reflect_tails(wave.float(), lengths, N_FFT // 2)
            stft = torch.stft(wave, N_FFT, HOP, window=self.window, return_complex=True)
            power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        frames = torch.div(lengths, HOP, rounding_mode="floor").clamp(min=1, max=log_spec.shape[-1])
        valid = padding_mask(frames, log_spec.shape[-1])[:, None, :]
        peak = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0, frames


def reflect_tails(wave: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """Fill the ``n`` samples after each utterance's end with its reflection, as ``torch.stft``'s
    centre padding does at the end of an unpadded signal, so a padded batch gives each
    utterance the features it gets alone (up to float rounding). ``wave`` ``(B, T)``."""
    short = [(i, int(n_)) for i, n_ in enumerate(lengths.tolist()) if n_ < wave.shape[1]]
    if not short:
        return wave
    wave = wave.clone()
    for i, length in short:
        k = min(n, wave.shape[1] - length, length - 1)
        if k > 0:
            wave[i, length:length + k] = wave[i, length - 1 - k:length - 1].flip(0)
    return wave


def reflect_tails_gather(wave: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`reflect_tails` as one gather (the same values; traceable for export, no Python loop over rows)."""
    t = torch.arange(wave.shape[1], device=wave.device)[None, :]
    end = lengths.to(wave.device)[:, None]
    j = t - end
    use = (j >= 0) & (j < torch.clamp(end - 1, max=n))
    source = torch.where(use, end - 2 - j, t).clamp(min=0, max=wave.shape[1] - 1)
    return torch.where(use, wave.gather(1, source), wave)


def stft_power_real(wave: torch.Tensor, window: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP,
                    center_pad: str | None = "reflect") -> torch.Tensor:
    """``|torch.stft(wave, n_fft, hop, window, center=True)|**2`` ``(B, n_fft // 2 + 1, frames)`` computed as two
    real convolutions with windowed cosine and sine kernels: ONNX has no complex numbers. ``wave`` ``(B, T)``;
    ``center_pad``: the centre padding's mode (``reflect``, ``constant`` for zeros; None: ``center=False``)."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    phase = 2 * torch.pi * k * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    kernels = torch.cat([torch.cos(phase), torch.sin(phase)]) * window.double()[None, :]
    x = wave[:, None, :]
    if center_pad is not None:
        x = nn.functional.pad(x, (n_fft // 2, n_fft // 2), mode=center_pad)
    spec = nn.functional.conv1d(x, kernels.to(wave.dtype)[:, None, :].to(wave.device), stride=hop)
    re, im = spec.chunk(2, dim=1)
    return re * re + im * im


class WhisperStem(nn.Module):
    """Log-mel, the two convolutions and the (sliced) sinusoidal position table."""

    def __init__(self, encoder: nn.Module, n_mels: int):
        super().__init__()
        self.logmel = WhisperLogMel(n_mels)
        self.conv1, self.conv2, self.embed_positions = encoder.conv1, encoder.conv2, encoder.embed_positions

    def from_features(self, feats: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_mels, F)`` log-mel -> ``(B, ceil(F / 2), D)`` and output lengths."""
        # frames past each utterance's end must look like the convolutions' zero padding
        traceable = self.logmel.traceable  # exported: always masked (a data-dependent branch cannot be exported)
        if traceable or bool((frames < feats.shape[-1]).any()):
            feats = feats * padding_mask(frames, feats.shape[-1])[:, None, :]
        x = nn.functional.gelu(self.conv1(feats))
        if traceable or bool((frames < x.shape[-1]).any()):
            x = x * padding_mask(frames, x.shape[-1])[:, None, :]
        x = nn.functional.gelu(self.conv2(x)).permute(0, 2, 1)
        n = x.shape[1]
        if not traceable and n > self.embed_positions.num_embeddings:
            raise InputError(f"input of {n / 50:.1f} s is longer than Whisper's "
                             f"{self.embed_positions.num_embeddings / 50:.0f} s; cut it into shorter segments, e.g. "
                             "data.max_duration for training (transcription and evaluation do so themselves: "
                             "speech_tl.asr.infer)")
        x = x + self.embed_positions.weight[:n]
        return x, torch.div(frames + 1, 2, rounding_mode="floor")

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.logmel(wave, lengths)
        return self.from_features(feats, frames)


class WhisperBackbone(Backbone):
    """A Whisper encoder behind the Backbone interface (``layers``: the transformer blocks)."""

    def __init__(self, encoder: nn.Module, source: str):
        super().__init__()
        cfg = encoder.config
        self.source = source
        self.config = cfg
        self.output_dim = cfg.d_model
        self.frontend = WhisperStem(encoder, cfg.num_mel_bins)
        self.layers = encoder.layers
        self.layer_norm = encoder.layer_norm
        # the position table bounds the input: 1500 positions x 2 (conv stride) x 160 samples = 30 s
        self.frame_samples = 2 * HOP
        self.max_input_seconds = encoder.embed_positions.num_embeddings * self.frame_samples / self.sample_rate

    def arch(self) -> dict:
        return {"kind": "whisper", "config": self.config.to_dict()}

    input_augment: str | None = None  # "spec": SpecAugment on the log-mel while ``augmenting`` is set
    augmenting: bool = False
    # None: inputs run at their own length (padding masked); 30.0: every input padded with silence to 30 s, as
    # Whisper was trained and as faster-whisper runs it (set for a Whisper decoder, model.pad_seconds)
    pad_seconds: float | None = None

    def pad_input(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` -> ``(B, pad_seconds)`` of silence-padded audio with full lengths, when ``pad_seconds`` is set."""
        if not self.pad_seconds:
            return wave, lengths
        n = int(self.pad_seconds * self.sample_rate)
        if wave.shape[1] < n:
            wave = nn.functional.pad(wave, (0, n - wave.shape[1]))
        return wave, torch.full_like(lengths, max(n, int(lengths.max())))

    def embed(self, wave, lengths):
        wave, lengths = self.pad_input(wave, lengths)
        if self.input_augment == "spec" and self.augmenting:
            from ..data import spec_augment

            feats, frames = self.frontend.logmel(wave, lengths)
            return self.frontend.from_features(spec_augment(feats, frames, None), frames)
        return self.frontend(wave, lengths)

    def run_layer(self, index, hidden, lengths):
        mask = None
        if self.frontend.logmel.traceable or bool((lengths < hidden.shape[1]).any()):
            keep = padding_mask(lengths, hidden.shape[1])
            mask = torch.zeros(keep.shape, dtype=hidden.dtype, device=hidden.device)
            mask = mask.masked_fill(~keep, torch.finfo(hidden.dtype).min)[:, None, None, :]
        out = self.layers[index](hidden, mask)
        return out[0] if isinstance(out, tuple) else out

    def finish(self, hidden):
        return self.layer_norm(hidden)

    def encode_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Whole encoder on log-mel ``(B, n_mels, F)`` without padding: ``(B, ceil(F/2), D)``."""
        frames = torch.full((feats.shape[0],), feats.shape[-1], dtype=torch.long, device=feats.device)
        hidden, lengths = self.frontend.from_features(feats, frames)
        return self.forward_from(0, hidden, lengths)


# --------------------------------------------------------------------------- loading

def new_whisper_encoder(d_model: int, layers: int, heads: int, ffn: int, n_mels: int, positions: int) -> nn.Module:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads,
                        encoder_ffn_dim=ffn, num_mel_bins=n_mels, max_source_positions=positions,
                        attn_implementation="sdpa")
    return WhisperEncoder(cfg)


def ct2_encoder_state(variables: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map CTranslate2 Whisper encoder variables to ``WhisperEncoder`` state-dict keys (float32)."""
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32).copy())

    layer_ids = sorted({int(m.group(1)) for k in variables if (m := re.match(r"encoder/layer_(\d+)/", k))})
    pos = variables["encoder/position_encodings/encodings"]
    dims = {"d_model": int(pos.shape[1]), "layers": len(layer_ids),
            "heads": int(variables["encoder/num_heads"]) if "encoder/num_heads" in variables else None,
            "ffn": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "n_mels": int(variables["encoder/conv1/weight"].shape[1]), "positions": int(pos.shape[0])}
    sd = {"conv1.weight": t("encoder/conv1/weight"), "conv1.bias": t("encoder/conv1/bias"),
          "conv2.weight": t("encoder/conv2/weight"), "conv2.bias": t("encoder/conv2/bias"),
          "embed_positions.weight": t("encoder/position_encodings/encodings"),
          "layer_norm.weight": t("encoder/layer_norm/gamma"), "layer_norm.bias": t("encoder/layer_norm/beta")}
    for i in layer_ids:
        p, q = f"encoder/layer_{i}/", f"layers.{i}."
        wq, wk, wv = t(p + "self_attention/linear_0/weight").chunk(3)
        bq, _, bv = t(p + "self_attention/linear_0/bias").chunk(3)  # the k bias is zero: Whisper has none
        sd.update({
            q + "self_attn.q_proj.weight": wq, q + "self_attn.q_proj.bias": bq,
            q + "self_attn.k_proj.weight": wk,
            q + "self_attn.v_proj.weight": wv, q + "self_attn.v_proj.bias": bv,
            q + "self_attn.out_proj.weight": t(p + "self_attention/linear_1/weight"),
            q + "self_attn.out_proj.bias": t(p + "self_attention/linear_1/bias"),
            q + "self_attn_layer_norm.weight": t(p + "self_attention/layer_norm/gamma"),
            q + "self_attn_layer_norm.bias": t(p + "self_attention/layer_norm/beta"),
            q + "fc1.weight": t(p + "ffn/linear_0/weight"), q + "fc1.bias": t(p + "ffn/linear_0/bias"),
            q + "fc2.weight": t(p + "ffn/linear_1/weight"), q + "fc2.bias": t(p + "ffn/linear_1/bias"),
            q + "final_layer_norm.weight": t(p + "ffn/layer_norm/gamma"),
            q + "final_layer_norm.bias": t(p + "ffn/layer_norm/beta"),
        })
    return sd, dims


def read_whisper_ct2(spec: str) -> dict[str, np.ndarray]:
    """The variables of ``whisper-ct2:<spec>`` (a folder or a package, :mod:`.ct2_sources`), checked to be Whisper."""
    files = ct2_files(spec)
    variables, info = read_ct2_model(list(files.parts))
    if info.get("name") not in (None, "WhisperSpec") or "encoder/conv1/weight" not in variables:
        raise BackboneError(f"{files.source}: {files.parts[0]} is a {info.get('name')} model, not Whisper")
    return variables


def load_whisper_ct2(spec: str, pretrained: bool = True) -> WhisperBackbone:
    """``whisper-ct2:<spec>``: a Whisper encoder from a CTranslate2 model (see :mod:`.ct2_sources`)."""
    source = f"whisper-ct2:{spec}"
    variables = read_whisper_ct2(spec)
    state, dims = ct2_encoder_state(variables)
    if dims["heads"] is None:
        dims["heads"] = max(1, dims["d_model"] // 64)
    encoder = new_whisper_encoder(dims["d_model"], dims["layers"], dims["heads"], dims["ffn"], dims["n_mels"],
                           dims["positions"])
    if pretrained:
        encoder.load_state_dict(state, strict=True)
    else:  # same architecture, random init; the sinusoidal position table is not learned
        encoder.embed_positions.weight.data.copy_(state["embed_positions.weight"])
    return WhisperBackbone(encoder, source)


def whisper_from_arch(arch: dict, source: str) -> WhisperBackbone:
    """The architecture :meth:`WhisperBackbone.arch` describes, random init (a checkpoint's weights go on top)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig.from_dict(arch["config"])
    cfg._attn_implementation = "sdpa"
    return WhisperBackbone(WhisperEncoder(cfg), source)


def whisper_from_hf(model: nn.Module, source: str) -> WhisperBackbone:
    """Wrap the encoder of a transformers Whisper model (``WhisperModel``/``...ForConditionalGeneration``)."""
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
    encoder.config._attn_implementation = "sdpa"
    return WhisperBackbone(encoder, source)
