"""Enroll held-out speakers with a model and identify their other clips (open-set, with the DB's threshold).

Uses the same API as `speech-tl enroll` / `speech-tl identify`: speech_tl.speaker.registry.SpeakerRegistry.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from speech_tl.manifest import read_manifest
from speech_tl.speaker.embedder import load_embedder
from speech_tl.speaker.registry import SpeakerRegistry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--speakers", type=int, default=10)
    ap.add_argument("--enroll-clips", type=int, default=3)
    ap.add_argument("--calibration", default=None, help="results.json of an evaluation, to set the threshold")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    by_spk = defaultdict(list)
    for u in read_manifest(a.manifest):
        by_spk[u.speaker].append(u)
    speakers = sorted(by_spk)[: a.speakers]
    Path(a.db).unlink(missing_ok=True)
    emb = load_embedder(a.model)
    reg = SpeakerRegistry(a.db)
    for s in speakers:
        clips = sorted(by_spk[s], key=lambda u: u.id)[: a.enroll_clips]
        reg.enroll(s, [emb.embed_file(u.audio_path()) for u in clips], [str(u.audio_path()) for u in clips],
                   model=emb)
    if a.calibration:
        reg.calibrate_threshold(a.calibration)
    correct, total, unknown, examples = 0, 0, 0, []
    for s in speakers:
        for u in sorted(by_spk[s], key=lambda u: u.id)[a.enroll_clips:]:
            r = reg.identify(emb.embed_file(u.audio_path()), top_k=3)
            total += 1
            correct += r["speaker"] == s
            unknown += r["speaker"] == "unknown"
            if len(examples) < 5:
                examples.append({"clip": u.id, "true": s, **r})
    out = {"model": a.model, "enrolled_speakers": len(speakers), "enroll_clips": a.enroll_clips,
           "identified_clips": total, "top1_accuracy": correct / max(1, total), "unknown": unknown,
           "threshold": reg.threshold, "examples": examples}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "examples"}))


if __name__ == "__main__":
    main()
