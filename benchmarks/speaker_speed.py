"""Speaker evaluation speed on CPU: verification metrics, identification latency, GE2E embedding throughput.

Three measurements, side by side in one run:

* **(a) EER + minDCF** on ``--trials`` (default 10^6) random trials (``--target-fraction`` 0.1 targets, scores
  from two overlapping normal distributions): ``speech_tl.metrics.eer`` + ``min_dcf`` against the usual
  ``sklearn.metrics.roc_curve`` recipe (EER where ``|FNR - FPR|`` is smallest, minDCF over the ROC points), and
  ``speechbrain.utils.metric_stats.EER`` + ``minDCF`` on a ``--sb-trials`` (default 20,000) subsample only
  (they compare every threshold with every score: quadratic), with speech-tl on the same subsample.
* **(b) identification latency** against ``--speakers`` (default 10,000) enrolled speakers with random
  256-dimensional embeddings: ``speech_tl.speaker.registry.SpeakerRegistry.identify`` (SQLite database in a temp
  folder; the first call loads the speaker matrix, later calls reuse it) and, as the floor, the bare
  one-matrix-product identification in torch (one query, and 100 queries per product).
* **(c) GE2E embeddings per second** on the same ``--clips`` (default 50) clips (the first of
  ``manifests/synth-speakers_mul_test.jsonl``, else synthetic harmonic "voices" of 1-4 s): speech-tl's
  ``speech_tl.backbones.ge2e.embed_utterance`` against resemblyzer's own ``VoiceEncoder.embed_utterance``, both
  with ``--threads`` (default 2) torch threads. resemblyzer runs in a subprocess with
  ``PYTHONPATH=.make/resemblyzer`` (where ``make venv`` installs it and the wheel-only webrtcvad); the largest
  difference between the two embeddings is reported as a check.

* **(d) the enrollment tool as a service** (``speech-tl serve``) against one process per call: identify
  latency of one ``--clip-seconds`` (default 3) clip through the warm service (a real ``speech-tl serve``
  process, a real HTTP client on a kept-alive connection, bearer token checked; ``--service-queries``,
  default 50, timed) beside the wall time of ``speech-tl identify`` (a new process per call,
  ``--cli-calls``, default 5); and enrolling ``--enroll-speakers`` (default 50) speakers with one
  ``speech-tl enroll --from-folder`` call beside one ``speech-tl enroll --speaker`` call per speaker.
  Clips are synthetic harmonic "voices" (speed does not depend on who speaks); the database uses GE2E.

Each timed method runs once to warm up, then ``--repeats`` (default 3) timed passes; the median is reported.

    .venv/bin/python benchmarks/speaker_speed.py --write-readme
    .venv/bin/python benchmarks/speaker_speed.py --only service --write-readme   # (d) alone, its own section

This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import host, replace_section

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- speaker-speed:start -->", "<!-- speaker-speed:end -->"
SERVICE_START, SERVICE_END = "<!-- speaker-service:start -->", "<!-- speaker-service:end -->"
DEFAULT_MANIFEST = "manifests/synth-speakers_mul_test.jsonl"
RESEMBLYZER_DIR = REPO / ".make" / "resemblyzer"
P_TARGET = 0.01

sys.path.insert(0, str(REPO))  # run from a checkout without installing


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[list[float], object]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; returns (seconds per run, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def fmt_s(seconds: float) -> str:
    return f"{seconds:.4f}" if seconds < 10 else f"{seconds:.1f}"


# --------------------------------------------------------------------------------------------------------------
# (a) EER and minDCF
# --------------------------------------------------------------------------------------------------------------

def random_trials(n: int, target_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < target_fraction).astype(np.int64)
    scores = np.where(labels == 1, rng.normal(0.65, 0.12, n), rng.normal(0.30, 0.12, n))
    return scores, labels


def speech_tl_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from speech_tl.metrics import eer, min_dcf

    return eer(scores, labels)[0], min_dcf(scores, labels, p_target=P_TARGET)[0]


def sklearn_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The common recipe: ROC from sklearn, EER at the point where FNR and FPR are closest, minDCF over the ROC."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    dcf = P_TARGET * fnr + (1 - P_TARGET) * fpr
    return float((fpr[i] + fnr[i]) / 2), float(dcf.min() / min(P_TARGET, 1 - P_TARGET))


def speechbrain_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    import torch
    from speechbrain.utils.metric_stats import EER, minDCF

    pos = torch.from_numpy(scores[labels == 1]).float()
    neg = torch.from_numpy(scores[labels == 0]).float()
    e, _ = EER(pos, neg)
    dcf, _ = minDCF(pos, neg, c_miss=1.0, c_fa=1.0, p_target=P_TARGET)  # not normalised: divide here
    return float(e), float(dcf) / min(P_TARGET, 1 - P_TARGET)


def bench_metrics(args) -> list[dict]:
    scores, labels = random_trials(args.trials, args.target_fraction, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    sub = rng.choice(args.trials, size=min(args.sb_trials, args.trials), replace=False)
    rows = []
    for name, fn, s, lab in (
            ("speech-tl `metrics.eer` + `min_dcf`", speech_tl_metrics, scores, labels),
            ("sklearn `roc_curve` recipe", sklearn_metrics, scores, labels),
            ("speech-tl `metrics.eer` + `min_dcf`", speech_tl_metrics, scores[sub], labels[sub]),
            ("speechbrain `EER` + `minDCF`", speechbrain_metrics, scores[sub], labels[sub])):
        log(f"(a) {name} on {s.size:,} trials ...")
        times, (e, dcf) = timed(lambda fn=fn, s=s, lab=lab: fn(s, lab), args.repeats)
        rows.append({"method": name, "trials": int(s.size), "times": times, "eer": e, "min_dcf": dcf})
    return rows


# --------------------------------------------------------------------------------------------------------------
# (b) identification latency
# --------------------------------------------------------------------------------------------------------------

class _Model:
    """What SpeakerRegistry needs to know of the model that made the embeddings."""

    source, fingerprint, dim = "bench:random", "0000000000000000", 256


def bench_identify(args) -> tuple[list[dict], str]:
    import torch

    rng = np.random.default_rng(args.seed)
    enrolled = rng.standard_normal((args.speakers, 256)).astype(np.float32)
    enrolled /= np.linalg.norm(enrolled, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, 256)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows, note = [], ""

    def per_query(fn, q: np.ndarray) -> list[float]:
        fn(q[0])  # warm-up
        out = []
        for v in q:
            t0 = time.perf_counter()
            fn(v)
            out.append(time.perf_counter() - t0)
        return out

    if importlib.util.find_spec("speech_tl.speaker.registry") is not None:
        from speech_tl.speaker.registry import SpeakerRegistry

        with tempfile.TemporaryDirectory(prefix="speech-tl-bench-") as tmp:
            db = Path(tmp) / "speakers.db"
            log(f"(b) enrolling {args.speakers:,} random speakers into {db} (not timed) ...")
            t0 = time.perf_counter()
            with SpeakerRegistry(db) as reg:
                for k in range(args.speakers):
                    reg.enroll(f"spk{k:05d}", [enrolled[k]], [f"clip{k:05d}.wav"], _Model())
            enroll_s = time.perf_counter() - t0
            with SpeakerRegistry(db, create=False) as reg:
                t0 = time.perf_counter()
                reg.identify(queries[0], top_k=5)
                cold = time.perf_counter() - t0
                warm = per_query(lambda v: reg.identify(v, top_k=5), queries)
            rows.append({"method": "`SpeakerRegistry.identify`, first call (loads the speaker matrix)",
                         "times": [cold]})
            rows.append({"method": "`SpeakerRegistry.identify`, later calls (matrix cached)", "times": warm})
            note = (f"Enrolling the {args.speakers:,} speakers (one transaction each, not timed) took "
                    f"{enroll_s:.1f} s.")
    else:
        note = ("speech_tl.speaker.registry did not exist when this ran: only the bare matrix product "
                "is timed.")
    mat = torch.from_numpy(enrolled)
    k = min(5, args.speakers)

    def torch_identify(v: np.ndarray):
        return torch.topk(mat @ torch.from_numpy(v), k)

    rows.append({"method": "torch, one matrix product + top-5 (1 query)", "times": per_query(torch_identify, queries)})
    batch = torch.from_numpy(queries[:100])
    times, _ = timed(lambda: torch.topk(batch @ mat.T, k, dim=1), args.repeats)
    rows.append({"method": f"torch, one matrix product + top-5 ({batch.shape[0]} queries per product, per query)",
                 "times": [t / batch.shape[0] for t in times]})
    return rows, note


# --------------------------------------------------------------------------------------------------------------
# (c) GE2E embeddings per second
# --------------------------------------------------------------------------------------------------------------

def load_clips(args) -> tuple[list[np.ndarray], str]:
    manifest = REPO / args.manifest
    if manifest.is_file():
        from speech_tl.audio import load_audio
        from speech_tl.manifest import read_manifest

        utts = read_manifest(manifest)[: args.clips]
        if len(utts) == args.clips:
            waves = [load_audio(u.audio_path()).numpy() for u in utts]
            return waves, f"the first {args.clips} clips of {args.manifest}"
    rng = np.random.default_rng(args.seed)
    waves = []
    for _ in range(args.clips):
        t = np.arange(int(rng.uniform(1.0, 4.0) * 16000)) / 16000
        f0 = rng.uniform(100, 240)
        phase = 2 * np.pi * np.cumsum(f0 + 30 * np.sin(2 * np.pi * 0.8 * t)) / 16000
        x = sum(np.sin(h * phase) / h for h in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(t.size)
        waves.append(x.astype(np.float32))
    return waves, f"{args.clips} synthetic harmonic clips of 1-4 s ({args.manifest} not found)"


RESEMBLYZER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
import torch
warnings.simplefilter("ignore")
torch.set_num_threads(int(sys.argv[2]))
from resemblyzer import VoiceEncoder

data = np.load(sys.argv[1])
waves = [data[f"w{i}"] for i in range(len(data.files))]
enc = VoiceEncoder("cpu", verbose=False)
def run():
    return [enc.embed_utterance(w) for w in waves]
run()
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter(); out = run(); times.append(time.perf_counter() - t0)
np.save(sys.argv[4], np.stack(out))
print(json.dumps({"times": times, "threads": torch.get_num_threads()}))
"""


