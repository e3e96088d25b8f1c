"""Offline synthetic corpora spoken by Debian's TTS voices.

``synth-asr``: German sentences read by several distinct voices (espeak-ng variants,
the MBROLA German voices, SVOX pico), random rate and pitch; test and dev voices and
sentences never occur in training, so WER measures generalisation to unseen speakers.

``synth-speakers``: a speaker-identification corpus from every usable MBROLA voice,
pico's voices and espeak-ng variants, each reading varied text under augmentation
(noise, reverberation, telephone band), split by speaker.

Both plan every utterance from a seed first, then synthesise in parallel processes.
Finished audio files are kept, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_text
from ..errors import InputError
from ..manifest import Utterance
from .common import PrepareResult, Rejection, already_done, default_workers, finished_audio_seconds, write_outputs
from .sentences import dictionary_sentences, file_sentences
from .tts import PICO_VOICES, SynthesisError, ToolMissing, Voice, mbrola_voices, probe_voice, synthesize

SAMPLE_RATE = 16000

# synth-asr, German: voices per split (test and dev voices are never trained on)
ASR_VOICES_DE = {
    "train": [Voice("mbrola", "mb-de1", "de"), Voice("mbrola", "mb-de2", "de"), Voice("mbrola", "mb-de3", "de"),
              Voice("mbrola", "mb-de4", "de"), Voice("espeak", "de+m1", "de"), Voice("espeak", "de+f2", "de"),
              Voice("pico", "de-DE", "de")],
    "dev": [Voice("mbrola", "mb-de7", "de"), Voice("espeak", "de+m3", "de")],
    "test": [Voice("mbrola", "mb-de5", "de"), Voice("mbrola", "mb-de6", "de"), Voice("espeak", "de+f4", "de")],
}
# synth-asr, English: the source-language data for domain confusion (MBROLA English voices, espeak-ng, pico)
ASR_VOICES_EN = {
    "train": [Voice("mbrola", "mb-en1", "en"), Voice("mbrola", "mb-us1", "en"), Voice("mbrola", "mb-us2", "en"),
              Voice("espeak", "en+m1", "en"), Voice("espeak", "en+f2", "en"), Voice("pico", "en-US", "en")],
    "dev": [Voice("mbrola", "mb-us3", "en")],
    "test": [Voice("espeak", "en+f4", "en"), Voice("pico", "en-GB", "en")],
}
ASR_VOICES = {"de": ASR_VOICES_DE, "en": ASR_VOICES_EN}
# --voices many: more training speakers (MBROLA de8 and espeak-ng's speaker variants reading German); the dev and
# test voices stay those above, so held-out results are comparable across voice sets
ESPEAK_ASR_VARIANTS = ("m1", "m2", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt3",
                       "klatt4", "klatt6", "Andy", "Annie", "adam", "anika", "aunty", "belinda", "benjamin", "boris",
                       "caleb", "david", "ed", "edward", "gustave", "iven", "john", "linda", "max", "michel",
                       "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "Alex",
                       "Alicia", "Andrea", "Denis", "Hugo", "Lee", "Marco", "Michael", "Mike", "Storm")
ASR_MANY_TRAIN_VOICES = {
    "de": ASR_VOICES_DE["train"] + [Voice("mbrola", "mb-de8", "de")]
    + [Voice("espeak", f"de+{v}", "de") for v in ESPEAK_ASR_VARIANTS if f"de+{v}" not in ("de+m1", "de+f2")],
    "en": ASR_VOICES_EN["train"] + [Voice("espeak", f"en+{v}", "en") for v in ESPEAK_ASR_VARIANTS
                                    if v not in ("m1", "f2")],
}
# with many voices, each training utterance first draws an engine: espeak-ng's many variants would otherwise
# make the corpus mostly formant synthesis, the least natural of the three
ENGINE_WEIGHTS = {"mbrola": 0.4, "pico": 0.25, "espeak": 0.35}
CHANNELS = ("clean", "realistic", "phone")
ESPEAK_SPEAKER_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
                           "klatt2", "klatt3", "croak", "grandma", "grandpa", "Andy", "Annie", "steph", "max")
PROBE_TEXT = {"de": "Der Zug fährt heute später ab als gestern.", "en": "The birch canoe slid on the smooth planks."}


@dataclass
class SynthItem:
    """One planned utterance."""

    id: str
    voice: Voice
    text: str
    split: str
    rate: float
    pitch: float
    augment: dict = field(default_factory=dict)  # {"noise_snr": dB, "rt60": s, "telephone": bool}
    seed: int = 0
    speaker: str | None = None  # the speaker label (default: the voice's id)
    channel: dict | None = None  # a recording channel for speech_tl.channel.apply_channel (None: clean)

    def rel_path(self) -> str:
        """Audio path; a hash of what is spoken and how keeps a resumed run from reusing a file of another plan."""
        parts = [self.voice.id, self.text, round(self.rate, 6), round(self.pitch, 6), self.augment, self.seed]
        if self.channel:
            parts.append(self.channel)
        key = json.dumps(parts, sort_keys=True, ensure_ascii=False)
        return f"wav/{self.voice.id}/{self.id}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.wav"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def render(item: SynthItem, root: str) -> tuple[str, float, str | None]:
    """Synthesise one item into ``root/rel_path`` (skipped if already there); ``(id, seconds, error)``."""
    import torch

    from ..audio import resample, write_audio
    from ..augment import add_noise, peak_normalize, reverberate, telephone

    path = Path(root) / item.rel_path()
    if (seconds := finished_audio_seconds(path)) is not None:  # a damaged leftover is synthesised again
        return item.id, seconds, None
    try:
        wave_np, sr = synthesize(item.voice, item.text, item.rate, item.pitch)
    except (SynthesisError, ToolMissing) as e:
        return item.id, 0.0, str(e)
    wave = resample(torch.from_numpy(wave_np), sr, SAMPLE_RATE)
    # trim leading/trailing digital silence beyond 150 ms
    idx = torch.nonzero(wave.abs() > 1e-3).flatten()
    if idx.numel():
        pad = int(0.15 * SAMPLE_RATE)
        wave = wave[max(0, int(idx[0]) - pad): int(idx[-1]) + pad]
    rng = np.random.default_rng(item.seed)
    aug = item.augment
    if aug.get("rt60"):
        wave = reverberate(wave, SAMPLE_RATE, aug["rt60"], rng)
    if aug.get("telephone"):
        wave = telephone(wave, SAMPLE_RATE)
    if aug.get("noise_snr") is not None:
        wave = add_noise(wave, aug["noise_snr"], rng)
    rate = SAMPLE_RATE
    if item.channel and item.channel.get("kind") == "phone":
        from ..channel import PHONE_RATE, apply_phone

        wave, rate = apply_phone(wave, SAMPLE_RATE, item.channel, item.seed), PHONE_RATE
    elif item.channel:
        from ..channel import apply_channel

        wave = apply_channel(wave, SAMPLE_RATE, item.channel, item.seed)
    else:
        wave = peak_normalize(wave, float(rng.uniform(0.5, 0.9)))
    write_audio(path, wave, rate)
    return item.id, wave.numel() / rate, None


def _render_star(args: tuple[SynthItem, str]) -> tuple[str, float, str | None]:
    return render(*args)


def render_all(items: Sequence[SynthItem], root: Path, workers: int | None = None, desc: str = "synthesising"
               ) -> list[tuple[str, float, str | None]]:
    """Render ``items`` across processes with a progress bar (order kept)."""
    workers = workers or default_workers()
    args = [(it, str(root)) for it in items]
    bar = dict(total=len(items), desc=desc, unit="utt", disable=not sys.stderr.isatty())
    if workers == 1 or len(items) < 8:
        _init_worker()
        return [render(*a) for a in tqdm(args, **bar)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.map(_render_star, args, chunksize=4), **bar))


def collect(items: Sequence[SynthItem], results, root: Path, language_of=None, id_prefix: str = ""
            ) -> tuple[dict[str, list[Utterance]], list[Rejection]]:
    """Turn render results into manifests per split and rejections (failed syntheses).

    ``id_prefix`` goes before every utterance id, so corpora of one plan under other names can be
    combined in one manifest (ids must be unique there)."""
    splits: dict[str, list[Utterance]] = {}
    rejected = []
    for item, (uid, seconds, error) in zip(items, results, strict=True):
        splits.setdefault(item.split, [])
        if error:
            rejected.append(Rejection("synthesis failed", error, item.voice.id, None, uid,
                                      str(root / item.rel_path())))
            continue
        extra = {"engine": item.voice.engine, "voice": item.voice.name, "domain": f"tts-{item.voice.engine}",
                 "text_language": item.voice.language, "rate": round(item.rate, 3), "pitch": round(item.pitch, 3)}
        if item.augment:
            extra["augment"] = item.augment
        if item.channel:
            extra["channel"] = item.channel
            if "clip_db" in item.channel:
                extra["clipping"] = "intended"  # training does not leave it out as a damaged recording
        splits[item.split].append(Utterance(
            id=id_prefix + uid, audio=str((root / item.rel_path()).resolve()), duration=round(seconds, 4),
            text=item.text,
            speaker=item.speaker or item.voice.id, language=language_of(item) if language_of else item.voice.language,
            sample_rate=8000 if (item.channel or {}).get("kind") == "phone" else SAMPLE_RATE, extra=extra))
    return splits, rejected


def usable_voices(voices: Sequence[Voice], workers: int | None = None) -> tuple[list[Voice], list[str]]:
    """Voices that speak a test sentence of their text language; the others with reasons."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        reasons = list(pool.map(lambda v: probe_voice(v, PROBE_TEXT[v.language]), voices))
    ok = [v for v, r in zip(voices, reasons, strict=True) if r is None]
    bad = [f"{v.id}: {r}" for v, r in zip(voices, reasons, strict=True) if r is not None]
    return ok, bad


