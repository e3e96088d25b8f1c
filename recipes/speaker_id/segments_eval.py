"""Who spoke when, judged on real voices: enrolled speakers in recordings with pauses, and voices never enrolled.

For each trial: three real speakers are enrolled (4 clips each) in a new database with the defaults of `speech-tl
enroll`; a "meeting" joins 3 other clips of each of them, shuffled, with 0.4-1.0 s pauses; a second recording joins
3 clips of a fourth speaker who is not enrolled. Both go through `speech-tl identify --segments` with its defaults
(`SpeakerService.segments`). Scored: the share of each recording's speech time (the speech in each clip, by voice
activity on the clip alone) labelled with the right name (meetings) or `unknown` (the stranger).

Voices: Common Voice (`../shared/data/commonvoice`, speakers with 8 or more clips, grouped with speakers of the same
language where there are three) and FSDD (`../shared/data/fsdd`, 6 English speakers; each "clip" is 4 spoken digits
joined, about 2 s, as the single digits are 0.3-1 s).

    .venv/bin/python recipes/speaker_id/segments_eval.py [--corpus commonvoice fsdd] [--trials 12]
    .venv/bin/python recipes/speaker_id/segments_eval.py --calibrate   # the shipped GE2E calibration's numbers
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
SR = 16000


def commonvoice_voices(min_clips: int = 8) -> dict[str, list]:
    """``{"<lang>/<client id>": [clip paths]}`` of Common Voice speakers with ``min_clips`` or more clips."""
    voices = defaultdict(list)
    for tsv in sorted((SHARED / "commonvoice").glob("*/validated.tsv")):
        present = {p.name for p in (tsv.parent / "clips").glob("*.mp3")}
        with open(tsv, encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row["path"] in present:
                    voices[f"{tsv.parent.name}/{row['client_id'][:8]}"].append(tsv.parent / "clips" / row["path"])
    return {k: sorted(v) for k, v in sorted(voices.items()) if len(v) >= min_clips}


def load_clip(item) -> torch.Tensor:
    """A clip path, or a tuple of paths joined (FSDD digits), as 16 kHz mono ``(T,)``."""
    from speech_tl.audio import load_audio

    paths = item if isinstance(item, tuple) else (item,)
    return torch.cat([load_audio(p).reshape(-1) for p in paths])


def fsdd_voices(per_clip: int = 4, clips: int = 8) -> dict[str, list]:
    """``{speaker: [tuples of `per_clip` digit recordings]}``, ``clips`` per speaker."""
    by = defaultdict(list)
    for p in sorted((SHARED / "fsdd").rglob("*.wav")):
        by[p.stem.split("_")[1]].append(p)
    rng = random.Random(0)
    out = {}
    for spk, files in sorted(by.items()):
        rng.shuffle(files)
        out[spk] = [tuple(files[i * per_clip:(i + 1) * per_clip]) for i in range(clips)]
    return out


def trials(voices: dict[str, list], n: int, seed: int) -> list[tuple[list[str], str]]:
    """``n`` trials ``([3 enrolled speakers], stranger)``, same-language triples first (Common Voice keys
    ``lang/id``), each speaker enrolled in as few trials as possible."""
    rng = random.Random(seed)
    by_lang = defaultdict(list)
    for k in voices:
        by_lang[k.split("/")[0] if "/" in k else ""].append(k)
    out = []
    pools = [v for v in by_lang.values() if len(v) >= 4] or [list(voices)]
    while len(out) < n:
        for pool in pools:
            picks = rng.sample(pool, 4)
            out.append((picks[:3], picks[3]))
            if len(out) == n:
                break
    return out


def recording(items: list[tuple[str, object]], rng: random.Random) -> tuple[torch.Tensor, list[tuple]]:
    """Clips joined with 0.4-1.0 s pauses (a little noise, as a room has): ``(wave, [(start, end, speaker)])``, the
    speech of each clip (Silero VAD on the clip alone: Common Voice clips open and close with silence) as its
    speaker's turns."""
    from speech_tl.speaker.segments import speech_regions

    parts, turns, t = [], [], 0.0
    for speaker, clip in items:
        pause = torch.randn(int(rng.uniform(0.4, 1.0) * SR)) * 1e-3
        wave = load_clip(clip)
        parts += [pause, wave]
        t += pause.numel() / SR
        turns += [(t + a, t + b, speaker) for a, b in speech_regions(wave)]
        t += wave.numel() / SR
    parts.append(torch.randn(int(0.5 * SR)) * 1e-3)
    return torch.cat(parts), turns


