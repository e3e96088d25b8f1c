"""wav2vec 2.0, HuBERT and WavLM encoders, from transformers (``hf:``) or torchaudio (``torchaudio:``).

The blocks are the libraries' own modules; only the glue between them is written here, in the
order each library runs it:

- frontend: (input normalisation) -> CNN feature encoder -> feature projection -> padded frames
  zeroed -> ``+ pos_conv_embed(x)`` -> (encoder layer norm, for post-norm models) -> dropout
- ``layers``: the transformer blocks, bottom first
- finish: the encoder's final layer norm, for pre-norm models (transformers'
  ``do_stable_layer_norm=True``, torchaudio's ``encoder_layer_norm_first=True``); nothing otherwise.

Shapes: wave ``(B, T)`` 16 kHz -> CNN ``(B, C, T')`` -> hidden ``(B, T', D)``, where ``T'`` follows
the conv length formula ``floor((L - kernel) / stride) + 1`` layer by layer; for the standard
7-layer CNN (receptive field 400 samples, stride 320) ``T' = floor((T - 400) / 320) + 1``, 49 frames
per second. Utterances shorter than the receptive field are refused (ValueError).

Padded batches give each utterance exactly what it gets alone:

- input normalisation (zero mean, unit variance) uses each utterance's own valid samples, when
  the checkpoint asks for it (transformers: ``do_normalize`` in ``preprocessor_config.json``,
  default True; torchaudio: the bundle's ``_normalize_waveform``, whose own wrapper would
  normalise over the whole padded batch at once);
- a CNN frame is valid when its receptive field lies inside the utterance (the conv length
  formula), so valid frames never see padding; the one exception is the group norm of the base
  models' first conv layer (``feat_extract_norm="group"`` / ``extractor_mode="group_norm"``),
  which normalises each channel over time: in a padded batch its statistics are taken over each
  utterance's valid frames only (the libraries' own forward would include the padding);
- padded frames are zeroed before the positional convolution, as the convolution's own zero
  padding is what an utterance sees past its end when alone;
- padded frames are masked out of attention as keys.

WavLM's relative position bias is computed by the first layer's embedding table and then reused,
ungated, by every layer; :meth:`run_layer` recomputes it from ``layers[0]`` for any layer, so
``forward_from(k)`` needs no state from the prefix.

Not applied (training-time regularisers of the libraries' own forward): SpecAugment-style masking
(``mask_time_prob``, ``masked_spec_embed``) and LayerDrop; dropout modules are kept.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .base import Backbone, BackboneError, padding_mask

HF_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
TORCHAUDIO_NORM_EPS = 1e-5  # torchaudio's bundles: nn.functional.layer_norm over the waveform


def normalize_waves(wave: torch.Tensor, lengths: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its valid samples; padding set to 0.

    ``wave`` ``(B, T)``, ``lengths`` ``(B,)`` -> ``(B, T)``; ``(x - mean) / sqrt(var + eps)``
    with the biased variance, as transformers' feature extractor and torchaudio's bundles do.
    """
    keep = padding_mask(lengths, wave.shape[1]).to(wave.dtype)
    n = lengths.clamp(min=1).to(wave.dtype)[:, None]
    mean = (wave * keep).sum(dim=1, keepdim=True) / n
    var = (((wave - mean) * keep) ** 2).sum(dim=1, keepdim=True) / n
    return (wave - mean) / torch.sqrt(var + eps) * keep