# --------------------------------------------------------------------------- synth-asr

def voice_schedule(voices: Sequence[Voice], n: int, rng: random.Random | None = None,
                   engine_weights: dict[str, float] | None = None) -> list[Voice]:
    """``n`` voices for consecutive utterances: round-robin over ``voices``, or with ``rng`` and
    ``engine_weights`` an engine drawn by weight, then round-robin within that engine's voices."""
    if rng is None or not engine_weights:
        return [voices[k % len(voices)] for k in range(n)]
    by_engine: dict[str, list[Voice]] = {}
    for v in voices:
        by_engine.setdefault(v.engine, []).append(v)
    engines = sorted(by_engine)
    weights = [engine_weights.get(e, 0.0) for e in engines]
    if not any(weights):
        raise ValueError(f"no engine weight for any of {engines}")
    turn = dict.fromkeys(engines, 0)
    out = []
    for _ in range(n):
        e = rng.choices(engines, weights)[0]
        out.append(by_engine[e][turn[e] % len(by_engine[e])])
        turn[e] += 1
    return out


def plan_asr(sentences: Sequence[str], voices: dict[str, list[Voice]], num_utterances: int, seed: int,
             shares: dict[str, float] | None = None, channel_splits: Sequence[str] = (),
             engine_weights: dict[str, float] | None = None, channel_kind: str = "realistic") -> list[SynthItem]:
    """Seeded plan: sentences partitioned into disjoint train/dev/test pools, voices per split.

    Utterances of ``channel_splits`` get a recording channel drawn by :func:`speech_tl.channel.draw_channel`
    (``channel_kind="phone"``: a phone call by :func:`speech_tl.channel.draw_phone_channel`, rendered at 8 kHz)
    (from their own random stream, so the rest of the plan is the same with or without channels). With
    ``engine_weights`` the training voices are drawn engine by engine (see :func:`voice_schedule`).
    """
    from ..channel import draw_channel, draw_phone_channel

    draw = draw_phone_channel if channel_kind == "phone" else draw_channel

    shares = shares or {"train": 0.8, "dev": 0.1, "test": 0.1}
    rng = random.Random(seed)
    voice_rng = random.Random(f"{seed}-voices")
    channel_rng = random.Random(f"{seed}-channels")
    pool = sorted(set(sentences))  # a sentence repeated in the input must not land in two splits
    rng.shuffle(pool)
    items: list[SynthItem] = []
    start = 0
    names = [s for s in shares if voices.get(s)]
    for i, split in enumerate(names):
        n_sent = len(pool) - start if i == len(names) - 1 else int(round(shares[split] * len(pool)))
        split_sentences = pool[start:start + n_sent]
        start += n_sent
        n_utt = int(round(shares[split] * num_utterances))
        if not split_sentences or n_utt <= 0:
            continue
        schedule = voice_schedule(voices[split], n_utt, voice_rng if split == "train" else None, engine_weights)
        for k, voice in enumerate(schedule):
            text = split_sentences[k % len(split_sentences)]
            items.append(SynthItem(id=f"{split}-{k:06d}-{voice.id}", voice=voice, text=text, split=split,
                                   rate=rng.uniform(0.8, 1.25), pitch=rng.uniform(0.75, 1.3),
                                   seed=rng.randrange(2**31),
                                   channel=draw(channel_rng) if split in channel_splits else None))
    return items