def attributed(segments: list[dict], turns: list[tuple], want=None) -> tuple[float, float]:
    """``(seconds labelled right, speech seconds)``: a turn's time covered by segments naming its speaker (or
    ``want`` when given, e.g. "unknown")."""
    right = total = 0.0
    for t0, t1, speaker in turns:
        total += t1 - t0
        for s in segments:
            if s["speaker"] == (want or speaker):
                right += max(0.0, min(t1, s["end"]) - max(t0, s["start"]))
    return right, total


def run_corpus(name: str, voices: dict[str, list], n: int, seed: int) -> dict:
    from speech_tl.speaker.service import SpeakerService

    rng = random.Random(seed)
    sums = defaultdict(float)
    origins, thresholds = [], []
    for enrolled, stranger in trials(voices, n, seed):
        with tempfile.TemporaryDirectory() as tmp:
            service = SpeakerService(Path(tmp) / "db.sqlite", device="cpu")
            for spk in enrolled:
                clips = voices[spk][:4]
                service.enroll(spk, [load_clip(c) for c in clips], [str(c) for c in clips])
            meeting = [(spk, c) for spk in enrolled for c in voices[spk][4:7]]
            rng.shuffle(meeting)
            wave, turns = recording(meeting, rng)
            for open_set in (True, False):
                r = service.segments(wave, open_set=open_set)
                right, total = attributed(r["segments"], turns)
                key = "open" if open_set else "closed"
                sums[f"{key}_right"] += right
                sums[f"{key}_total"] += total
            origins.append(r["threshold_origin"])
            thresholds.append(service.segments(wave)["threshold"])
            wave, turns = recording([(stranger, c) for c in voices[stranger][4:7]], rng)
            r = service.segments(wave)
            unknown, total = attributed(r["segments"], turns, want="unknown")
            sums["stranger_unknown"] += unknown
            sums["stranger_total"] += total
    return {"corpus": name, "trials": n, "meeting_speech_s": round(sums["open_total"], 1),
            "right_open": sums["open_right"] / sums["open_total"],
            "right_closed": sums["closed_right"] / sums["closed_total"],
            "stranger_speech_s": round(sums["stranger_total"], 1),
            "stranger_unknown": sums["stranger_unknown"] / sums["stranger_total"],
            "threshold_origin": sorted(set(origins)), "threshold_mean": float(np.mean(thresholds))}


def calibrate() -> dict:
    """GE2E on Common Voice voices: EER thresholds of whole clips (clips 5-8) against 4-clip centroids (clips 1-4)
    and of clip against clip (same speaker or not), what :data:`speech_tl.speaker.registry.thresholds.SHIPPED`
    holds."""
    from speech_tl.metrics import eer
    from speech_tl.speaker.embedder import load_embedder

    voices = commonvoice_voices()
    embedder = load_embedder("ge2e:resemblyzer")
    emb = {k: embedder.embed_many([load_clip(c) for c in v[:8]]).numpy() for k, v in voices.items()}
    keys = list(emb)
    cent = np.stack([emb[k][:4].mean(0) for k in keys])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    scores, labels = [], []
    for i, k in enumerate(keys):
        s = emb[k][4:8] @ cent.T
        scores += list(s.ravel())
        labels += list((np.arange(len(keys))[None, :] == i).repeat(len(s), 0).ravel())
    rate, thr = eer(np.array(scores), np.array(labels, dtype=float))
    same = np.concatenate([(emb[k] @ emb[k].T)[np.triu_indices(8, 1)] for k in keys])
    diff = np.concatenate([(emb[a] @ emb[b].T).ravel() for i, a in enumerate(keys) for b in keys[i + 1:]])
    pair_rate, pair_thr = eer(np.r_[same, diff], np.r_[np.ones(len(same)), np.zeros(len(diff))])
    return {"fingerprint": embedder.fingerprint, "speakers": len(keys), "probe_clips": 4 * len(keys),
            "threshold": round(float(thr), 3), "eer": round(float(rate), 3),
            "pair_threshold": round(float(pair_thr), 3), "pair_eer": round(float(pair_rate), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", nargs="+", default=["commonvoice", "fsdd"], choices=["commonvoice", "fsdd"])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.calibrate:
        print(json.dumps(calibrate()))
        return 0
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: not found (this evaluation needs ../shared/data)")
    rows = []
    for corpus in args.corpus:
        voices = commonvoice_voices() if corpus == "commonvoice" else fsdd_voices()
        rows.append(run_corpus(corpus, voices, args.trials, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    print("| voices | trials | meeting speech | right speaker (defaults) | right speaker (--open-set false) | "
          "stranger speech | stranger `unknown` | threshold (origin) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['trials']} | {r['meeting_speech_s'] / 60:.1f} min | {r['right_open']:.1%} | "
              f"{r['right_closed']:.1%} | {r['stranger_speech_s'] / 60:.1f} min | {r['stranger_unknown']:.1%} | "
              f"{r['threshold_mean']:.3f} mean ({', '.join(r['threshold_origin'])}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