def masked_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` applied to ``(B, C, F)`` with its statistics over each utterance's first ``frames[b]`` frames."""
    b, c, f = x.shape
    g = norm.num_groups
    keep = padding_mask(frames, f).to(x.dtype)[:, None, None, :]
    xg = x.reshape(b, g, c // g, f)
    n = (frames.clamp(min=1) * (c // g)).to(x.dtype)[:, None, None, None]
    mean = (xg * keep).sum(dim=(2, 3), keepdim=True) / n
    var = (((xg - mean) * keep) ** 2).sum(dim=(2, 3), keepdim=True) / n
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, f)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y


class ConvFeatureEncoder(nn.Module):
    """The CNN feature encoder: ``(B, T)`` samples -> ``(B, C, T')`` and frame lengths ``(B,)``.

    Wraps the library's own conv blocks (``conv_layers``); each block has ``.conv`` and optionally
    ``.layer_norm``. Blocks are run as the library runs them, except a group-normed block in a
    padded batch (see :func:`masked_group_norm`).
    """

    traceable = False  # set for ONNX export (speech_tl.export.onnx.traceable): masks always, no data-dependent branch

    def __init__(self, conv_layers: nn.ModuleList, torchaudio_blocks: bool = False):
        super().__init__()
        self.conv_layers = conv_layers
        self.torchaudio_blocks = torchaudio_blocks

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame."""
        field = 1
        for layer in reversed(self.conv_layers):
            field = (field - 1) * layer.conv.stride[0] + layer.conv.kernel_size[0]
        return field

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames for ``lengths`` samples: ``floor((L - kernel) / stride) + 1`` per layer."""
        for layer in self.conv_layers:
            lengths = torch.div(lengths - layer.conv.kernel_size[0], layer.conv.stride[0], rounding_mode="floor") + 1
        return lengths

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = wave[:, None, :]
        frames = lengths
        for layer in self.conv_layers:
            frames = torch.div(frames - layer.conv.kernel_size[0], layer.conv.stride[0], rounding_mode="floor") + 1
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                x = layer.conv(x)
                if self.traceable or bool((frames < x.shape[-1]).any()):
                    x = masked_group_norm(x, frames, norm)
                else:
                    x = norm(x)
                x = nn.functional.gelu(x) if self.torchaudio_blocks else layer.activation(x)
            elif self.torchaudio_blocks:
                x = layer(x, None)[0]
            else:
                x = layer(x)
        return x, frames


class Wav2Vec2Frontend(nn.Module):
    """Waveform -> the first layer's input: ``(B, T)`` -> ``(B, T', D)`` and lengths ``(B,)``.

    ``layer_norm`` is the encoder's layer norm for post-norm models (applied after the positional
    convolution, before the first layer) and ``None`` for pre-norm ones.
    """

    traceable = False  # as ConvFeatureEncoder.traceable

    def __init__(self, feature_extractor: ConvFeatureEncoder, feature_projection: nn.Module,
                 pos_conv_embed: nn.Module, layer_norm: nn.Module | None, dropout: nn.Module,
                 normalize: bool, norm_eps: float):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.feature_projection = feature_projection
        self.pos_conv_embed = pos_conv_embed
        self.layer_norm = layer_norm
        self.dropout = dropout
        self.normalize = normalize
        self.norm_eps = norm_eps

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(device=wave.device, dtype=torch.long)
        wave = wave.to(next(self.feature_projection.parameters()).dtype)
        if self.normalize:
            wave = normalize_waves(wave, lengths, self.norm_eps)
        frames = self.feature_extractor.output_lengths(lengths)
        if not self.traceable and bool((frames < 1).any()):
            short = int(lengths[frames < 1].min())
            raise InputError(f"an utterance of {short} samples is shorter than the CNN's receptive field "
                             f"({self.feature_extractor.receptive_field} samples); leave such clips out (e.g. "
                             "data.min_duration, speech-tl manifest filter --min-duration)")
        x, frames = self.feature_extractor(wave, lengths)
        x = self.feature_projection(x.transpose(1, 2))
        if isinstance(x, tuple):  # transformers' wav2vec2/wavlm also return the normed CNN features
            x = x[0]
        if self.traceable or bool((frames < x.shape[1]).any()):
            x = x * padding_mask(frames, x.shape[1])[:, :, None].to(x.dtype)
        x = x + self.pos_conv_embed(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.dropout(x), frames


class Wav2Vec2FamilyBackbone(Backbone):
    """Shared part of the transformers and torchaudio wrappers; subclasses implement :meth:`run_layer`."""

    def __init__(self, frontend: Wav2Vec2Frontend, layers: nn.ModuleList, final_norm: nn.Module | None,
                 output_dim: int, source: str, relative_position_bias: bool):
        super().__init__()
        self.source = source
        self.output_dim = output_dim
        self.frontend = frontend
        self.layers = layers
        self.layer_norm = final_norm
        self.relative_position_bias = relative_position_bias

    @property
    def normalize(self) -> bool:
        """Whether waveforms are normalised (zero mean, unit variance per utterance) before the CNN."""
        return self.frontend.normalize

    def embed(self, wave, lengths):
        return self.frontend(wave, lengths)

    def finish(self, hidden):
        return hidden if self.layer_norm is None else self.layer_norm(hidden)

    def position_bias(self, hidden: torch.Tensor) -> torch.Tensor:
        """WavLM: the (ungated) relative position bias of ``layers[0]``, ``(B, heads, T', T')``."""
        attention = self.layers[0].attention
        t = hidden.shape[1]
        bias = attention.compute_bias(t, t).to(device=hidden.device)
        return bias.unsqueeze(0).expand(hidden.shape[0], -1, -1, -1)


class Wav2Vec2Backbone(Wav2Vec2FamilyBackbone):
    """A transformers ``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel`` behind the Backbone interface.

    ``config`` is the model's config; the model object itself is not kept (its modules are).
    """

    def __init__(self, model: nn.Module, source: str, normalize: bool = True):
        cfg = model.config
        if getattr(cfg, "add_adapter", False):
            raise BackboneError(f"{source}: add_adapter=True (a downsampling adapter after the encoder) "
                                "is not supported")
        encoder = model.encoder
        stable = bool(getattr(cfg, "do_stable_layer_norm", False))
        frontend = Wav2Vec2Frontend(ConvFeatureEncoder(model.feature_extractor.conv_layers),
                                    model.feature_projection, encoder.pos_conv_embed,
                                    None if stable else encoder.layer_norm, encoder.dropout, normalize, HF_NORM_EPS)
        super().__init__(frontend, encoder.layers, encoder.layer_norm if stable else None, cfg.hidden_size, source,
                         relative_position_bias=cfg.model_type == "wavlm")
        self.config = cfg

    def arch(self) -> dict:
        return {"kind": "hf-wav2vec2", "config": self.config.to_dict(), "normalize": self.normalize}

    def run_layer(self, index, hidden, lengths):
        padded = self.frontend.traceable or bool((lengths < hidden.shape[1]).any())
        keep = padding_mask(lengths, hidden.shape[1]) if padded else None
        if self.relative_position_bias:
            # WavLM: key padding via the 2-D mask; the bias is recomputed by layer 0 itself
            bias = None
            if index > 0:
                bias = self.position_bias(hidden).reshape(-1, hidden.shape[1], hidden.shape[1])
            with warnings.catch_warnings():
                # transformers' WavLM hands torch a bool key-padding mask next to the float bias
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                out = self.layers[index](hidden, attention_mask=keep, position_bias=bias)
        else:
            mask = None
            if keep is not None:
                from transformers.masking_utils import create_bidirectional_mask

                mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=keep)
            out = self.layers[index](hidden, attention_mask=mask)
        return out[0] if isinstance(out, tuple) else out


class TorchaudioWav2Vec2Backbone(Wav2Vec2FamilyBackbone):
    """A ``torchaudio.models.Wav2Vec2Model`` (wav2vec 2.0, HuBERT or WavLM architecture; no ``aux`` head).

    ``params`` are the factory's keyword arguments (``wav2vec2_model`` or ``wavlm_model``).
    """

    def __init__(self, model: nn.Module, source: str, normalize: bool, params: dict[str, Any] | None = None,
                 model_type: str = "Wav2Vec2"):
        transformer = model.encoder.transformer
        # Transformer.layer_norm_first: its norm runs before the layers (post-norm blocks, the base
        # models), otherwise after them (pre-norm blocks, encoder_layer_norm_first=True)
        norm_before_layers = bool(transformer.layer_norm_first)
        frontend = Wav2Vec2Frontend(ConvFeatureEncoder(model.feature_extractor.conv_layers, torchaudio_blocks=True),
                                    model.encoder.feature_projection, transformer.pos_conv_embed,
                                    transformer.layer_norm if norm_before_layers else None, transformer.dropout,
                                    normalize, TORCHAUDIO_NORM_EPS)
        wavlm = getattr(transformer.layers[0].attention, "rel_attn_embed", None) is not None
        super().__init__(frontend, transformer.layers, None if norm_before_layers else transformer.layer_norm,
                         transformer.pos_conv_embed.embed_dim, source, relative_position_bias=wavlm)
        self.params = dict(params or {})
        self.model_type = model_type

    def arch(self) -> dict:
        return {"kind": "torchaudio", "model_type": self.model_type, "params": self.params,
                "normalize": self.normalize}

    def run_layer(self, index, hidden, lengths):
        padded = self.frontend.traceable or bool((lengths < hidden.shape[1]).any())
        pad = ~padding_mask(lengths, hidden.shape[1]) if padded else None
        if self.relative_position_bias:
            bias = self.position_bias(hidden) if index > 0 else None
            if pad is not None:  # additive, the bias's type (a bool mask makes torch warn)
                pad = torch.zeros(pad.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(pad, float("-inf"))
            out, _ = self.layers[index](hidden, attention_mask=None, position_bias=bias, key_padding_mask=pad)
        else:
            mask = None if pad is None else ~pad[:, None, None, :].expand(-1, 1, hidden.shape[1], -1)
            out, _ = self.layers[index](hidden, attention_mask=mask)
        return out


# --------------------------------------------------------------------------- loading: transformers

def hf_do_normalize(spec: str) -> bool:
    """``do_normalize`` from the checkpoint's ``preprocessor_config.json``; True when there is none."""
    path: Path | None = None
    if Path(spec).expanduser().is_dir():
        candidate = Path(spec).expanduser() / "preprocessor_config.json"
        path = candidate if candidate.is_file() else None
    else:
        try:
            from transformers.utils import cached_file

            found = cached_file(spec, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)
            path = Path(found) if found else None
        except Exception:  # offline or no such file: the models' default
            path = None
    if path is None:
        return True
    return bool(json.loads(path.read_text()).get("do_normalize", True))


def wav2vec2_from_arch(arch: dict, source: str) -> Wav2Vec2FamilyBackbone:
    """The architecture ``arch()`` describes (transformers' or torchaudio's), random init."""
    if arch["kind"] == "torchaudio":
        return _build_torchaudio(source, arch["model_type"], arch["params"], None, bool(arch["normalize"]))
    from transformers import AutoConfig, AutoModel

    config = dict(arch["config"])
    return wav2vec2_from_hf(AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config)), source,
                            bool(arch["normalize"]))


def wav2vec2_from_hf(model: nn.Module, source: str, normalize: bool = True) -> Wav2Vec2Backbone:
    """Wrap a transformers wav2vec2-family base model (``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel``)."""
    base = getattr(model, "base_model", model)
    return Wav2Vec2Backbone(base, source, normalize)


# --------------------------------------------------------------------------- loading: torchaudio

def _torchaudio_factory(model_type: str):
    from torchaudio.models import wav2vec2_model, wavlm_model

    factories = {"Wav2Vec2": wav2vec2_model, "WavLM": wavlm_model}
    if model_type not in factories:
        raise ValueError(f"model type {model_type!r} is not one of {sorted(factories)}")
    return factories[model_type]


def _wav2vec2_bundles() -> list[str]:
    import torchaudio.pipelines as pipelines

    return sorted(n for n in dir(pipelines) if isinstance(getattr(pipelines, n), pipelines.Wav2Vec2Bundle))


def _clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ASR head (``aux.*``) and the ``model.`` prefix of torchaudio's normalising wrapper."""
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith("aux.")}


def _read_pt(source: str, path: Path) -> Any:
    if not path.is_file():
        raise BackboneError(f"{source}: no such file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise BackboneError(f"{source}: cannot read {path} as a torch.save'd state dict "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _build_torchaudio(source: str, model_type: str, params: dict[str, Any], state: dict | None,
                      normalize: bool) -> TorchaudioWav2Vec2Backbone:
    params = {**params, "aux_num_out": None}
    try:
        model = _torchaudio_factory(model_type)(**params)
    except (TypeError, ValueError) as e:
        raise BackboneError(f"{source}: cannot build a torchaudio {model_type} model from these params ({e})") from None
    if state is not None:
        try:
            model.load_state_dict(_clean_state_dict(state), strict=True)
        except RuntimeError as e:
            raise BackboneError(f"{source}: the weights do not fit the architecture "
                                f"({str(e).splitlines()[0]} ...)") from None
    return TorchaudioWav2Vec2Backbone(model, source, normalize, params, model_type)


def load_torchaudio(spec: str, pretrained: bool = True) -> TorchaudioWav2Vec2Backbone:
    """``torchaudio:<BUNDLE>``, ``torchaudio:<BUNDLE>@<state_dict.pt>`` or ``torchaudio:custom@<checkpoint.pt>``.

    - ``<BUNDLE>``: a ``torchaudio.pipelines`` wav2vec2-family bundle (``WAV2VEC2_BASE``,
      ``WAV2VEC2_ASR_BASE_960H``, ``HUBERT_LARGE``, ``WAVLM_BASE_PLUS``, ...); its weights are
      downloaded into (or read from) torch hub's cache, ``<torch.hub.get_dir()>/checkpoints/``.
    - ``<BUNDLE>@<path>``: the bundle's architecture with a state dict saved by ``torch.save``
      (the downloaded ``.pth`` file, or ``model.state_dict()``); the ASR head ``aux.*`` is ignored.
    - ``custom@<path>``: any architecture torchaudio's factories build; the file is a dict
      ``{"params": <kwargs of torchaudio.models.wav2vec2_model (or wavlm_model)>, "state_dict": ...,
      "model_type": "Wav2Vec2" | "WavLM" (default "Wav2Vec2"), "normalize_waveform": bool (default False)}``.

    Files are read with ``torch.load(weights_only=True)``. ``pretrained=False`` builds the same
    architecture with random weights (for ``custom@`` the file is still read for its params).
    """
    source = f"torchaudio:{spec}"
    name, at, path_str = spec.partition("@")
    path = Path(path_str).expanduser() if at else None
    if at and not path_str:
        raise BackboneError(f"{source}: expected '<BUNDLE>@<path to a state dict .pt>'")

    if name == "custom":
        if path is None:
            raise BackboneError(f"{source}: 'custom' needs a checkpoint: torchaudio:custom@<path.pt> with "
                                "{'params': ..., 'state_dict': ...}")
        ckpt = _read_pt(source, path)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("params"), dict):
            raise BackboneError(f"{source}: {path} must hold a dict {{'params': {{...}}, 'state_dict': {{...}}}} "
                                "(params: keyword arguments of torchaudio.models.wav2vec2_model)")
        if pretrained and "state_dict" not in ckpt:
            raise BackboneError(f"{source}: {path} has params but no 'state_dict'")
        state = ckpt["state_dict"] if pretrained else None
        return _build_torchaudio(source, str(ckpt.get("model_type", "Wav2Vec2")), ckpt["params"], state,
                                 bool(ckpt.get("normalize_waveform", False)))

    import torchaudio.pipelines as pipelines

    bundle = getattr(pipelines, name, None)
    if not isinstance(bundle, pipelines.Wav2Vec2Bundle):
        raise BackboneError(f"{source}: {name!r} is not a wav2vec2-family torchaudio bundle; one of "
                            f"{', '.join(_wav2vec2_bundles())}, or custom@<path>")
    if float(bundle._sample_rate) != Backbone.sample_rate:
        raise BackboneError(f"{source}: the bundle expects {bundle._sample_rate} Hz audio, not 16 kHz")
    state = None
    if pretrained and path is not None:
        state = _read_pt(source, path)
        if not isinstance(state, dict):
            raise BackboneError(f"{source}: {path} does not hold a state dict")
    elif pretrained:
        try:
            state = bundle._get_state_dict(None)
        except Exception as e:  # URLError, HTTPError, OSError, ...
            url = bundle._path if bundle._path.startswith("https") else \
                f"https://download.pytorch.org/torchaudio/models/{bundle._path}"
            raise BackboneError(
                f"{source}: cannot download the weights (no network?): {type(e).__name__}: {e}. "
                f"Fetch {url} elsewhere and put it in {Path(torch.hub.get_dir()) / 'checkpoints'}, "
                f"or give the file: torchaudio:{name}@<path>") from None
    return _build_torchaudio(source, bundle._model_type, bundle._params, state, bool(bundle._normalize_waveform))
