"""Freeze policies: which parts of a backbone train, and at what learning rate.

A backbone has a ``frontend``, ordered ``layers`` (bottom first) and whatever follows
them (a final norm). The policies:

- ``bottom``: frontend and the bottom ``bottom_layers`` layers frozen, the rest trains;
- ``feature_extraction``: the whole backbone frozen, only the head trains;
- ``full``: everything trains (``freeze_frontend=True`` keeps the frontend frozen);
- ``gradual``: starts as feature extraction and unfreezes one more layer from the top
  every ``unfreeze_every`` steps, never below ``bottom_layers``.

Frozen modules are kept in ``eval()`` (no dropout, fixed statistics) and their
parameters have ``requires_grad=False``; the prefix they form can be run under
``no_grad`` and cached. ``layer_lr_decay`` < 1 gives layer-wise learning rates: the top
layer gets the base rate, each lower one ``decay`` times the one above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .config import ConfigError

MODES = ("bottom", "feature_extraction", "full", "gradual")
SEQ2SEQ_MODES = MODES + ("lora",)  # a Whisper decoder model (speech_tl.asr.seq2seq_freeze)


@dataclass
class FreezeConfig:
    mode: str = "bottom"
    bottom_layers: int = 2
    freeze_frontend: bool | None = None  # None: frozen in every mode but "full"
    unfreeze_every: int = 200
    layer_lr_decay: float = 1.0
    # an encoder-decoder model (model.head: decoder): its decoder's bottom layers and its token embeddings (tied
    # to the output projection) and positions; see speech_tl.asr.seq2seq_freeze
    decoder_layers: int = 0
    embeddings: bool = True  # frozen
    # mode lora (a Whisper decoder model): every pretrained weight frozen, low-rank adapters (peft) on the
    # ``lora_targets`` linear layers of the decoder and of the encoder layers above ``bottom_layers``; merged into
    # plain weights in the checkpoint's model.pt (speech_tl.asr.seq2seq_lora)
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def validate(self, num_layers: int, lora: bool = False) -> None:
        if self.mode == "lora" and not lora:
            raise ConfigError("freeze.mode=lora adapts a Whisper decoder model (model.head: decoder); for this model "
                              f"use one of {', '.join(MODES)}")
        if self.mode == "lora":
            if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1 or not self.lora_targets:
                raise ConfigError("freeze.mode=lora needs lora_rank >= 1, lora_alpha > 0, lora_dropout in [0, 1) and "
                                  "at least one of lora_targets (e.g. [q_proj, v_proj])")
        elif self.mode not in MODES:
            raise ConfigError(f"freeze.mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 0 <= self.bottom_layers <= num_layers:
            raise ConfigError(f"freeze.bottom_layers={self.bottom_layers} but the backbone has {num_layers} layers "
                              f"(allowed: 0..{num_layers})")
        if self.unfreeze_every <= 0:
            raise ConfigError(f"freeze.unfreeze_every must be a positive number of steps, got {self.unfreeze_every}")
        if not 0 < self.layer_lr_decay <= 1:
            raise ConfigError(f"freeze.layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")


class FreezePlan:
    """Applies a :class:`FreezeConfig` to a backbone, step by step."""

    lora = False  # whether freeze.mode=lora is allowed (a subclass that injects adapters)

    def __init__(self, backbone: nn.Module, config: FreezeConfig):
        config.validate(len(backbone.layers), lora=self.lora)
        self.backbone = backbone
        self.config = config
        self.num_layers = len(backbone.layers)
        self._depth: int | None = None
        self.apply(0)

    # ------------------------------------------------------------------ what is frozen
    def frozen_layers(self, step: int = 0) -> int:
        """How many bottom layers are frozen at ``step``."""
        c = self.config
        if c.mode in ("bottom", "lora"):  # lora: the layers above carry adapters (frozen weights, trained adapters)
            return c.bottom_layers
        if c.mode == "feature_extraction":
            return self.num_layers
        if c.mode == "full":
            return 0
        unfrozen = step // c.unfreeze_every  # gradual
        return max(c.bottom_layers, self.num_layers - unfrozen)

    def frontend_frozen(self, step: int = 0) -> bool:
        """The frontend is frozen whenever a layer above it is; otherwise as configured."""
        if self.frozen_layers(step) > 0:
            return True
        if self.config.freeze_frontend is None:
            return self.config.mode != "full"
        return self.config.freeze_frontend

    def top_frozen(self) -> bool:
        """Whether what follows the layers (final norm) is frozen: only in feature extraction."""
        return self.config.mode == "feature_extraction"

    @property
    def depth(self) -> int:
        """Frozen layers now (after the last :meth:`apply`)."""
        return self._depth or 0

    def prefix_is_frozen(self) -> bool:
        """True when frontend + ``layers[:depth]`` are all frozen, so their output can be cached."""
        return self._frontend_frozen

    # ------------------------------------------------------------------ applying
    def _top_modules(self) -> list[nn.Module]:
        inside = {id(self.backbone.frontend), id(self.backbone.layers)}
        return [m for name, m in self.backbone.named_children() if id(m) not in inside]

    def apply(self, step: int) -> bool:
        """Set ``requires_grad`` and train/eval modes for ``step``; True if anything changed."""
        depth = self.frozen_layers(step)
        frontend = self.frontend_frozen(step)
        changed = depth != self._depth
        self._depth, self._frontend_frozen = depth, frontend
        _set_frozen(self.backbone.frontend, frontend)
        for i, layer in enumerate(self.backbone.layers):
            _set_frozen(layer, i < depth)
        for m in self._top_modules():
            _set_frozen(m, self.top_frozen())
        return changed

    def restore_eval(self) -> None:
        """Call after ``model.train()``: puts the frozen modules back into ``eval()``."""
        if self._frontend_frozen:
            self.backbone.frontend.eval()
        for layer in self.backbone.layers[: self.depth]:
            layer.eval()
        if self.top_frozen():
            for m in self._top_modules():
                m.eval()

    # ------------------------------------------------------------------ optimiser groups
    def param_groups(self, base_lr: float, head: nn.Module | None = None) -> list[dict]:
        """AdamW groups with layer-wise learning rates; includes frozen parameters with lr
        multiplier so that gradual unfreezing needs no new optimiser (frozen ones get no grad)."""
        decay = self.config.layer_lr_decay
        groups = []
        if head is not None:
            groups.append({"params": list(head.parameters()), "lr": base_lr, "name": "head"})
        top = [p for m in self._top_modules() for p in m.parameters()]
        if top:
            groups.append({"params": top, "lr": base_lr, "name": "backbone.top"})
        for i, layer in enumerate(self.backbone.layers):
            groups.append({"params": list(layer.parameters()), "lr": base_lr * decay ** (self.num_layers - 1 - i),
                           "name": f"backbone.layers.{i}"})
        groups.append({"params": list(self.backbone.frontend.parameters()),
                       "lr": base_lr * decay ** self.num_layers, "name": "backbone.frontend"})
        return [g for g in groups if g["params"]]

    def state(self, head: nn.Module | None = None) -> dict:
        """The freeze state as data (checkpoint metadata and summaries carry it; reports read it)."""
        modules = [self.backbone] + ([head] if head is not None else [])
        return {"mode": self.config.mode, "frontend_frozen": self._frontend_frozen, "frozen_layers": self.depth,
                "layers": self.num_layers,
                "trainable_parameters": sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad),
                "total_parameters": sum(p.numel() for m in modules for p in m.parameters())}

    def summary(self, head: nn.Module | None = None) -> str:
        """:meth:`state` as a line for people."""
        s = self.state(head)
        trainable, total = s["trainable_parameters"], s["total_parameters"]
        return (f"freeze {s['mode']}: frontend {'frozen' if s['frontend_frozen'] else 'trainable'}, "
                f"{s['frozen_layers']}/{s['layers']} layers frozen; trainable {trainable:,} of {total:,} parameters "
                f"({100 * trainable / max(total, 1):.1f}%)")


def _set_frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        module.eval()