def bench_ge2e(args) -> tuple[list[dict], str]:
    import torch

    from speech_tl.backbones import load_backbone
    from speech_tl.backbones.ge2e import embed_utterance

    waves, what = load_clips(args)
    audio_s = sum(w.size for w in waves) / 16000
    torch.set_num_threads(args.threads)
    backbone = load_backbone("ge2e:resemblyzer").eval()
    tensors = [torch.from_numpy(w) for w in waves]

    def ours():
        with torch.no_grad():
            return [embed_utterance(backbone, w) for w in tensors]

    log(f"(c) speech-tl embed_utterance on {len(waves)} clips ({audio_s:.1f} s of audio) ...")
    times, emb = timed(ours, args.repeats)
    rows = [{"method": "speech-tl `backbones.ge2e.embed_utterance`", "times": times, "audio_s": audio_s,
             "clips": len(waves)}]
    if not (RESEMBLYZER_DIR / "resemblyzer").is_dir():
        return rows, what + f"; resemblyzer not timed: {RESEMBLYZER_DIR} missing (`make venv` puts it there)"
    with tempfile.TemporaryDirectory(prefix="speech-tl-bench-") as tmp:
        np.savez(Path(tmp) / "waves.npz", **{f"w{i}": w for i, w in enumerate(waves)})
        env = {**os.environ, "PYTHONPATH": str(RESEMBLYZER_DIR), "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads)}
        log("(c) resemblyzer VoiceEncoder.embed_utterance in a subprocess ...")
        proc = subprocess.run([sys.executable, "-c", RESEMBLYZER_SCRIPT, str(Path(tmp) / "waves.npz"),
                               str(args.threads), str(args.repeats), str(Path(tmp) / "ref.npy")],
                              env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            return rows, what + f"; resemblyzer failed: {proc.stderr.strip()[-500:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        ref = np.load(Path(tmp) / "ref.npy")
    diff = float(np.abs(torch.stack(emb).numpy() - ref).max())
    rows.append({"method": "resemblyzer `VoiceEncoder.embed_utterance`", "times": res["times"], "audio_s": audio_s,
                 "clips": len(waves)})
    return rows, what + f"; largest |difference| between the two embeddings: {diff:.1e}"


# --------------------------------------------------------------------------------------------------------------
# (d) the service against one process per call
# --------------------------------------------------------------------------------------------------------------

def harmonic_voice(path: Path, seconds: float, seed: int) -> Path:
    """A 16 kHz WAV of a harmonic "voice" with its own pitch and vibrato, and short pauses."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = rng.uniform(90, 260)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))) / 16000
    x = sum(np.sin(h * phase) * rng.uniform(0.2, 1.0) / h for h in range(1, 8))
    x *= (np.sin(2 * np.pi * rng.uniform(1.5, 3) * t) > -0.6)  # syllable-like on/off
    x = 0.2 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
    return path


def cli(*args: str, env=None) -> float:
    """Wall time of one ``speech-tl`` process (import, model load, work)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "speech_tl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"speech-tl {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def bench_service(args) -> tuple[list[dict], list[dict], str]:
    import secrets
    import signal
    import socket

    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="speech-tl-bench-") as tmp:
        tmp = Path(tmp)
        for k in range(args.enroll_speakers):
            harmonic_voice(tmp / "people" / f"spk{k:03d}" / "a.wav", 2.0, 1000 + k)
        clip = harmonic_voice(tmp / "probe.wav", args.clip_seconds, 1000)
        log(f"(d) enrolling {args.enroll_speakers} speakers: one `enroll --from-folder` call ...")
        batch = cli("enroll", "--db", str(tmp / "batch.db"), "--from-folder", str(tmp / "people"), env=env)
        log(f"(d) ... and {args.enroll_speakers} `enroll --speaker` calls ...")
        singles = [cli("enroll", "--db", str(tmp / "single.db"), "--speaker", f"spk{k:03d}",
                       str(tmp / "people" / f"spk{k:03d}" / "a.wav"), env=env) for k in range(args.enroll_speakers)]
        enroll_rows = [{"method": f"`speech-tl enroll --from-folder` (1 process, {args.enroll_speakers} speakers)",
                        "seconds": batch},
                       {"method": f"`speech-tl enroll --speaker` x {args.enroll_speakers} (a process each)",
                        "seconds": sum(singles)}]
        log(f"(d) `speech-tl identify`, {args.cli_calls} calls ...")
        calls = [cli("identify", "--db", str(tmp / "batch.db"), str(clip), env=env) for _ in range(args.cli_calls + 1)]
        rows = [{"method": "`speech-tl identify` (a new process per call)", "times": calls[1:]}]
        token = secrets.token_urlsafe(24)
        (tmp / "token").write_text(token)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "speech_tl.cli", "serve", "--db", str(tmp / "batch.db"),
                                   "--port", str(port), "--token-file", str(tmp / "token")], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            while True:
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.perf_counter() - t0 > 120:
                    raise SystemExit("speech-tl serve did not start")
                time.sleep(0.1)
            startup = time.perf_counter() - t0
            data = clip.read_bytes()
            log(f"(d) identify through the service, {args.service_queries} requests ...")
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
                def ask():
                    r = c.post("/api/identify", files=[("audio", ("probe.wav", data, "audio/wav"))])
                    r.raise_for_status()
                    return r.json()

                for _ in range(3):
                    ask()
                times = []
                for _ in range(args.service_queries):
                    t1 = time.perf_counter()
                    ask()
                    times.append(time.perf_counter() - t1)
            rows.append({"method": "`speech-tl serve`, `POST /api/identify` (warm, one kept-alive connection)",
                         "times": times})
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    note = (f"Probe: a {args.clip_seconds:g} s clip (16 kHz WAV) against {args.enroll_speakers} enrolled speakers, "
            f"GE2E, cosine scoring. The service took {startup:.1f} s to start (imports and model load, "
            "once).")
    return rows, enroll_rows, note


# --------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------

def machine(threads: int) -> str:
    import torch

    return (f"{host()}, numpy {np.__version__}, torch {torch.__version__} "
            f"({threads} thread{'s' * (threads > 1)} for (c))")


def report(args, metrics: list[dict], ident: list[dict], ident_note: str, ge2e: list[dict], ge2e_note: str) -> str:
    lines = [f"### (a) EER + minDCF (p_target {P_TARGET}) on random trials ({args.target_fraction:g} targets)", "",
             "| method | trials | median time (s) | vs speech-tl | EER | minDCF | all runs (s) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    base = {}
    for r in metrics:
        med = statistics.median(r["times"])
        base.setdefault(r["trials"], med)
        lines.append(f"| {r['method']} | {r['trials']:,} | {fmt_s(med)} | {med / base[r['trials']]:.1f}x | "
                     f"{r['eer']:.5f} | {r['min_dcf']:.5f} | {', '.join(fmt_s(t) for t in r['times'])} |")
    lines += ["", f"### (b) identification latency against {args.speakers:,} enrolled speakers (256-dim)", "",
              "| method | median per query (ms) | p95 (ms) | queries/s | queries timed |", "|---|---:|---:|---:|---:|"]
    for r in ident:
        t = np.array(r["times"]) * 1000
        lines.append(f"| {r['method']} | {np.median(t):.3f} | {np.percentile(t, 95):.3f} | "
                     f"{1000 / np.median(t):,.0f} | {t.size} |")
    threads = f"{args.threads} torch thread{'s' * (args.threads > 1)}"
    lines += ["", ident_note, "", f"### (c) GE2E embeddings per second ({threads})", "",
              "| method | clips | audio (s) | median time (s) | embeddings/s | x real time | all runs (s) |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for r in ge2e:
        med = statistics.median(r["times"])
        lines.append(f"| {r['method']} | {r['clips']} | {r['audio_s']:.1f} | {fmt_s(med)} | {r['clips'] / med:.1f} | "
                     f"{r['audio_s'] / med:.0f} | {', '.join(fmt_s(t) for t in r['times'])} |")
    lines += ["", f"Clips: {ge2e_note}.", "",
              f"Median of {args.repeats} runs after one warm-up. Machine: {machine(args.threads)}"]
    return "\n".join(lines)


def service_report(args, rows: list[dict], enroll_rows: list[dict], note: str) -> str:
    lines = [f"### (d) identify one {args.clip_seconds:g} s clip: the warm service against a process per call", "",
             "| method | median (ms) | p95 (ms) | vs service | calls timed |", "|---|---:|---:|---:|---:|"]
    service = np.median(rows[-1]["times"]) * 1000
    for r in rows:
        t = np.array(r["times"]) * 1000
        lines.append(f"| {r['method']} | {np.median(t):.1f} | {np.percentile(t, 95):.1f} | "
                     f"{np.median(t) / service:.0f}x | {t.size} |")
    lines += ["", note, "", f"### (d) enrolling {args.enroll_speakers} speakers", "",
              "| method | total (s) | per speaker (s) | vs batch |", "|---|---:|---:|---:|"]
    batch = enroll_rows[0]["seconds"]
    for r in enroll_rows:
        lines.append(f"| {r['method']} | {r['seconds']:.1f} | {r['seconds'] / args.enroll_speakers:.2f} | "
                     f"{r['seconds'] / batch:.1f}x |")
    import torch

    lines += ["", f"Machine: {host()}, numpy {np.__version__}, torch {torch.__version__}; the service runs its forward "
                  "passes on one thread with one torch thread, `speech-tl identify` and `enroll` with torch's default "
                  "(all cores)."]
    return "\n".join(lines)


def write_readme(text: str, readme: Path) -> None:
    replace_section(readme, START, END, text)
    log(f"wrote the tables into {readme}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10**6, help="random trials for (a)")
    ap.add_argument("--target-fraction", type=float, default=0.1, help="share of target trials in (a)")
    ap.add_argument("--sb-trials", type=int, default=20000, help="subsample for speechbrain (quadratic) in (a)")
    ap.add_argument("--speakers", type=int, default=10000, help="enrolled speakers for (b)")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed in (b)")
    ap.add_argument("--clips", type=int, default=50, help="clips embedded in (c)")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help="clips for (c), relative to the repository")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for (c)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip-seconds", type=float, default=3.0, help="probe clip length for (d)")
    ap.add_argument("--service-queries", type=int, default=50, help="identify requests timed through the service")
    ap.add_argument("--cli-calls", type=int, default=5, help="`speech-tl identify` processes timed for (d)")
    ap.add_argument("--enroll-speakers", type=int, default=50, help="speakers enrolled in (d)")
    ap.add_argument("--only", choices=["metrics", "identify", "ge2e", "service"], default=None,
                    help="run one part only")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"replace the tables between {START} and {END} in benchmarks/README.md")
    ap.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)  # tests write into a copy
    args = ap.parse_args(argv)
    if min(args.trials, args.sb_trials, args.speakers, args.queries, args.clips, args.threads, args.repeats) < 1:
        ap.error("counts, --threads and --repeats must be at least 1")
    if not 0 < args.target_fraction < 1:
        ap.error("--target-fraction must lie strictly between 0 and 1")
    if args.write_readme and args.only not in (None, "service"):
        ap.error("--write-readme needs all parts (no --only), or --only service for (d)'s own section")
    if args.only == "service":
        text = service_report(args, *bench_service(args))
        print(text)
        if args.write_readme:
            replace_section(args.readme, SERVICE_START, SERVICE_END, text)
        return
    metrics = bench_metrics(args) if args.only in (None, "metrics") else []
    ident, ident_note = bench_identify(args) if args.only in (None, "identify") else ([], "")
    ge2e, ge2e_note = bench_ge2e(args) if args.only in (None, "ge2e") else ([], "")
    text = report(args, metrics, ident, ident_note, ge2e, ge2e_note)
    print(text)
    if args.write_readme:
        write_readme(text, args.readme)
    if args.only is None:
        service = service_report(args, *bench_service(args))
        print(service)
        if args.write_readme:
            replace_section(args.readme, SERVICE_START, SERVICE_END, service)


if __name__ == "__main__":
    main()
