"""Freezing both stacks of an encoder-decoder model: the encoder as any backbone (:class:`~.freeze.FreezePlan`:
frontend and bottom ``freeze.bottom_layers``, the frozen prefix cacheable), and the decoder's bottom
``freeze.decoder_layers`` layers plus, with ``freeze.embeddings`` (default), its token embedding (which is also the
output projection) and position table. Frozen decoder modules stay in ``eval()`` with ``requires_grad=False``, so
their weights leave training bit-identical.
"""

from __future__ import annotations

from torch import nn

from ..config import ConfigError
from ..freeze import SEQ2SEQ_MODES, FreezeConfig, FreezePlan, _set_frozen


class Seq2SeqFreezePlan(FreezePlan):
    lora = True

    def __init__(self, backbone: nn.Module, decoder: nn.Module, config: FreezeConfig):
        self.decoder = decoder
        if config.mode not in SEQ2SEQ_MODES:
            raise ConfigError(f"freeze.mode {config.mode!r} is not one of {', '.join(SEQ2SEQ_MODES)}")
        n = len(decoder.layers)
        if not 0 <= config.decoder_layers <= n:
            raise ConfigError(f"freeze.decoder_layers={config.decoder_layers} but the decoder has {n} layers "
                              f"(allowed: 0..{n})")
        super().__init__(backbone, config)

    def _decoder_frozen(self) -> list[nn.Module]:
        frozen = list(self.decoder.layers[: self.config.decoder_layers])
        if self.config.embeddings:
            frozen += [self.decoder.embed_tokens, self.decoder.embed_positions]
        return frozen

    def apply(self, step: int) -> bool:
        changed = super().apply(step)
        if self.config.mode == "lora":  # pretrained weights frozen everywhere; only the adapters train
            from .seq2seq_lora import is_lora_parameter

            for module in (self.backbone, self.decoder):
                for name, p in module.named_parameters():
                    p.requires_grad_(is_lora_parameter(name))
            return changed
        _set_frozen(self.decoder, False)
        for m in self._decoder_frozen():
            _set_frozen(m, True)
        return changed

    def restore_eval(self) -> None:
        super().restore_eval()
        if self.config.mode != "lora":
            for m in self._decoder_frozen():
                m.eval()

    def state(self, head: nn.Module | None = None) -> dict:
        return {**super().state(head), "decoder_frozen_layers": self.config.decoder_layers,
                "decoder_layers": len(self.decoder.layers), "embeddings_frozen": self.config.embeddings}

    def summary(self, head: nn.Module | None = None) -> str:
        c = self.config
        if c.mode == "lora":
            return (super().summary(head) + f"; LoRA rank {c.lora_rank} (alpha {c.lora_alpha:g}) on "
                    f"{', '.join(c.lora_targets)} of the decoder and encoder layers {c.bottom_layers}+, every "
                    "pretrained weight frozen")
        return (super().summary(head) + f"; decoder {c.decoder_layers}/{len(self.decoder.layers)} layers frozen, "
                f"token embeddings {'frozen' if c.embeddings else 'trainable'}")
