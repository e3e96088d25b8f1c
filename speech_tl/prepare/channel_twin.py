"""The telephone twin of a manifest: every utterance through its own phone channel, written once.

``speech-tl prepare channel MANIFEST --channel phone --out OUT.jsonl`` reads any manifest (real
or synthetic, any language), draws one phone channel per utterance (:mod:`speech_tl.channel.phone`)
from a stream seeded by ``--seed`` and the utterance id (so a line's draw does not depend on
the others, and the same seed gives the same audio), renders it, and writes:

- ``OUT.jsonl``: the same utterances (text, speaker, language kept; id ``<id>-phone``, so a manifest can
  hold both twins, with ``source_id`` the original), ``audio`` the 8 kHz WAV of the call, ``channel`` the
  draw and ``source_audio`` the file it came from;
- ``OUT_audio/<id>-<hash>.wav``: the audio, each file written atomically and skipped when a
  resumed run finds it (the hash covers source, channel and seed);
- ``OUT_rejected.jsonl``: utterances whose audio could not be read, with the manifest line;
- ``.OUT.jsonl.done``: the parameters, written last. The same parameters again are skipped,
  other parameters are refused unless ``--overwrite`` (or ``--force``).

Babble noise mixes other utterances of the manifest (or of ``--babble MANIFEST``), never the
utterance itself; their ids are in the draw. With ``--babble-language same`` (the default) the talkers speak the
caller's language wherever the pool holds more than :data:`MIN_SAME_LANGUAGE` utterances of it, the caller's own
line included (the people around a caller mostly do, and a model that learned to ignore foreign babble has not
learned to ignore its own language's); elsewhere (a language the pool lacks, a line without a language), and with
``any``, from the whole pool. The talkers' candidates come from the call's own random stream, so on a multilingual
pool ``same`` and ``any`` draw different calls altogether (each a draw of the same channel distribution), not the
same calls with other talkers; on a one-language pool they draw the same calls.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..atomic import atomic_write_text
from ..digest import file_sha1
from ..errors import InputError
from ..manifest import Utterance, read_manifest, write_jsonl, write_manifest
from .common import (
    PrepareResult,
    Rejection,
    default_workers,
    finished_audio_seconds,
    finished_files,
    read_rejections,
)

CHANNEL_KINDS = ("phone",)
BABBLE_LANGUAGES = ("same", "any")
MIN_SAME_LANGUAGE = 3  # a babble draws 3-6 talkers, never the caller: more than 3 lines, the caller's included


def _talker_pools(utts: list[Utterance], pool: list[Utterance], babble_language: str
                  ) -> tuple[list[str], dict[str, list[str]]]:
    """Utterance ids babble may draw from: the whole pool, and the pools of the callers' languages where ``same``
    narrows them (languages not listed draw from the whole pool)."""
    whole = [u.id for u in pool]
    by_language: dict[str, list[str]] = {}
    if babble_language == "same":
        for lang in {u.language for u in utts if u.language}:
            same = [u.id for u in pool if u.language == lang]
            if MIN_SAME_LANGUAGE < len(same) < len(whole):
                by_language[lang] = same
    return whole, by_language


def _source(u: Utterance) -> dict:
    return {"audio": str(u.audio_path()), "offset": u.offset or 0.0,
            "duration": u.duration if u.offset is not None else None}  # a span (offset 0 included): its duration


def _load(src: dict):
    from ..audio import load_audio

    return load_audio(src["audio"], offset=src["offset"], duration=src["duration"])


def _render(job: dict) -> tuple[str, float, str | None, dict | None]:
    """Worker: render one call into ``job["out"]`` (kept if there); ``(id, seconds, error, channel as rendered)``."""

    from ..audio import AudioError, write_audio
    from ..channel import PHONE_RATE, apply_phone

    out = Path(job["out"])
    if (seconds := finished_audio_seconds(out)) is not None:  # a damaged leftover is rendered again
        return job["id"], seconds, None, None
    try:
        wave = _load(job["source"])
    except AudioError as e:
        return job["id"], 0.0, str(e), None
    talkers, used = [], []
    for tid, src in zip(job["talker_ids"], job["talkers"], strict=True):
        try:  # a babble talker that cannot be read is left out of the mix (and of the recorded draw)
            talkers.append(_load(src))
            used.append(tid)
        except AudioError:
            continue
    channel = job["channel"]
    if job["talkers"] and len(used) < len(job["talkers"]):
        if not used:
            return job["id"], 0.0, f"none of its babble talkers could be read ({', '.join(job['talker_ids'])})", None
        channel = {**channel, "noise": {**channel["noise"], "talkers": used}}
    phone = apply_phone(wave, 16000, channel, job["seed"], talkers)
    write_audio(out, phone, PHONE_RATE)
    return job["id"], phone.numel() / PHONE_RATE, None, channel


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _file_name(uid: str, key: dict) -> str:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', uid)[:80]}-{digest}.wav"


def prepare_channel_twin(manifest: str | Path, out: str | Path, channel: str = "phone", seed: int = 0,
                         codec: str | None = None, babble: str | Path | None = None, workers: int | None = None,
                         force: bool = False, overwrite: bool = False, max_utterances: int | None = None,
                         babble_language: str = "same") -> PrepareResult:
    """Write the ``channel`` twin of ``manifest`` to ``out`` (see the module docstring); with ``max_utterances``,
    of a seeded sample of that many utterances (in manifest order)."""
    from ..channel import CODECS, draw_phone_channel
    from ..channel.codecs import check_codecs
    from ..channel.phone import CODEC_SHARES

    if channel not in CHANNEL_KINDS:
        raise InputError(f"--channel must be one of {', '.join(CHANNEL_KINDS)}, got {channel!r}")
    if codec is not None and codec not in CODECS:
        raise InputError(f"--codec must be one of {', '.join(CODECS)}, got {codec!r}")
    if babble_language not in BABBLE_LANGUAGES:
        raise InputError(f"--babble-language must be one of {', '.join(BABBLE_LANGUAGES)}, got {babble_language!r}")
    manifest, out = Path(manifest), Path(out)
    if out.suffix != ".jsonl":
        raise InputError(f"{out}: the twin manifest's name must end in .jsonl")
    if out.resolve() == manifest.resolve():
        raise InputError(f"{out}: the twin cannot replace its own source manifest; choose another --out")
    if max_utterances is not None and max_utterances < 1:
        raise InputError(f"--max-utterances must be at least 1, got {max_utterances}")
    utts = read_manifest(manifest)
    pool_utts = read_manifest(babble) if babble else utts
    if max_utterances is not None and max_utterances < len(utts):
        keep = set(random.Random(f"{seed}/sample").sample(range(len(utts)), max_utterances))
        utts = [u for i, u in enumerate(utts) if i in keep]
    audio_dir = out.with_name(out.stem + "_audio")
    rejected_path = out.with_name(out.stem + "_rejected.jsonl")
    marker = out.with_name(f".{out.name}.done")
    params = {"manifest": str(manifest.resolve()), "manifest_sha1": file_sha1(manifest), "channel": channel,
              "seed": seed, "codec": codec,
              "babble": str(Path(babble).resolve()) if babble else None, "max_utterances": max_utterances}
    whole_pool, language_pools = _talker_pools(utts, pool_utts, babble_language)
    if language_pools:  # the choice changes draws (a multilingual pool)
        params["babble_language"] = babble_language
    if not force and (files := finished_files(marker, params, overwrite, f"the {channel} twin was written here",
                                               "another --out")):
        return PrepareResult(f"{channel} twin of {manifest.name}", ",".join(sorted({u.language for u in utts})),
                             {"twin": read_manifest(files["twin"])}, read_rejections(files["rejected"]), files,
                             skipped=True)
    check_codecs([codec] if codec else [c for c, _ in CODEC_SHARES])
    by_id = {u.id: u for u in pool_utts}
    jobs = []
    for u in utts:
        rng = random.Random(f"{seed}/{channel}/{u.id}")
        ids = language_pools.get(u.language, whole_pool)
        draw = draw_phone_channel(rng, talkers=[t for t in rng.sample(ids, min(len(ids), 7)) if t != u.id],
                                  codec=codec)
        talkers = (draw.get("noise") or {}).get("talkers", [])
        call_seed = rng.randrange(2**31)
        src = _source(u)
        name = _file_name(u.id, {"source": src, "channel": draw, "seed": call_seed})
        jobs.append({"id": u.id, "source": src, "channel": draw, "seed": call_seed,
                     "talker_ids": list(talkers), "talkers": [_source(by_id[t]) for t in talkers],
                     "out": str(audio_dir / name)})
    results = _render_all(jobs, workers)
    kept, rejected = [], []
    for u, job, (_, seconds, error, rendered) in zip(utts, jobs, results, strict=True):
        if error:
            rejected.append(Rejection("unreadable audio", error, str(manifest), u.line, u.id, str(u.audio_path())))
            continue
        extra = {**u.extra, "channel": rendered or job["channel"], "source_audio": job["source"]["audio"],
                 "source_id": u.id, "domain": channel}
        if job["source"]["offset"] or job["source"]["duration"] is not None:  # a segment of its file
            extra.update(source_offset=job["source"]["offset"], source_duration=job["source"]["duration"])
        if "clip_db" in extra["channel"]:
            extra["clipping"] = "intended"  # training does not leave it out as a damaged recording
        kept.append(Utterance(id=f"{u.id}-{channel}", audio=str(Path(job["out"]).resolve()), duration=round(seconds, 4),
                              text=u.text, speaker=u.speaker, language=u.language, sample_rate=8000, extra=extra))
    write_manifest(out, kept)
    written = {Path(j["out"]).name for j in jobs}
    for old in audio_dir.glob("*.wav"):  # calls of an earlier draw (--overwrite, --force): only this run's stay
        if old.name not in written:
            old.unlink()
    write_jsonl(rejected_path, (r.to_dict() for r in rejected))
    files = {"twin": out, "rejected": rejected_path}
    atomic_write_text(marker, json.dumps({"params": params, "files": {k: str(v.resolve()) for k, v in files.items()}},
                                         ensure_ascii=False, indent=1))
    languages = ",".join(sorted({u.language for u in utts})) or "no utterances"
    return PrepareResult(f"{channel} twin of {manifest.name}", languages, {"twin": kept}, rejected, files)


def _render_all(jobs: list[dict], workers: int | None) -> list[tuple[str, float, str | None, dict | None]]:
    import sys

    workers = workers or default_workers()
    bar = dict(total=len(jobs), desc="phone calls", unit="utt", disable=not sys.stderr.isatty())
    if workers == 1 or len(jobs) < 8:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [_render(j) for j in tqdm(jobs, **bar)]
        finally:
            torch.set_num_threads(threads)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.map(_render, jobs, chunksize=2), **bar))
