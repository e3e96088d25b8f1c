"""Error rates per channel condition: where on a telephone twin a model gains or loses.

A line of a telephone twin (``speech-tl prepare channel``) records its call's draw (``channel``: noise kind and SNR,
codec, packet loss, clipping; :mod:`speech_tl.channel.phone`). :func:`channel_breakdown` groups a scored manifest's
utterances by those draws (``kind: phone``) and gives each group's CER and WER, pooled over its characters and
words as the whole set's rates are, so ``speech-tl evaluate asr`` on a twin says, for example, that a model gained
on coloured noise and quiet calls and not on babble. Lines without a phone draw (clean recordings, a synthetic
corpus's recording channel) form no group.

Groups (each only where some line falls in it):

- ``noise``: ``babble`` or ``noise`` (coloured noise), as drawn;
- ``snr``: ``under 10 dB``, ``10-25 dB``, ``quiet (25 dB and up)``;
- ``codec``: the codec's name (``amr-nb``, ``gsm``, ``mulaw``, ``alaw``, ``opus``, ``speex``);
- ``impairment``: ``packet loss`` and ``clipping``, for the calls that have them.
"""

from __future__ import annotations

from collections import defaultdict

from ..manifest import Utterance
from ..metrics import ErrorCounts

SNR_BANDS = ((10.0, "under 10 dB"), (25.0, "10-25 dB"), (float("inf"), "quiet (25 dB and up)"))


def _snr_band(snr: float) -> str | None:
    return next((name for top, name in SNR_BANDS if snr < top), None)  # None: not a number (NaN)


def channel_groups(u: Utterance) -> list[tuple[str, str]]:
    """``(group, value)`` pairs of one line's channel draw; none for a line without one."""
    ch = u.extra.get("channel")
    if not isinstance(ch, dict) or ch.get("kind") != "phone":  # a recording channel (synth-asr realistic) is not a call
        return []
    groups = []
    noise = ch.get("noise")
    if isinstance(noise, dict):
        if noise.get("kind"):
            groups.append(("noise", str(noise["kind"])))
        band = _snr_band(float(noise["snr_db"])) if isinstance(noise.get("snr_db"), int | float) else None
        if band is not None:
            groups.append(("snr", band))
    codec = ch.get("codec")
    if isinstance(codec, dict) and codec.get("name"):
        groups.append(("codec", str(codec["name"])))
    if ch.get("loss"):
        groups.append(("impairment", "packet loss"))
    if ch.get("clip_db") is not None:
        groups.append(("impairment", "clipping"))
    return groups


def channel_breakdown(utts: list[Utterance], counts: ErrorCounts) -> dict:
    """``{group: {value: {"utterances", "cer", "wer", "chars"}}}`` for the scored ``utts`` (in ``counts``' order:
    ``counts.chars.errors[i]`` and ``counts.words.errors[i]`` are line ``i``'s edits)."""
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        for key in channel_groups(u):
            members[key].append(i)
    out: dict[str, dict] = {}
    for (group, value), idx in sorted(members.items()):
        out.setdefault(group, {})[value] = {"utterances": len(idx), **counts.rates(idx),
                                            "chars": int(counts.chars.ref_length[idx].sum())}
    return out
