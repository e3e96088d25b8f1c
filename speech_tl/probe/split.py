"""Held-out evaluation utterances for a probe when no separate manifest is given."""

from __future__ import annotations

import random

from ..manifest import Utterance


def held_out_split(utts: list[Utterance], seed: int = 0, fraction: float = 0.25
                   ) -> tuple[list[Utterance], list[Utterance], str]:
    """(train, held out, description): whole speakers held out when there are at least 4, else utterances."""
    speakers = sorted({u.speaker for u in utts if u.speaker})
    rng = random.Random(seed)
    if len(speakers) >= 4:
        held = set(rng.sample(speakers, max(2, round(fraction * len(speakers)))))
        return ([u for u in utts if u.speaker not in held], [u for u in utts if u.speaker in held],
                f"{len(held)} held-out speakers of the manifest")
    idx = set(rng.sample(range(len(utts)), max(1, round(fraction * len(utts)))))
    if len(utts) < 2:
        raise ValueError(f"a probe needs at least 2 utterances, the manifest has {len(utts)}")
    return ([u for i, u in enumerate(utts) if i not in idx], [u for i, u in enumerate(utts) if i in idx],
            f"{len(idx)} held-out utterances of the manifest (fewer than 4 speakers)")
