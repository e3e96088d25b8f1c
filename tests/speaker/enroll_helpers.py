"""Shared by the enrollment tests: real voices (espeak-ng, MBROLA, pico), bad clips, FSDD, a concurrency worker.

Imports stay light (numpy, soundfile) because spawned concurrency workers import this module.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000
FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"

SENTENCES = {
    "de": ["Guten Morgen, wie geht es Ihnen heute?", "Das Wetter ist heute sehr schön und warm.",
           "Ich fahre morgen mit dem Zug nach Berlin.", "Bitte schließen Sie die Tür hinter sich."],
    "en": ["Good morning, how are you doing today?", "The weather is very nice and warm today.",
           "Tomorrow I will take the train to London.", "Please close the door behind you."],
}
# three enrolled voices and one that is never enrolled (GE2E scores it <= 0.67 against the three)
ENROLLED = ("mbrola:mb-de2:de", "pico:en-US:en", "espeak:en+f3:en")
STRANGER = "espeak:en+m3:en"


def _voice(spec: str):
    from speech_tl.prepare.tts import Voice

    return Voice(*spec.split(":"))


@pytest.fixture(scope="session")
def voice_clips(tmp_path_factory) -> dict[str, list[Path]]:
    """``{voice id: [4 wav paths]}`` at 16 kHz for the ENROLLED voices and the STRANGER; speaker label = voice id."""
    import torch

    from speech_tl.audio import resample
    from speech_tl.prepare.tts import ToolMissing, require_voice, synthesize

    voices = [_voice(s) for s in (*ENROLLED, STRANGER)]
    try:
        for v in voices:
            require_voice(v)
    except ToolMissing as e:
        pytest.skip(f"text-to-speech voices needed for real speech: {e}")
    out = tmp_path_factory.mktemp("voices")
    clips = {}
    for v in voices:
        clips[v.id] = []
        for i, text in enumerate(SENTENCES[v.language]):
            wave, sr = synthesize(v, text)
            wave = resample(torch.from_numpy(wave), sr, SR).numpy()
            path = out / f"{v.id}_{i}.wav"
            sf.write(str(path), wave, SR, subtype="PCM_16")
            clips[v.id].append(path)
    return clips


def voice_id(spec: str) -> str:
    return _voice(spec).id


@pytest.fixture(scope="session")
def ge2e_embedder():
    from speech_tl.speaker.embedder import load_embedder

    return load_embedder("ge2e:resemblyzer")


def write_bad_clips(folder: Path) -> dict[str, Path]:
    """One clip per refusal: silent, too short (50 ms), heavily clipped, unreadable (text named .wav)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(SR) / SR
    bad = {"silent": folder / "silent.wav", "short": folder / "short.wav", "clipped": folder / "clipped.wav",
           "unreadable": folder / "unreadable.wav"}
    sf.write(str(bad["silent"]), np.zeros(SR, np.float32), SR)
    sf.write(str(bad["short"]), (0.3 * np.sin(2 * np.pi * 200 * t[: SR // 20])).astype(np.float32), SR)
    sf.write(str(bad["clipped"]), np.clip(3 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32), SR,
             subtype="FLOAT")
    bad["unreadable"].write_text("this is not audio\n")
    return bad


BAD_REASONS = {"silent": "silence", "short": "too short", "clipped": "clipped", "unreadable": "unreadable"}


def ge2e_checkpoint_of_other_weights(path: Path) -> str:
    """A GE2E checkpoint with slightly perturbed resemblyzer weights: the same architecture, another fingerprint."""
    import torch

    from speech_tl.backbones.ge2e import resemblyzer_weights

    state = torch.load(resemblyzer_weights(), map_location="cpu", weights_only=True)
    state = state.get("model_state", state)
    gen = torch.Generator().manual_seed(0)
    other = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
             for k, v in state.items()}
    torch.save({"model_state": other}, path)
    return f"ge2e:{path}"


# --------------------------------------------------------------------------- concurrency worker

WORKER_DIM = 64
WORKER_MODEL = ("random:concurrency-test", "concurrency0000", WORKER_DIM)
WORKER_OPS = {"enroll_new": 0.25, "enroll_more": 0.15, "identify": 0.35, "verify": 0.1, "list": 0.05,
              "rename": 0.06, "remove": 0.04}


def registry_worker(db: str, wid: int, seconds: float, seed: int, barrier=None, queue=None) -> dict:
    """Enroll, identify, verify, list, rename and remove against ``db`` for ``seconds``, with random embeddings.

    Each worker only changes its own speakers (names ``w{wid}-...``), so it knows exactly what the
    database must hold for them, and checks every answer it gets. Returns its final speakers
    ``{name: [clips]}``, counts of successful operations, the number of writes, timings and errors
    (also put on ``queue``). With a ``barrier`` all workers start together, after their imports.
    """
    from speech_tl.speaker.registry import ModelInfo, SpeakerRegistry

    rng = np.random.default_rng(seed)
    model = ModelInfo(*WORKER_MODEL)
    own: dict[str, list[str]] = {}  # name -> clips
    direction: dict[str, np.ndarray] = {}  # name -> the speaker's true embedding direction
    stats: Counter = Counter()
    errors: list[str] = []
    first = last = None
    serial = 0

    def check(ok: bool, what: str) -> None:
        if not ok:
            errors.append(f"worker {wid}: {what}")

    try:
        if barrier is not None:
            barrier.wait(timeout=300)
        reg = SpeakerRegistry(db)  # every worker opens the same fresh file at once
        first = time.time()
        end = time.monotonic() + seconds
        ops, probs = list(WORKER_OPS), np.array(list(WORKER_OPS.values()))
        while time.monotonic() < end and len(errors) < 20:
            op = "enroll_new" if not own else ops[rng.choice(len(ops), p=probs / probs.sum())]
            serial += 1
            if op == "enroll_new" or (op == "remove" and len(own) < 2):
                name = f"w{wid}-s{serial}"
                d = rng.standard_normal(WORKER_DIM)
                clips = [f"w{wid}/{serial}/c{j}.wav" for j in range(int(rng.integers(1, 4)))]
                r = reg.enroll(name, [d + 0.3 * rng.standard_normal(WORKER_DIM) for _ in clips], clips, model)
                check(r == {"speaker": name, "created": True, "added": len(clips), "n_clips": len(clips)},
                      f"enroll new {name}: {r}")
                own[name], direction[name] = clips, d
                stats["enroll"] += 1
                stats["clips_added"] += len(clips)
                stats["writes"] += 1
            elif op == "enroll_more":
                name = list(own)[rng.integers(len(own))]
                clips = [f"w{wid}/{serial}/c{j}.wav" for j in range(int(rng.integers(1, 3)))]
                r = reg.enroll(name, [direction[name] + 0.3 * rng.standard_normal(WORKER_DIM) for _ in clips],
                               clips, model)
                own[name] += clips
                check(r == {"speaker": name, "created": False, "added": len(clips), "n_clips": len(own[name])},
                      f"enroll more {name}: {r}")
                stats["enroll"] += 1
                stats["clips_added"] += len(clips)
                stats["writes"] += 1
            elif op == "identify":
                name = list(own)[rng.integers(len(own))]
                r = reg.identify(direction[name] + 0.1 * rng.standard_normal(WORKER_DIM), top_k=3)
                check(set(r) == {"speaker", "score", "threshold", "candidates"}, f"identify keys {sorted(r)}")
                check(r["speaker"] == name and r["candidates"][0]["speaker"] == name,
                      f"identify {name}: got {r['speaker']} ({r['score']:.3f})")
                stats["identify"] += 1
            elif op == "verify":
                name = list(own)[rng.integers(len(own))]
                r = reg.verify(name, direction[name] + 0.1 * rng.standard_normal(WORKER_DIM))
                check(r["accepted"] and r["speaker"] == name, f"verify {name}: {r}")
                other = [n for n in own if n != name]
                if other:
                    r = reg.verify(other[0], direction[name])
                    check(not r["accepted"], f"verify {other[0]} with {name}'s voice accepted: {r}")
                stats["verify"] += 1
            elif op == "list":
                listed = {n: k for n, k, _ in reg.speakers() if n.startswith(f"w{wid}-")}
                check(listed == {n: len(c) for n, c in own.items()}, "speakers() disagrees with what I enrolled")
                stats["list"] += 1
            elif op == "rename":
                old = list(own)[rng.integers(len(own))]
                new = f"{old.split('~')[0]}~r{serial}"
                reg.rename(old, new)
                own[new], direction[new] = own.pop(old), direction.pop(old)
                stats["rename"] += 1
                stats["writes"] += 1
            elif op == "remove":
                name = list(own)[rng.integers(len(own))]
                n = reg.remove(name)
                check(n == len(own[name]), f"remove {name}: {n} clips, expected {len(own[name])}")
                stats["clips_removed"] += len(own.pop(name))
                direction.pop(name)
                stats["remove"] += 1
                stats["writes"] += 1
            last = time.time()
            time.sleep(float(rng.uniform(0.01, 0.04)))  # keep the CPU load low
        stats["matrix_loads"] = reg.matrix_loads
        reg.close()
    except Exception:
        errors.append(f"worker {wid}: {traceback.format_exc()}")
    report = {"wid": wid, "speakers": own, "stats": dict(stats), "errors": errors, "first": first, "last": last}
    if queue is not None:
        queue.put(report)
    return report
