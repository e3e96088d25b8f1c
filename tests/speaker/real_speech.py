"""Real speakers from the Common Voice sample beside the repo (``../shared/data/commonvoice``, CC0).

Tests that use them skip with a reason when the folder is absent (a user's clone has no shared/).
"""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pytest

COMMONVOICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "commonvoice"
needs_commonvoice = pytest.mark.skipif(not COMMONVOICE.is_dir(),
                                       reason=f"Common Voice sample not found at {COMMONVOICE} (../shared)")


def speakers_with_clips(lang: str, at_least: int = 3) -> list[list[Path]]:
    """Clips of each speaker (``client_id``) of one language with at least ``at_least`` clips, most clips
    first (ties in the order of validated.tsv)."""
    by: dict[str, list[Path]] = collections.defaultdict(list)
    with open(COMMONVOICE / lang / "validated.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            by[row["client_id"]].append(COMMONVOICE / lang / "clips" / row["path"])
    return sorted((c for c in by.values() if len(c) >= at_least), key=len, reverse=True)
