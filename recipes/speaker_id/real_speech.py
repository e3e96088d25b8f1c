"""Speaker verification and identification on real speech: does VAD trimming or AS-Norm help?

    .venv/bin/python recipes/speaker_id/real_speech.py [--model SOURCE] [--shared PATH]

Two real corpora from ``../shared/data`` (see its README.md), one speaker model (default the unadapted GE2E,
``ge2e:resemblyzer``; a speaker checkpoint folder works too):

* **FSDD** (Free Spoken Digit Dataset, CC BY-SA 4.0): 6 English speakers, 8 kHz digits of about 0.3-1 s;
  ``--fsdd-per-speaker`` clips per speaker (seeded sample, default 100). AS-Norm cohort: every Common Voice clip.
* **Common Voice** 6.1 sample (CC0), all languages: the speakers with 2 or more clips are evaluated; the
  speakers with exactly one clip form the AS-Norm cohort (disjoint speakers).

Conditions: raw cosine; VAD trimming (Silero VAD via :func:`speech_tl.speaker.segments.speech_regions`, only the
speech kept and concatenated, the whole clip when no speech is found; the cohort is trimmed the same way) with
the default and a looser setting; AS-Norm (:func:`speech_tl.speaker.scoring.asnorm_scores`) at several top_k;
and VAD + AS-Norm.

Metrics: EER with a bootstrap 95% interval (trials resampled; they share utterances, so it is somewhat too
narrow), minDCF (p_target 0.01), on **all** same-speaker pairs plus **all** different-speaker pairs; and
closed-set identification accuracy, two protocols: ``ID 1-clip`` enrols every speaker with one random clip and
identifies all other clips (mean of ``--id-draws`` seeded draws); ``ID LOO`` identifies each clip against speaker
centroids, its own speaker's centroid made of its other clips (leave one out). With AS-Norm, identification
scores are normalised the same way (test and enrolment cohort statistics).

Embeddings and VAD regions are cached under ``--cache`` (default /tmp/speech_tl_real_speech), keyed by the
model's weight fingerprint and the VAD setting; a second run only scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
P_TARGET = 0.01
# name -> speech_regions keyword arguments (None: no trimming)
VAD_SETTINGS: dict[str, dict | None] = {
    "none": None,
    "default": {},  # threshold 0.5, min_speech 0.25 s, min_silence 0.3 s, pad 0.05 s
    "loose": {"threshold": 0.3, "min_speech": 0.1, "pad": 0.1},
}


@dataclass
class Corpus:
    name: str
    files: list[Path]  # evaluated clips
    speakers: list[str]
    cohort: list[Path]  # clips of other speakers, for AS-Norm


def fsdd_corpus(shared: Path, per_speaker: int, seed: int, cohort: list[Path]) -> Corpus:
    files = sorted((shared / "fsdd" / "recordings").glob("*.wav"))
    by_speaker: dict[str, list[Path]] = {}
    for f in files:
        by_speaker.setdefault(f.stem.split("_")[1], []).append(f)
    rng = np.random.default_rng(seed)
    chosen: list[Path] = []
    speakers: list[str] = []
    for spk in sorted(by_speaker):
        clips = by_speaker[spk]
        if per_speaker and per_speaker < len(clips):
            clips = [clips[i] for i in sorted(rng.choice(len(clips), per_speaker, replace=False))]
        chosen += clips
        speakers += [spk] * len(clips)
    return Corpus("FSDD", chosen, speakers, cohort)


def commonvoice_clips(shared: Path) -> dict[str, list[Path]]:
    """client_id -> clips, over every language folder with a validated.tsv."""
    by_speaker: dict[str, list[Path]] = {}
    for tsv in sorted((shared / "commonvoice").glob("*/validated.tsv")):
        lines = tsv.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        cid, path = header.index("client_id"), header.index("path")
        for line in lines[1:]:
            cols = line.split("\t")
            clip = tsv.parent / "clips" / cols[path]
            if clip.is_file():
                by_speaker.setdefault(cols[cid], []).append(clip)
    return by_speaker


def cut(wave: torch.Tensor, regions: list) -> torch.Tensor:
    """The speech regions ``[(start_s, end_s)]`` of a 16 kHz wave, concatenated; the whole wave without any."""
    parts = [wave[int(a * 16000):int(b * 16000)] for a, b in regions]
    parts = [p for p in parts if p.numel()]
    return torch.cat(parts) if parts else wave


class EmbeddingCache:
    """Embeddings per (model fingerprint, VAD setting, file) and VAD regions per (setting, file), on disk."""

    def __init__(self, folder: Path, embedder, batch_size: int):
        self.folder, self.embedder, self.batch_size = folder, embedder, batch_size
        folder.mkdir(parents=True, exist_ok=True)
        self.stats: dict[str, dict] = {}

    def _key(self, path: Path) -> str:
        return str(path.resolve())

    def embeddings(self, files: list[Path], vad: str) -> torch.Tensor:
        from speech_tl.audio import load_audio
        from speech_tl.speaker.segments import speech_regions

        emb_file = self.folder / f"emb_{self.embedder.fingerprint[:16]}_{vad}.pt"
        vad_file = self.folder / f"vad_{vad}.json"
        cache = torch.load(emb_file, weights_only=True) if emb_file.is_file() else {}
        regions = json.loads(vad_file.read_text()) if vad_file.is_file() else {}
        missing = [f for f in dict.fromkeys(files) if self._key(f) not in cache]
        if missing:
            t0 = time.time()
            waves = []
            for f in missing:
                wave = load_audio(f)
                setting = VAD_SETTINGS[vad]
                if setting is not None:
                    if self._key(f) not in regions:
                        regions[self._key(f)] = {"regions": [list(r) for r in speech_regions(wave, **setting)],
                                                 "seconds": wave.numel() / 16000}
                    wave = cut(wave, regions[self._key(f)]["regions"])
                waves.append(wave)
            out = self.embedder.embed_many(waves, self.batch_size)
            for f, e in zip(missing, out, strict=True):
                cache[self._key(f)] = e.clone()
            torch.save(cache, emb_file)
            if VAD_SETTINGS[vad] is not None:
                vad_file.write_text(json.dumps(regions))
            print(f"  embedded {len(missing)} clips (VAD {vad}) in {time.time() - t0:.0f} s", file=sys.stderr)
        return torch.stack([cache[self._key(f)] for f in files])

    def vad_summary(self, files: list[Path], vad: str) -> dict:
        """Kept fraction of the audio and clips without any speech found (whole clip used)."""
        if VAD_SETTINGS[vad] is None:
            return {}
        regions = json.loads((self.folder / f"vad_{vad}.json").read_text())
        kept, total, empty = 0.0, 0.0, 0
        for f in files:
            r, dur = regions[self._key(f)]["regions"], regions[self._key(f)]["seconds"]
            total += dur
            kept += sum(b - a for a, b in r) if r else dur
            empty += not r
        return {"kept_fraction": kept / total, "no_speech_found": empty, "clips": len(files),
                "mean_kept_s": kept / len(files), "mean_clip_s": total / len(files)}


def all_pairs(speakers: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from speech_tl.speaker.trials import build_trial_arrays, count_trials

    _, available = count_trials(speakers)
    return build_trial_arrays(speakers, num_nontarget=available)


def identification(emb: torch.Tensor, speakers: list[str], stats: tuple | None, draws: int, seed: int
                   ) -> tuple[float, float]:
    """``(1-clip accuracy averaged over draws, leave-one-out centroid accuracy)``.

    ``stats``: ``(mean, std, fn)``: each clip's AS-Norm cohort statistics (:func:`cohort_stats`) and a function
    giving them for other embeddings (the enrolment centroids), or None (plain cosine).
    """
    from speech_tl.metrics import identification_accuracy
    from speech_tl.speaker.scoring import l2_normalize

    emb = l2_normalize(emb)
    names = sorted(set(speakers))
    code = np.array([names.index(s) for s in speakers])
    members = [np.flatnonzero(code == c) for c in range(len(names))]

    def norm(scores: np.ndarray, test_idx: np.ndarray, enroll_mean, enroll_std) -> np.ndarray:
        if stats is None:
            return scores
        mean, std, _ = stats
        return 0.5 * ((scores - mean[test_idx, None]) / std[test_idx, None]
                      + (scores - enroll_mean) / enroll_std)

    # one enrolment clip per speaker, identify all the others
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(draws):
        enroll = np.array([rng.choice(m) for m in members])
        test = np.setdiff1d(np.arange(len(speakers)), enroll)
        s = (emb[test] @ emb[enroll].T).double().numpy()
        if stats is not None:
            s = norm(s, test, stats[0][enroll][None], stats[1][enroll][None])
        accs.append(identification_accuracy(s, code[test]))
    # leave one out: own speaker's centroid without the test clip
    sums = torch.stack([emb[m].sum(0) for m in members])
    counts = torch.tensor([len(m) for m in members], dtype=torch.float32)
    centroids = l2_normalize(sums / counts[:, None])
    test = np.flatnonzero(counts[code].numpy() > 1)
    loo = l2_normalize((sums[code[test]] - emb[test]) / (counts[code[test]] - 1)[:, None])
    s = (emb[test] @ centroids.T).double().numpy()
    s[np.arange(test.size), code[test]] = (emb[test] * loo).sum(1).double().numpy()
    if stats is not None:
        c_mean, c_std = stats[2](centroids)
        l_mean, l_std = stats[2](loo)
        e_mean = np.broadcast_to(c_mean[None], s.shape).copy()
        e_std = np.broadcast_to(c_std[None], s.shape).copy()
        e_mean[np.arange(test.size), code[test]] = l_mean
        e_std[np.arange(test.size), code[test]] = l_std
        s = norm(s, test, e_mean, e_std)
    return float(np.mean(accs)), identification_accuracy(s, code[test])


def evaluate(corpus: Corpus, cache: EmbeddingCache, vads: list[str], top_ks: list[int], args) -> list[dict]:
    from speech_tl.metrics import eer, min_dcf
    from speech_tl.speaker.scoring import asnorm_scores, bootstrap_eer_ci, cohort_stats, cosine_scores

    enroll, test, label = all_pairs(corpus.speakers)
    rows = []
    for vad in vads:
        emb = cache.embeddings(corpus.files, vad)
        cohort = cache.embeddings(corpus.cohort, vad) if top_ks else None
        raw = cosine_scores(emb, enroll, test)
        kinds: list[tuple[str, np.ndarray, tuple | None]] = [("cosine", raw, None)]
        for k in top_ks:
            k_eff = min(k, len(corpus.cohort))
            mean, std = cohort_stats(emb, cohort, k_eff)
            kinds.append((f"AS-Norm top {k_eff}", asnorm_scores(emb, cohort, enroll, test, k_eff, scores=raw),
                          (mean, std, lambda x, k_eff=k_eff, c=cohort: cohort_stats(x, c, k_eff))))
            if k_eff == len(corpus.cohort):
                break
        for kind, scores, stats in kinds:
            e, _ = eer(scores, label)
            lo, hi = bootstrap_eer_ci(scores, label, n=args.bootstrap, seed=args.seed) if args.bootstrap else (
                float("nan"), float("nan"))
            dcf, _ = min_dcf(scores, label, p_target=P_TARGET)
            id1, idloo = identification(emb, corpus.speakers, stats, args.id_draws, args.seed)
            rows.append({"corpus": corpus.name, "vad": vad, "scoring": kind, "eer": e, "eer_ci95": [lo, hi],
                         "min_dcf": dcf, "id_1clip": id1, "id_loo": idloo, "targets": int(label.sum()),
                         "nontargets": int(label.size - label.sum())})
    return rows


def condition(row: dict) -> str:
    vad = {"none": "", "default": "VAD trim", "loose": "VAD trim (loose)"}[row["vad"]]
    score = "" if row["scoring"] == "cosine" else row["scoring"]
    return " + ".join(p for p in (vad, score) if p) or "raw cosine"


def table(rows: list[dict]) -> str:
    out = ["| corpus | condition | EER | EER 95% CI | minDCF (p 0.01) | ID acc 1-clip | ID acc LOO "
           "| trials (tgt/non) |",
           "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ci = "[{:.3f}, {:.3f}]".format(*r["eer_ci95"])
        out.append(f"| {r['corpus']} | {condition(r)} | {r['eer']:.3f} | {ci} | {r['min_dcf']:.3f} | "
                   f"{r['id_1clip']:.3f} | {r['id_loo']:.3f} | {r['targets']:,}/{r['nontargets']:,} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ge2e:resemblyzer", help="backbone source string or speaker checkpoint folder")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder (fsdd/, commonvoice/)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/speech_tl_real_speech"))
    p.add_argument("--fsdd-per-speaker", type=int, default=100, help="clips per FSDD speaker (0: all 500)")
    p.add_argument("--top-k", default="50,100,200", help="AS-Norm top_k values, comma-separated ('' for none)")
    p.add_argument("--vad", default="none,default,loose", help=f"VAD settings among {', '.join(VAD_SETTINGS)}")
    p.add_argument("--corpora", default="fsdd,commonvoice")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the EER interval (0: none)")
    p.add_argument("--id-draws", type=int, default=20, help="random one-clip enrolments averaged")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)

    shared = args.shared
    if not (shared / "fsdd" / "recordings").is_dir() or not (shared / "commonvoice").is_dir():
        print(f"error: real speech data not found under {shared} (needs fsdd/recordings/ and commonvoice/); "
              "it lives outside the repo in ../shared/data, pass --shared PATH", file=sys.stderr)
        return 2
    vads = [v for v in args.vad.split(",") if v]
    unknown = [v for v in vads if v not in VAD_SETTINGS]
    if unknown:
        p.error(f"unknown VAD setting(s) {unknown}; known: {list(VAD_SETTINGS)}")
    top_ks = [int(k) for k in args.top_k.split(",") if k]
    t0 = time.time()
    from speech_tl.speaker.embedder import load_embedder

    torch.manual_seed(args.seed)
    embedder = load_embedder(args.model, args.device)
    cache = EmbeddingCache(args.cache, embedder, args.batch_size)

    cv = commonvoice_clips(shared)
    multi = {s: c for s, c in cv.items() if len(c) >= 2}
    single = [c[0] for s, c in sorted(cv.items()) if len(c) == 1]
    corpora = []
    for name in args.corpora.split(","):
        if name == "fsdd":
            corpora.append(fsdd_corpus(shared, args.fsdd_per_speaker, args.seed,
                                       [f for _, c in sorted(cv.items()) for f in c]))
        elif name == "commonvoice":
            files = [f for s in sorted(multi) for f in multi[s]]
            corpora.append(Corpus("Common Voice", files, [s for s in sorted(multi) for _ in multi[s]], single))
        else:
            p.error(f"unknown corpus {name!r} (fsdd, commonvoice)")

    rows = []
    notes = []
    for corpus in corpora:
        print(f"{corpus.name}: {len(corpus.files)} clips, {len(set(corpus.speakers))} speakers, "
              f"cohort {len(corpus.cohort)} clips", file=sys.stderr)
        rows += evaluate(corpus, cache, vads, top_ks, args)
        for vad in vads:
            s = cache.vad_summary(corpus.files, vad)
            if s:
                notes.append(f"{corpus.name}, VAD {vad}: kept {s['kept_fraction']:.0%} of the audio "
                             f"(mean {s['mean_kept_s']:.2f} of {s['mean_clip_s']:.2f} s per clip), no speech "
                             f"found in {s['no_speech_found']}/{s['clips']} clips (whole clip used)")
    print(f"Model: {args.model} (fingerprint {embedder.fingerprint[:12]}). "
          f"FSDD: {args.fsdd_per_speaker or 500} clips per speaker; Common Voice: speakers with >= 2 clips, "
          f"cohort = the {len(single)} single-clip speakers (FSDD cohort: all Common Voice clips).\n")
    print(table(rows))
    print()
    for n in notes:
        print(f"- {n}")
    print(f"\nrun time {time.time() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
