"""What beam search says when flashlight-text cannot be imported: the way to get it on the running Python.

No ``importorskip`` here: these tests make the import fail themselves, so they run with or without the decoder.
"""

from __future__ import annotations

import sys

import pytest
import torch

from speech_tl.asr.decode import BeamSearchDecoder, DecoderMissing, greedy_decode
from speech_tl.text import Vocabulary

VOCAB = Vocabulary.build([], language="de")

PIP_HINT = ("beam search decoding needs flashlight-text: pip install flashlight-text (greedy decoding, --beam 0, "
            "does not)")


def no_wheels_hint(version: str) -> str:
    return (f"beam search decoding needs flashlight-text, which has no wheels for Python {version} (the last ones are "
            "for 3.12): pip install ufal.flashlight-text (the same decoder built for Python 3.13 and later), or use "
            "Python 3.11 or 3.12 (greedy decoding, --beam 0, needs neither)")


@pytest.mark.parametrize("version_info, hint", [
    ((3, 11, 7, "final", 0), PIP_HINT),
    ((3, 12, 1, "final", 0), PIP_HINT),
    ((3, 13, 0, "final", 0), no_wheels_hint("3.13")),
    ((3, 14, 2, "final", 0), no_wheels_hint("3.14")),
])
def test_missing_flashlight_says_what_installs_on_this_python(monkeypatch, version_info, hint):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)  # makes the import fail
    monkeypatch.setattr(sys, "version_info", version_info)
    with pytest.raises(DecoderMissing) as err:
        BeamSearchDecoder(VOCAB)
    assert str(err.value) == hint
    assert isinstance(err.value, ImportError)
    # pip cannot install flashlight-text from 3.13 on: it is suggested only where it has wheels
    assert ("pip install flashlight-text" in str(err.value)) == (version_info[:2] < (3, 13))


def test_greedy_decoding_needs_no_flashlight(monkeypatch):
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)
    log_probs = torch.full((1, 2, len(VOCAB)), -10.0)
    log_probs[0, 0, VOCAB.index["a"]] = 0.0
    log_probs[0, 1, 0] = 0.0  # blank
    assert greedy_decode(log_probs, None, VOCAB) == ["a"]
