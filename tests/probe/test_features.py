"""Per-depth features of a frozen backbone computed many utterances per forward pass: the same as one at a time."""

from __future__ import annotations

import torch

from speech_tl.backbones import load_backbone
from speech_tl.data import UtteranceDataset
from speech_tl.manifest import read_manifest
from speech_tl.probe.features import collect, depth_outputs


def test_batched_features_equal_one_utterance_at_a_time(tone_corpus, tiny_whisper):
    bb = load_backbone(tiny_whisper).eval()
    data = UtteranceDataset(read_manifest(tone_corpus / "dev.jsonl"))
    one = collect(bb, data, "one", batch_size=1)
    many = collect(bb, data, "many", "cpu", batch_size=5)
    assert len(one) == len(many) == len(bb.layers) + 1
    for k, (a, b) in enumerate(zip(one, many, strict=True)):
        assert len(a) == len(b) == len(data)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert x.shape == y.shape and x.dtype == y.dtype == torch.float16, (k, i)
            assert torch.allclose(x.float(), y.float(), atol=2e-3, rtol=2e-3), (k, i)
    with torch.no_grad():
        direct = depth_outputs(bb, data[3][0])
    assert torch.allclose(direct[-1].half().float(), one[-1][3].float(), atol=1e-3)
