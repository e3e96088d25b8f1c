"""LoRA adapters on a Whisper decoder model, through the ``peft`` library (``freeze.mode: lora``).

``peft.inject_adapter_in_model`` wraps the named ``nn.Linear`` modules (``freeze.lora_targets``, default the
attention's ``q_proj`` and ``v_proj``) of the decoder and of the encoder layers above ``freeze.bottom_layers`` (so
the frozen bottom's output stays cacheable); every pretrained weight is frozen and only the adapters train.

A checkpoint's ``model.pt`` holds plain weights with the adapters merged in (``W + scaling * B @ A``, peft's own
``get_delta_weight``): it loads into the plain model, exports to Hugging Face / CTranslate2 and runs at the speed of
the original. The adapters alone are kept beside it as ``lora.pt`` so that a run resumes where it stopped.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..freeze import FreezeConfig


def _pattern(names: list[str], layers: list[int] | None = None) -> str:
    """peft's ``target_modules`` regex (full match on the module name) for ``names`` inside ``layers``."""
    inside = r"layers\.(" + "|".join(str(i) for i in layers) + r")\." if layers is not None else r"layers\.\d+\."
    return r".*" + inside + r".*\b(" + "|".join(re.escape(n) for n in names) + r")"


def add_lora(backbone: nn.Module, decoder: nn.Module, cfg: FreezeConfig) -> int:
    """Inject adapters into ``decoder`` and ``backbone.layers[cfg.bottom_layers:]``; returns how many linear layers
    carry one."""
    from peft import LoraConfig, inject_adapter_in_model

    def config(pattern: str) -> LoraConfig:
        return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=pattern, bias="none")

    inject_adapter_in_model(config(_pattern(cfg.lora_targets)), decoder)
    upper = list(range(cfg.bottom_layers, len(backbone.layers)))
    if upper:
        holder = nn.ModuleDict({"layers": backbone.layers})
        inject_adapter_in_model(config(_pattern(cfg.lora_targets, upper)), holder)
    return len(lora_modules(backbone)) + len(lora_modules(decoder))


def lora_modules(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every adapter merged into its base weight and peft's keys back to plain ones
    (``q_proj.base_layer.weight`` -> ``q_proj.weight``)."""
    state = model.state_dict()
    deltas = {name: m.get_delta_weight("default") for name, m in lora_modules(model).items()}
    out = {}
    for key, value in state.items():
        if is_lora_parameter(key):
            continue
        plain = key.replace(".base_layer.", ".")
        module = key.split(".base_layer.")[0] if ".base_layer." in key else None
        if module is not None and key.endswith(".base_layer.weight"):
            value = value + deltas[module].to(value.dtype)
        out[plain] = value.detach().clone()
    return out


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights alone (what a resumed run restores on top of the pretrained model)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if is_lora_parameter(k)}
