"""Error rates per channel condition of a telephone twin (speech_tl.asr.channel_errors)."""

from __future__ import annotations

import pytest

from speech_tl.asr.channel_errors import channel_breakdown, channel_groups
from speech_tl.manifest import Utterance
from speech_tl.metrics import error_counts


def line(i: int, channel: dict | None) -> Utterance:
    return Utterance(id=f"u{i}", audio=f"u{i}.wav", duration=1.0, text="x", speaker="s", language="de",
                     extra={} if channel is None else {"channel": channel})


def test_groups_follow_the_draw_and_clean_lines_have_none():
    babble = {"kind": "phone", "noise": {"kind": "babble", "snr_db": 9.9, "talkers": ["a", "b", "c"]},
              "codec": {"name": "amr-nb", "kbps": 4.75}, "clip_db": 3.0}
    assert channel_groups(line(0, babble)) == [("noise", "babble"), ("snr", "under 10 dB"), ("codec", "amr-nb"),
                                               ("impairment", "clipping")]
    quiet = {"kind": "phone", "noise": {"kind": "noise", "snr_db": 25.0}, "codec": {"name": "opus", "kbps": 8.0},
             "loss": {"rate": 0.02, "burst": 1.5}}
    assert channel_groups(line(1, quiet)) == [("noise", "noise"), ("snr", "quiet (25 dB and up)"),
                                              ("codec", "opus"), ("impairment", "packet loss")]
    assert channel_groups(line(2, None)) == []
    assert channel_groups(line(3, "phone")) == []  # not a draw: no group rather than a crash
    # a recording channel of a synthetic corpus has an SNR too, but is not a call
    assert channel_groups(line(4, {"kind": "realistic", "noise": {"kind": "room", "snr_db": 12.0}})) == []
    odd = {"kind": "phone", "noise": {"kind": "noise", "snr_db": float("nan")}, "clip_db": None}
    assert channel_groups(line(5, odd)) == [("noise", "noise")]  # no SNR band for NaN, no clipping for null


def test_rates_are_pooled_over_each_groups_characters_and_words():
    refs = ["guten morgen", "wie geht es dir", "das wetter ist schön", "bis morgen"]
    hyps = ["guten morgen", "wie geht das dir", "das weiter ist", "bis morgen früh"]
    c = error_counts(refs, hyps)
    babble = {"kind": "phone", "noise": {"kind": "babble", "snr_db": 5.0}, "codec": {"name": "gsm"}}
    noise = {"kind": "phone", "noise": {"kind": "noise", "snr_db": 15.0}, "codec": {"name": "gsm"}}
    out = channel_breakdown([line(0, None), line(1, babble), line(2, babble), line(3, noise)], c)
    b = out["noise"]["babble"]
    # line 1: "es" -> "das" (1 word; 2 chars substituted + 1 inserted), line 2: "wetter" -> "weiter" and "schön"
    # deleted: pooled, not averaged per line
    assert b["utterances"] == 2 and b["chars"] == len(refs[1]) + len(refs[2])
    assert b["cer"] == pytest.approx((c.chars.errors[1] + c.chars.errors[2]) / (len(refs[1]) + len(refs[2])))
    assert b["wer"] == pytest.approx((1 + 2) / (4 + 4))
    assert out["noise"]["noise"]["wer"] == pytest.approx(1 / 2)  # "früh" inserted
    assert out["codec"]["gsm"]["utterances"] == 3  # the clean line 0 is in no group
    assert set(out["snr"]) == {"under 10 dB", "10-25 dB"}
    assert "impairment" not in out