def prepare_synth_asr(out_dir: str | Path, language: str = "de", num_utterances: int = 3000,
                      sentences: str | Path | None = None, seed: int = 0, workers: int | None = None,
                      force: bool = False, channel: str = "clean", voices: str = "few",
                      name: str = "synth-asr", overwrite: bool = False) -> PrepareResult:
    """Write ``<name>_<lang>_{train,dev,test,rejected}.jsonl`` and audio under ``out_dir/<name>/``.

    ``channel="realistic"`` renders every training and dev utterance through a recording channel drawn
    per utterance (room, noise, microphone, level, codec: :mod:`speech_tl.channel`), ``channel="phone"``
    through a phone call (8 kHz, a speech codec, noise, packet loss: :mod:`speech_tl.channel.phone`); the test set
    stays clean, so held-out results stay comparable. ``voices="many"`` trains on the many-voice set
    (:data:`ASR_MANY_TRAIN_VOICES`, engines drawn by :data:`ENGINE_WEIGHTS`) instead of the 7 default voices.
    """
    if language not in ASR_VOICES:
        raise InputError(f"synth-asr has voices for {' and '.join(ASR_VOICES)} only (got --lang {language}); "
                         "prepare a real corpus for other languages")
    if channel not in CHANNELS:
        raise InputError(f"--channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if voices not in ("few", "many"):
        raise InputError(f"--voices must be 'few' or 'many', got {voices!r}")
    out_dir = Path(out_dir)
    params = {"language": language, "num_utterances": num_utterances, "seed": seed,
              "sentences": str(Path(sentences).resolve()) if sentences else "trans-de-en"}
    if channel != "clean" or voices != "few":  # older corpora keep their done-markers valid
        params.update(channel=channel, voices=voices)
    if name != "synth-asr":
        params["id_prefix"] = f"{name}-"
    if not force and (done := already_done(out_dir, name, language, params, overwrite)):
        return done
    if channel == "phone":
        from ..channel.codecs import check_codecs
        from ..channel.phone import CODEC_SHARES

        check_codecs([c for c, _ in CODEC_SHARES])
    texts = file_sentences(sentences) if sentences else dictionary_sentences(language)
    plan_voices = dict(ASR_VOICES[language])
    if voices == "many":
        plan_voices["train"] = ASR_MANY_TRAIN_VOICES[language]
    every = [v for vs in plan_voices.values() for v in vs]
    ok, bad = usable_voices(every, workers)
    if bad:
        raise ToolMissing(f"some voices of {name} are not usable:\n  " + "\n  ".join(bad))
    items = plan_asr(texts, plan_voices, num_utterances, seed,
                     channel_splits=("train", "dev") if channel != "clean" else (), channel_kind=channel,
                     engine_weights=ENGINE_WEIGHTS if voices == "many" else None)
    root = out_dir / name
    results = render_all(items, root, workers, desc="synth-asr")
    splits, rejected = collect(items, results, root, id_prefix="" if name == "synth-asr" else f"{name}-")
    return write_outputs(out_dir, name, language, splits, rejected, params)


# --------------------------------------------------------------------------- synth-speakers

def speaker_voice_candidates() -> list[Voice]:
    """Every MBROLA database (German ones read German, the rest English), pico's voices, espeak-ng variants."""
    voices = [Voice("mbrola", n, "de" if n.startswith("mb-de") else "en") for n in mbrola_voices()]
    voices += [Voice("pico", n, "de" if n == "de-DE" else "en") for n in PICO_VOICES]
    voices += [Voice("espeak", f"en+{v}", "en") for v in ESPEAK_SPEAKER_VARIANTS]
    return voices


def draw_augment(rng: random.Random) -> dict:
    """Per-utterance channel: clean, noise, reverberation, telephone band, or noise with reverberation."""
    kind = rng.choices(["clean", "noise", "reverb", "telephone", "noise+reverb"], [0.2, 0.25, 0.2, 0.15, 0.2])[0]
    aug: dict = {}
    if "reverb" in kind:
        aug["rt60"] = round(rng.uniform(0.2, 0.8), 3)
    if kind == "telephone":
        aug["telephone"] = True
        aug["noise_snr"] = round(rng.uniform(15, 30), 1)
    if "noise" in kind:
        aug["noise_snr"] = round(rng.uniform(5, 20), 1)
    return aug


def plan_speakers(voices: Sequence[Voice], texts: dict[str, list[str]], per_speaker: int, seed: int,
                  num_test: int, num_dev: int) -> list[SynthItem]:
    """Seeded plan: speakers shuffled into test/dev/train; each reads ``per_speaker`` varied texts."""
    rng = random.Random(seed)
    order = sorted(voices, key=lambda v: v.id)
    rng.shuffle(order)
    split_of = {v.id: ("test" if i < num_test else "dev" if i < num_test + num_dev else "train")
                for i, v in enumerate(order)}
    items = []
    for voice in sorted(voices, key=lambda v: v.id):
        for k, text in enumerate(rng.sample(texts[voice.language], per_speaker)):
            items.append(SynthItem(id=f"{voice.id}-{k:04d}", voice=voice, text=text, split=split_of[voice.id],
                                   rate=rng.uniform(0.8, 1.3), pitch=rng.uniform(0.8, 1.25),
                                   augment=draw_augment(rng), seed=rng.randrange(2**31)))
    return items


def prepare_synth_speakers(out_dir: str | Path, utterances_per_speaker: int = 24, num_test_speakers: int = 20,
                           num_dev_speakers: int = 10, seed: int = 0, workers: int | None = None,
                           force: bool = False, max_speakers: int | None = None,
                           overwrite: bool = False) -> PrepareResult:
    """Write ``synth-speakers_mul_{train,dev,test,rejected}.jsonl`` and audio under ``out_dir/synth-speakers/``.

    Voices that cannot speak (not installed, or too many phonemes unknown to an MBROLA
    voice) are left out and listed in the rejected file with their reason.
    """
    out_dir = Path(out_dir)
    params = {"utterances_per_speaker": utterances_per_speaker, "num_test_speakers": num_test_speakers,
              "num_dev_speakers": num_dev_speakers, "seed": seed, "max_speakers": max_speakers}
    if not force and (done := already_done(out_dir, "synth-speakers", "mul", params, overwrite)):
        return done
    candidates = speaker_voice_candidates()
    if max_speakers:
        candidates = random.Random(seed).sample(candidates, min(max_speakers, len(candidates)))
    voices, bad = usable_voices(candidates, workers)
    if len(voices) < num_test_speakers + num_dev_speakers + 2:
        raise ToolMissing(f"only {len(voices)} usable voices, {num_test_speakers + num_dev_speakers + 2} needed; "
                          "install the MBROLA voices (`make system-deps`) or lower --num-test-speakers")
    texts = {"de": dictionary_sentences("de"), "en": dictionary_sentences("en")}
    items = plan_speakers(voices, texts, utterances_per_speaker, seed, num_test_speakers, num_dev_speakers)
    root = out_dir / "synth-speakers"
    results = render_all(items, root, workers, desc="synth-speakers")
    splits, rejected = collect(items, results, root, language_of=lambda it: it.voice.language)
    rejected += [Rejection("voice unusable", reason, "voices", None, reason.split(":")[0]) for reason in bad]
    return write_outputs(out_dir, "synth-speakers", "mul", splits, rejected, params)


# --------------------------------------------------------------------------- synth-crosslingual

CROSS_LANGUAGES = ("en", "de")


def plan_crosslingual(variants: Sequence[str], texts: dict[str, list[str]], per_language: int, seed: int,
                      num_test: int) -> list[SynthItem]:
    """Seeded plan: each espeak-ng voice variant is one speaker reading ``per_language`` texts in English and German.

    Speakers are shuffled into test (``num_test``) and train; the speaker label ``espeak-<variant>`` is the
    same in both languages, the utterance's ``language`` says which one it speaks.
    """
    rng = random.Random(seed)
    order = sorted(variants)
    rng.shuffle(order)
    test = set(order[:num_test])
    items = []
    for v in sorted(variants):
        for lang in CROSS_LANGUAGES:
            voice = Voice("espeak", f"{lang}+{v}", lang)
            for k, text in enumerate(rng.sample(texts[lang], per_language)):
                items.append(SynthItem(id=f"xl-{v}-{lang}-{k:03d}", voice=voice, text=text,
                                       split="test" if v in test else "train", rate=rng.uniform(0.85, 1.2),
                                       pitch=rng.uniform(0.9, 1.1), augment=draw_augment(rng),
                                       seed=rng.randrange(2**31), speaker=f"espeak-{v}"))
    return items


def cross_language_trials(utts: Sequence[Utterance], enroll: str = "en", test: str = "de") -> list[str]:
    """VoxCeleb-style lines ``LABEL ENROLL_ID TEST_ID``: every ``enroll``-language utterance against every
    ``test``-language one (same speaker: 1, else 0)."""
    a = [u for u in utts if u.language == enroll]
    b = [u for u in utts if u.language == test]
    return [f"{int(x.speaker == y.speaker)} {x.id} {y.id}" for x in a for y in b]


def prepare_synth_crosslingual(out_dir: str | Path, utterances_per_language: int = 12, num_test_speakers: int = 8,
                               seed: int = 0, workers: int | None = None, force: bool = False,
                               overwrite: bool = False) -> PrepareResult:
    """Write ``synth-xlang_mul_{train,test,rejected}.jsonl``, audio under ``out_dir/synth-xlang/`` and
    ``synth-xlang_mul_test_trials.txt`` (English enrolment against German test utterances of the test speakers)."""
    out_dir = Path(out_dir)
    params = {"utterances_per_language": utterances_per_language, "num_test_speakers": num_test_speakers,
              "seed": seed}
    trials_path = out_dir / "synth-xlang_mul_test_trials.txt"
    if not force and (done := already_done(out_dir, "synth-xlang", "mul", params, overwrite)) and trials_path.is_file():
        return done
    voices = [Voice("espeak", f"{lang}+{v}", lang) for v in ESPEAK_SPEAKER_VARIANTS for lang in CROSS_LANGUAGES]
    ok, bad = usable_voices(voices, workers)
    speaks = {v.name for v in ok}
    variants = [v for v in ESPEAK_SPEAKER_VARIANTS if all(f"{lang}+{v}" in speaks for lang in CROSS_LANGUAGES)]
    if len(variants) < num_test_speakers + 2:
        raise ToolMissing(f"only {len(variants)} espeak-ng variants speak both English and German; "
                          f"{num_test_speakers + 2} needed (`make system-deps` installs espeak-ng)")
    texts = {lang: dictionary_sentences(lang) for lang in CROSS_LANGUAGES}
    items = plan_crosslingual(variants, texts, utterances_per_language, seed, num_test_speakers)
    root = out_dir / "synth-xlang"
    results = render_all(items, root, workers, desc="synth-xlang")
    splits, rejected = collect(items, results, root)
    rejected += [Rejection("voice unusable", reason, "voices", None, reason.split(":")[0]) for reason in bad]
    atomic_write_text(trials_path, "\n".join(cross_language_trials(splits.get("test", []))) + "\n")
    result = write_outputs(out_dir, "synth-xlang", "mul", splits, rejected, params)
    result.files["trials"] = trials_path
    return result


__all__ = ["prepare_synth_asr", "prepare_synth_speakers", "prepare_synth_crosslingual", "cross_language_trials",
           "plan_asr", "plan_speakers", "plan_crosslingual", "render", "SynthItem"]
