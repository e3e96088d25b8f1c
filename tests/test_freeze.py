"""Freeze policies on a tiny random Whisper backbone (same code path as tiny.en)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speech_tl.backbones.whisper import WhisperBackbone, new_whisper_encoder
from speech_tl.freeze import FreezeConfig, FreezePlan


def tiny_backbone(layers: int = 4) -> WhisperBackbone:
    return WhisperBackbone(new_whisper_encoder(16, layers, 2, 32, 80, 1500), "test:tiny")


def trainable(module: nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters()) and not module.training


def test_bottom_freezes_frontend_and_lower_layers():
    bb = tiny_backbone()
    plan = FreezePlan(bb, FreezeConfig(mode="bottom", bottom_layers=2))
    bb.train()
    plan.restore_eval()
    assert frozen(bb.frontend) and frozen(bb.layers[0]) and frozen(bb.layers[1])
    assert trainable(bb.layers[2]) and trainable(bb.layers[3]) and trainable(bb.layer_norm)
    assert bb.layers[2].training
    assert "2/4 layers frozen" in plan.summary()


def test_feature_extraction_freezes_everything_and_full_nothing():
    bb = tiny_backbone()
    FreezePlan(bb, FreezeConfig(mode="feature_extraction"))
    assert not any(p.requires_grad for p in bb.parameters())
    bb = tiny_backbone()
    plan = FreezePlan(bb, FreezeConfig(mode="full", bottom_layers=0))
    assert all(p.requires_grad for p in bb.parameters())
    assert "trainable" in plan.summary() and "(100.0%)" in plan.summary()


def test_frontend_only_policy():
    bb = tiny_backbone()
    FreezePlan(bb, FreezeConfig(mode="bottom", bottom_layers=0))
    assert frozen(bb.frontend) and all(trainable(layer) for layer in bb.layers)


def test_gradual_unfreezes_one_layer_from_the_top_every_k_steps():
    bb = tiny_backbone()
    plan = FreezePlan(bb, FreezeConfig(mode="gradual", bottom_layers=1, unfreeze_every=10))
    seen = []
    for step in (0, 9, 10, 20, 30, 40, 100):
        plan.apply(step)
        seen.append(sum(not trainable(layer) for layer in bb.layers))
    assert seen == [4, 4, 3, 2, 1, 1, 1]
    assert trainable(bb.layers[3]) and frozen(bb.layers[0])


def test_layerwise_learning_rates_decay_downwards():
    bb = tiny_backbone()
    head = nn.Linear(16, 5)
    plan = FreezePlan(bb, FreezeConfig(mode="full", bottom_layers=0, layer_lr_decay=0.5))
    groups = {g["name"]: g["lr"] for g in plan.param_groups(1e-3, head)}
    assert groups["head"] == groups["backbone.layers.3"] == 1e-3
    assert groups["backbone.layers.2"] == pytest.approx(5e-4)
    assert groups["backbone.layers.0"] == pytest.approx(1.25e-4)
    assert groups["backbone.frontend"] == pytest.approx(6.25e-5)
    n_params = sum(p.numel() for g in plan.param_groups(1e-3, head) for p in g["params"])
    assert n_params == sum(p.numel() for p in bb.parameters()) + sum(p.numel() for p in head.parameters())


def test_frozen_prefix_gets_no_gradient_and_does_not_change():
    torch.manual_seed(0)
    bb = tiny_backbone()
    plan = FreezePlan(bb, FreezeConfig(mode="bottom", bottom_layers=2))
    head = nn.Linear(16, 5)
    opt = torch.optim.AdamW([p for g in plan.param_groups(1e-2, head) for p in g["params"]], lr=1e-2)
    before = {n: p.detach().clone() for n, p in bb.named_parameters()}
    wave, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    bb.train()
    plan.restore_eval()
    with torch.no_grad():
        hidden, hl = bb.forward_to(plan.depth, wave, lengths)
    out = head(bb.forward_from(plan.depth, hidden, hl))
    out.pow(2).mean().backward()
    opt.step()
    for n, p in bb.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n.startswith("layers.2") or n.startswith("layers.3") or n.startswith("layer_norm")), n


@pytest.mark.parametrize("cfg, message", [
    (FreezeConfig(mode="top"), "not one of"),
    (FreezeConfig(bottom_layers=9), "has 4 layers"),
    (FreezeConfig(mode="gradual", unfreeze_every=0), "positive"),
    (FreezeConfig(layer_lr_decay=1.5), r"\(0, 1\]"),
])
def test_bad_configs_are_explained(cfg, message):
    with pytest.raises(ValueError, match=message):
        FreezePlan(tiny_backbone(), cfg)
