"""Held-out evaluation utterances for a probe when no separate manifest is given."""

from __future__ import annotations

import random
from pathlib import Path

from ..data import DataConfig, load_training_manifest, subset
from ..errors import InputError
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
    if len(utts) < 2:
        raise InputError(f"a probe needs at least 2 utterances, the manifest has {len(utts)}; give more, or --eval "
                         "with held-out utterances")
    idx = set(rng.sample(range(len(utts)), max(1, round(fraction * len(utts)))))
    return ([u for i, u in enumerate(utts) if i not in idx], [u for i, u in enumerate(utts) if i in idx],
            f"{len(idx)} held-out utterances of the manifest (fewer than 4 speakers)")


def probe_data(manifest: str | Path, eval_manifest: str | Path | None, need_text: bool, max_utterances: int,
               max_eval_utterances: int, seed: int) -> tuple[list[Utterance], list[Utterance], str]:
    """(train, held out, description) for a probe: both manifests checked (``file:line`` errors), seeded subsets."""
    cfg = DataConfig(train=str(manifest), min_duration=0.1, max_duration=60.0, batch_seconds=60.0)
    utts = load_training_manifest(manifest, cfg, need_text=need_text, out_dir=None, name="probe")
    if eval_manifest is not None:
        test = load_training_manifest(eval_manifest, cfg, need_text=need_text, out_dir=None, name="probe-eval")
        train, how = utts, str(eval_manifest)
    else:
        train, test, how = held_out_split(utts, seed)
    return subset(train, max_utterances, seed), subset(test, max_eval_utterances, seed), how
