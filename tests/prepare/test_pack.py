"""`prepare pack`: utterances of one language and domain packed into Whisper windows, written once.

The sources are seeded noise bursts (16 kHz, PCM 16), so each part can be found sample for sample in a pack, one
8 kHz sine (resampled to 16 kHz on the way in) and segments (``offset``/``duration``) of a longer recording.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.errors import InputError, OutputExistsError
from speech_tl.manifest import Utterance, read_manifest, write_manifest
from speech_tl.prepare.pack import plan_packs, prepare_pack
from tests.prepare.rerun import assert_other_parameters_refused_unless_overwrite

SR = 16000
SINE_HZ = 440.0
TEXTS = ["Guten Morgen.", "Wie geht es dir?", "Das Wetter ist schön.", "Bis morgen.", "Ich rufe später an.",
         "Der Zug ist pünktlich.", "Wo ist der Bahnhof?", "Danke schön.", "Heute nicht.", "Gute Nacht.",
         "Bitte warten.", "Alles klar.", "Good morning.", "See you."]


def noise(seconds: float, seed: int) -> np.ndarray:
    """Seeded int16 noise (peak < 0.5 of full scale, so a float round trip through PCM 16 is exact)."""
    return np.random.default_rng(seed).integers(-14000, 14000, int(round(seconds * SR)), dtype=np.int16)


def sine_8k(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * 8000))) / 8000
    return np.round(0.4 * 32767 * np.sin(2 * np.pi * SINE_HZ * t)).astype(np.int16)


def corpus(folder: Path, rows: list[tuple], relative: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """A manifest of ``rows`` ``(id, seconds, language, domain or "", kind)``, kind ``"noise"`` (16 kHz), ``"8k"``
    (a sine at 8 kHz) or ``("segment", offset, seconds of the whole file)`` (noise, a span of a longer file);
    returns it and the 16 kHz float32 waveform each utterance should contribute (the sine's analytically)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav").mkdir(exist_ok=True)
    utts, expected = [], {}
    for i, (uid, seconds, lang, domain, kind) in enumerate(rows):
        wav = folder / "wav" / f"{uid}.wav"
        offset = None
        if kind == "8k":
            sf.write(str(wav), sine_8k(seconds), 8000, subtype="PCM_16")
            t = np.arange(int(round(seconds * SR))) / SR
            expected[uid] = (0.4 * np.sin(2 * np.pi * SINE_HZ * t)).astype(np.float32)
        elif kind == "noise":
            data = noise(seconds, seed=100 + i)
            sf.write(str(wav), data, SR, subtype="PCM_16")
            expected[uid] = data.astype(np.float32) / 32768
        else:
            _, offset, total = kind
            data = noise(total, seed=100 + i)
            wav = folder / "wav" / f"{uid}-long.wav"
            sf.write(str(wav), data, SR, subtype="PCM_16")
            start = int(round(offset * SR))
            expected[uid] = data[start:start + int(round(seconds * SR))].astype(np.float32) / 32768
        utts.append(Utterance(id=uid, audio=str(wav), duration=seconds, text=TEXTS[i % len(TEXTS)],
                              speaker=f"spk{i % 3}", language=lang, offset=offset,
                              extra={"domain": domain} if domain else {}))
    manifest = folder / "corpus.jsonl"
    write_manifest(manifest, utts, relative=relative)
    return manifest, expected


def mixed_rows() -> list[tuple]:
    """16 utterances of 1-3.5 s: German read and phone, English without a domain, one German 8 kHz clip."""
    rows = []
    for i in range(16):
        lang, domain = [("de", "read"), ("de", "phone"), ("en", ""), ("de", "read")][i % 4]
        kind = "8k" if i == 5 else "noise"
        rows.append((f"u{i:02d}" + ("-8k" if i == 5 else ""), 1.0 + (i * 7 % 6) * 0.5, lang, domain, kind))
    return rows


def audio_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_audio")


def wav_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(audio_dir(out).glob("*.wav"))}


def assert_pack_audio(pack: Utterance, pauses: list[float], expected: dict[str, np.ndarray]) -> None:
    """The pack's WAV is its parts' audio in order with ``pauses`` of digital silence between them."""
    info = sf.info(str(pack.audio_path()))
    assert info.samplerate == SR and info.channels == 1
    audio, _ = sf.read(str(pack.audio_path()), dtype="float32")
    parts = pack.extra["parts"]
    assert len(pauses) == len(parts) - 1
    gaps = [int(round(p * SR)) for p in pauses]
    assert audio.size == sum(expected[p].size for p in parts) + sum(gaps), pack.id
    assert pack.duration == pytest.approx(audio.size / SR, abs=1e-4)
    at = 0
    for k, part in enumerate(parts):
        if k:
            assert 0.2 * SR <= gaps[k - 1] <= 0.8 * SR
            assert not audio[at:at + gaps[k - 1]].any(), f"{pack.id}: pause before {part} is not silence"
            at += gaps[k - 1]
        want = expected[part]
        got = audio[at:at + want.size]
        if part.endswith("8k"):  # resampled: compare away from the edges (the sinc filter's ringing)
            assert np.abs(got[64:-64] - want[64:-64]).max() < 0.01, f"{pack.id}: {part} not at sample {at}"
        else:
            assert np.abs(got - want).max() <= 1 / 32768, f"{pack.id}: {part} not at sample {at}"
        at += want.size
    assert at == audio.size


# --------------------------------------------------------------------------- the plan


def test_plan_covers_every_utterance_once_in_windows_of_one_language_and_domain():
    utts = [Utterance(id=f"u{i:03d}", audio=f"{i}.wav", duration=0.5 + (i * 37 % 100) / 10, text="t", speaker="s",
                      language=["de", "en"][i % 2], extra={"domain": ["read", "phone", ""][i % 3]} if i % 3 else {})
            for i in range(120)]
    utts.append(Utterance(id="long", audio="l.wav", duration=29.5, text="t", speaker="s", language="de"))
    key = {u.id: (u.language, u.extra.get("domain", "")) for u in utts}
    for seed in range(5):
        packs = plan_packs(utts, seed, 4.0, 12.0)
        ids = [u.id for parts, _ in packs for u in parts]
        assert sorted(ids) == sorted(key)  # every utterance once
        assert any(len(parts) > 2 for parts, _ in packs)
        for parts, pauses in packs:
            assert len({key[u.id] for u in parts}) == 1
            assert len(pauses) == len(parts) - 1 and all(0.2 <= p <= 0.8 for p in pauses)
            if len(parts) > 1:
                assert sum(u.duration for u in parts) + sum(pauses) <= 12.0
        assert [len(parts) for parts, _ in packs if "long" in {u.id for u in parts}] == [1]
    # deterministic per seed, another seed another plan
    show = lambda packs: [([u.id for u in parts], pauses) for parts, pauses in packs]  # noqa: E731
    assert show(plan_packs(utts, 3, 4.0, 12.0)) == show(plan_packs(list(utts), 3, 4.0, 12.0))
    assert show(plan_packs(utts, 3, 4.0, 12.0)) != show(plan_packs(utts, 4, 4.0, 12.0))


# --------------------------------------------------------------------------- the written packs


def test_packs_cover_each_utterance_once_and_hold_its_audio(tmp_path):
    manifest, expected = corpus(tmp_path / "src", mixed_rows())
    src = {u.id: u for u in read_manifest(manifest)}
    out = tmp_path / "packed" / "train.jsonl"
    res = prepare_pack(manifest, out, min_seconds=3.0, max_seconds=6.0, seed=1, workers=1)
    assert not res.skipped and not res.rejected
    packs = read_manifest(out)
    assert [p.id for p in res.splits["packed"]] == [p.id for p in packs]
    parts = [i for p in packs for i in p.extra["parts"]]
    assert Counter(parts) == Counter(list(src))  # each utterance in exactly one pack
    assert len(packs) < len(src) and any(len(p.extra["parts"]) > 1 for p in packs)
    assert len({p.id for p in packs}) == len(packs)
    plan = {tuple(u.id for u in ps): pauses for ps, pauses in plan_packs(list(src.values()), 1, 3.0, 6.0)}
    for p in packs:
        members = [src[i] for i in p.extra["parts"]]
        assert {u.language for u in members} == {p.language}
        domains = {u.extra.get("domain", "") for u in members}
        assert len(domains) == 1 and p.extra.get("domain", "") == domains.pop()
        assert p.text == " ".join(u.text for u in members)
        assert p.speaker == "pack" and p.sample_rate == SR
        if len(members) > 1:
            assert p.duration <= 6.0 + 1e-3
        assert p.audio_path().parent == audio_dir(out) and p.audio_path().is_file()
        assert_pack_audio(p, plan[tuple(p.extra["parts"])], expected)
    assert {p.audio_path().name for p in packs} == set(wav_bytes(out))
    marker = json.loads(out.with_name(".train.jsonl.done").read_text())
    assert marker["params"] == {"manifest": str(manifest.resolve()), "min_seconds": 3.0, "max_seconds": 6.0,
                                "seed": 1, "manifest_sha1": hashlib.sha1(manifest.read_bytes()).hexdigest()}


def test_resampled_input_and_segments_are_placed_at_their_offsets(tmp_path):
    """One window holding an 8 kHz clip (two 16 kHz samples per input sample) and spans of a longer recording:
    one starting at 0 s and one in the middle; only the span is packed, not the whole file."""
    rows = [("a", 1.25, "de", "read", "noise"), ("b-8k", 1.5, "de", "read", "8k"),
            ("c", 2.0, "de", "read", "noise"), ("d", 1.0, "de", "read", ("segment", 0.0, 4.0)),
            ("e", 1.5, "de", "read", ("segment", 2.0, 4.0))]
    manifest, expected = corpus(tmp_path / "src", rows)
    out = tmp_path / "one.jsonl"
    prepare_pack(manifest, out, min_seconds=30, max_seconds=30, seed=7, workers=1)
    (pack,) = read_manifest(out)
    assert sorted(pack.extra["parts"]) == ["a", "b-8k", "c", "d", "e"]
    ((parts, pauses),) = plan_packs(read_manifest(manifest), 7, 30, 30)
    assert [u.id for u in parts] == pack.extra["parts"]
    assert_pack_audio(pack, pauses, expected)
    assert pack.duration == pytest.approx(sum(u.duration for u in parts) + sum(pauses), abs=1e-3)


# --------------------------------------------------------------------------- seeds and reruns


def test_same_seed_same_bytes_other_seed_other_packs(tmp_path):
    manifest, _ = corpus(tmp_path / "src", mixed_rows())
    a, b, c = (tmp_path / n / "p.jsonl" for n in "abc")
    prepare_pack(manifest, a, min_seconds=3, max_seconds=6, seed=5, workers=1)
    prepare_pack(manifest, b, min_seconds=3, max_seconds=6, seed=5, workers=2)  # worker processes: the same bytes
    prepare_pack(manifest, c, min_seconds=3, max_seconds=6, seed=6, workers=1)

    def rows(out: Path) -> list[dict]:
        return [u.to_dict() | {"audio": u.audio_path().name} for u in read_manifest(out)]

    assert len(read_manifest(a)) >= 4 and rows(a) == rows(b)
    assert wav_bytes(a) == wav_bytes(b) and len(wav_bytes(a)) == len(rows(a))
    assert [r["parts"] for r in rows(a)] != [r["parts"] for r in rows(c)]
    by_parts = lambda out: {tuple(r["parts"]): r for r in rows(out)}  # noqa: E731
    assert set(by_parts(a)) != set(by_parts(c))


def test_rerun_is_skipped_other_parameters_refused_unless_overwrite(tmp_path):
    manifest, expected = corpus(tmp_path / "src", mixed_rows())
    out = tmp_path / "packed" / "p.jsonl"
    prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=1, workers=1)
    first = wav_bytes(out)
    before = {p: p.stat().st_mtime_ns for p in out.parent.rglob("*") if p.is_file()}
    again = prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=1, workers=1)
    assert again.skipped and [u.id for u in again.splits["packed"]] == [u.id for u in read_manifest(out)]
    assert {p: p.stat().st_mtime_ns for p in out.parent.rglob("*") if p.is_file()} == before
    for kw in ({"seed": 2}, {"max_seconds": 8.0}, {"min_seconds": 2.0}):
        with pytest.raises(OutputExistsError, match="other parameters.*--overwrite"):
            prepare_pack(manifest, out, **{"min_seconds": 3, "max_seconds": 6, "seed": 1, "workers": 1, **kw})
        assert {p: p.stat().st_mtime_ns for p in out.parent.rglob("*") if p.is_file()} == before
    res = prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=2, workers=1, overwrite=True)
    assert not res.skipped
    packs = read_manifest(out)
    second = wav_bytes(out)
    assert {p.audio_path().name for p in packs} == set(second)  # only this run's WAVs are left
    # ... and each holds this run's parts, not a leftover of the seed-1 run of the same name
    fresh = tmp_path / "fresh" / "p.jsonl"
    prepare_pack(manifest, fresh, min_seconds=3, max_seconds=6, seed=2, workers=1)
    assert [p.extra["parts"] for p in packs] == [p.extra["parts"] for p in read_manifest(fresh)]
    assert list(second.values()) == list(wav_bytes(fresh).values())
    plan = {tuple(u.id for u in ps): pauses for ps, pauses in plan_packs(read_manifest(manifest), 2, 3, 6)}
    for p in packs:
        assert_pack_audio(p, plan[tuple(p.extra["parts"])], expected)
    assert second != first
    assert prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=2, workers=1).skipped
    assert json.loads(out.with_name(".p.jsonl.done").read_text())["params"]["seed"] == 2
    # --force redoes the same parameters, to the same bytes
    assert not prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=2, workers=1, force=True).skipped
    assert wav_bytes(out) == second


# --------------------------------------------------------------------------- errors and paths


def test_an_utterance_longer_than_whisper_window_is_an_error_naming_its_line(tmp_path):
    rows = [("a", 1.0, "de", "read", "noise"), ("b", 2.0, "de", "read", "noise"),
            ("too-long", 30.5, "de", "read", "noise"), ("c", 31.0, "de", "read", "noise")]
    manifest, _ = corpus(tmp_path / "src", rows)
    out = tmp_path / "out" / "p.jsonl"
    with pytest.raises(InputError, match=rf"{manifest}:3: utterance 'too-long' is 30\.5 s.*\(2 such\)"):
        prepare_pack(manifest, out, workers=1)
    assert not out.parent.exists()


@pytest.mark.parametrize("lo, hi", [(0, 10), (-1, 10), (12, 10), (5, 30.5), (float("nan"), 10)])
def test_bad_window_bounds_are_input_errors(tmp_path, lo, hi):
    manifest, _ = corpus(tmp_path / "src", [("a", 1.0, "de", "", "noise")])
    with pytest.raises(InputError, match="--min-seconds"):
        prepare_pack(manifest, tmp_path / "p.jsonl", min_seconds=lo, max_seconds=hi, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_output_must_be_another_jsonl(tmp_path):
    manifest, _ = corpus(tmp_path / "src", [("a", 1.0, "de", "", "noise")])
    for out in (tmp_path / "p.json", manifest):
        with pytest.raises(InputError, match="its own name ending in .jsonl"):
            prepare_pack(manifest, out, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_relative_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    """Run from one folder with a relative manifest (its audio relative too) and a relative --out; read the packs
    from another folder."""
    corpus(tmp_path / "work" / "src", mixed_rows()[:6], relative=True)
    assert not Path(json.loads((tmp_path / "work/src/corpus.jsonl").read_text().splitlines()[0])["audio"]).is_absolute()
    monkeypatch.chdir(tmp_path / "work")
    res = CliRunner().invoke(main, ["prepare", "pack", "src/corpus.jsonl", "--out", "packs/p.jsonl",
                                    "--min-seconds", "3", "--max-seconds", "6", "--workers", "1"])
    assert res.exit_code == 0, res.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    packs = read_manifest(tmp_path / "work" / "packs" / "p.jsonl")
    assert packs and all(p.audio_path().is_file() for p in packs)
    assert all(p.audio_path().resolve().parent == tmp_path / "work" / "packs" / "p_audio" for p in packs)
    assert {p.audio_path().name for p in packs} == set(wav_bytes(tmp_path / "work" / "packs" / "p.jsonl"))
    assert not (tmp_path / "elsewhere" / "packs").exists()
    # the same run named by absolute paths from here is the one already done
    again = prepare_pack(tmp_path / "work/src/corpus.jsonl", tmp_path / "work/packs/p.jsonl", 3, 6, workers=1)
    assert again.skipped


def test_cli_end_to_end(tmp_path):
    manifest, expected = corpus(tmp_path / "src", mixed_rows())
    out = tmp_path / "packed" / "p.jsonl"
    args = ["prepare", "pack", str(manifest), "--out", str(out), "--min-seconds", "3", "--max-seconds", "6",
            "--seed", "4", "--workers", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    packs = read_manifest(out)
    assert f"kept {len(packs):>7} utterances" in res.output and str(out) in res.output
    assert Counter(i for p in packs for i in p.extra["parts"]) == Counter(u.id for u in read_manifest(manifest))
    assert len(wav_bytes(out)) == len(packs)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "already prepared" in res.output, res.output
    assert_other_parameters_refused_unless_overwrite([*args, "--seed", "9"], out.parent, out)
    assert json.loads(out.with_name(".p.jsonl.done").read_text())["params"]["seed"] == 9
    plan = {tuple(u.id for u in ps): pauses for ps, pauses in plan_packs(read_manifest(manifest), 9, 3, 6)}
    for p in read_manifest(out):
        assert_pack_audio(p, plan[tuple(p.extra["parts"])], expected)
    bad = CliRunner().invoke(main, ["prepare", "pack", str(manifest), "--out", str(tmp_path / "x.jsonl"),
                                    "--max-seconds", "40"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "30" in bad.output, bad.output


def test_an_interrupted_run_keeps_the_finished_wavs_and_redoes_a_damaged_one(tmp_path):
    manifest, expected = corpus(tmp_path / "src", mixed_rows()[:8])
    out = tmp_path / "p.jsonl"
    prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=3, workers=1)
    done = wav_bytes(out)
    out.unlink()  # killed before the manifest and the marker were written
    out.with_name(".p.jsonl.done").unlink()
    first, second = sorted(audio_dir(out).glob("*.wav"))[:2]
    mtime = first.stat().st_mtime_ns
    second.write_bytes(b"RIFF cut short")
    stray = audio_dir(out) / "pack-de-999999-00000000.wav"
    stray.write_bytes(done[first.name])
    res = prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=3, workers=1)
    assert not res.skipped and wav_bytes(out) == done and not stray.exists()
    assert first.stat().st_mtime_ns == mtime  # kept, not written again
    plan = {tuple(u.id for u in ps): pauses for ps, pauses in plan_packs(read_manifest(manifest), 3, 3, 6)}
    for p in read_manifest(out):
        assert_pack_audio(p, plan[tuple(p.extra["parts"])], expected)


def test_a_changed_source_manifest_is_packed_again(tmp_path):
    """The done-marker holds the source's SHA-1: the same path with other lines is not 'already prepared'."""
    manifest = tmp_path / "src.jsonl"
    rows = [{"id": f"u{i}", "audio": str(tmp_path / f"u{i}.wav"), "duration": 1.0, "text": f"t{i}", "speaker": "s",
             "language": "de"} for i in range(4)]
    for r in rows:
        sf.write(r["audio"], np.zeros(16000, dtype=np.float32) + 0.01, 16000)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    out = tmp_path / "p.jsonl"
    first = prepare_pack(manifest, out, 1.0, 3.0, workers=1)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(OutputExistsError, match="other parameters"):
        prepare_pack(manifest, out, 1.0, 3.0, workers=1)
    again = prepare_pack(manifest, out, 1.0, 3.0, workers=1, overwrite=True)
    assert not again.skipped
    assert sum(len(p.extra["parts"]) for p in again.splits["packed"]) == 4
    assert sum(len(p.extra["parts"]) for p in first.splits["packed"]) == 3


# --------------------------------------------------------------------------- phone twins: their clean pack beside


def twin_rows(folder: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A manifest of phone twins (domain ``phone``, German) whose ``source_audio`` is a clean recording, and one line
    without a source, in ``folder``: ``t0`` shorter than its source (relative ``source_audio``), ``t1-8k`` an 8 kHz
    call longer than its source, ``t2`` of a span of a longer clean file (``source_offset`` / ``source_duration``),
    ``own`` no twin at all. Returns the manifest, each line's audio at 16 kHz and each line's clean audio."""
    (folder / "clean").mkdir(parents=True)
    (folder / "calls").mkdir()
    own_audio, clean = {}, {}

    def write(path: Path, data: np.ndarray, rate: int = SR) -> str:
        sf.write(str(path), data, rate, subtype="PCM_16")
        return str(path)

    c0, c1, long = noise(1.0, 200), noise(1.5, 201), noise(3.0, 202)
    write(folder / "clean" / "s0.wav", c0)
    write(folder / "clean" / "s1.wav", c1)
    write(folder / "clean" / "long.wav", long)
    t0, t2, own = noise(0.9, 300), noise(1.25, 302), noise(1.0, 303)
    t = np.arange(int(round(1.6 * SR))) / SR
    lines = [
        ("t0", write(folder / "calls" / "t0.wav", t0), 0.9, {"source_audio": "clean/s0.wav"}),
        ("t1-8k", write(folder / "calls" / "t1.wav", sine_8k(1.6), 8000), 1.6,
         {"source_audio": str(folder / "clean" / "s1.wav")}),
        ("t2", write(folder / "calls" / "t2.wav", t2), 1.25,
         {"source_audio": str(folder / "clean" / "long.wav"), "source_offset": 0.5, "source_duration": 1.25}),
        ("own", write(folder / "calls" / "own.wav", own), 1.0, {}),
    ]
    own_audio = {"t0": t0 / 32768, "t1-8k": (0.4 * np.sin(2 * np.pi * SINE_HZ * t)), "t2": t2 / 32768,
                 "own": own / 32768}
    clean = {"t0": c0 / 32768, "t1-8k": c1 / 32768, "t2": long[8000:8000 + 20000] / 32768, "own": own / 32768}
    rows = [{"id": uid, "audio": audio, "duration": seconds, "text": TEXTS[i], "speaker": "s", "language": "de",
             "domain": "phone", **extra} for i, (uid, audio, seconds, extra) in enumerate(lines)]
    manifest = folder / "twins.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return (manifest, {k: v.astype(np.float32) for k, v in own_audio.items()},
            {k: v.astype(np.float32) for k, v in clean.items()})


def test_a_pack_of_phone_twins_has_a_sample_aligned_pack_of_their_clean_sources(tmp_path, monkeypatch):
    from speech_tl.manifest import clean_source

    manifest, own_audio, clean = twin_rows(tmp_path / "src")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the relative source_audio resolves against the manifest's folder
    out = tmp_path / "packed" / "p.jsonl"
    prepare_pack(manifest, out, min_seconds=30, max_seconds=30, seed=2, workers=1)
    (pack,) = read_manifest(out)
    assert sorted(pack.extra["parts"]) == ["own", "t0", "t1-8k", "t2"]
    ((parts, pauses),) = plan_packs(read_manifest(manifest), 2, 30, 30)
    assert [u.id for u in parts] == pack.extra["parts"]
    assert_pack_audio(pack, pauses, own_audio)  # the pack itself: the calls, as without sources

    source = Path(pack.extra["source_audio"])
    assert source.is_absolute() and source.parent == audio_dir(out).resolve()
    assert source.name == pack.audio_path().name.removesuffix(".wav") + "-source.wav"
    assert {p.name for p in audio_dir(out).iterdir()} == {pack.audio_path().name, source.name}
    assert clean_source(pack) == {"audio": str(source), "offset": 0.0, "duration": None}
    info, wave = sf.info(str(source)), sf.read(str(source), dtype="float32")[0]
    packed = sf.read(str(pack.audio_path()), dtype="float32")[0]
    assert info.samplerate == SR and info.channels == 1
    assert wave.size == packed.size  # sample-aligned with the pack
    at = 0
    for k, uid in enumerate(pack.extra["parts"]):
        if k:
            gap = int(round(pauses[k - 1] * SR))
            assert not wave[at:at + gap].any(), f"pause before {uid} is not silence"
            at += gap
        n = own_audio[uid].size  # the call's length: its clean source cut or padded to it
        want = np.zeros(n, dtype=np.float32)
        want[:min(n, clean[uid].size)] = clean[uid][:n]
        assert np.abs(wave[at:at + n] - want).max() <= 1 / 32768, f"{uid}: clean source not at sample {at}"
        at += n
    assert at == wave.size
    # t0's source was cut (1.0 s -> 0.9 s), t1's padded with silence (1.5 s -> 1.6 s)
    assert own_audio["t0"].size < clean["t0"].size and own_audio["t1-8k"].size > clean["t1-8k"].size

    # a forced rerun keeps both files (and does not write them again)
    mtimes = {p.name: p.stat().st_mtime_ns for p in audio_dir(out).iterdir()}
    prepare_pack(manifest, out, min_seconds=30, max_seconds=30, seed=2, workers=1, force=True)
    assert {p.name: p.stat().st_mtime_ns for p in audio_dir(out).iterdir()} == mtimes


def test_lines_without_a_source_make_no_source_pack(tmp_path):
    manifest, _ = corpus(tmp_path / "src", mixed_rows()[:8])
    out = tmp_path / "p.jsonl"
    prepare_pack(manifest, out, min_seconds=3, max_seconds=6, seed=1, workers=1)
    packs = read_manifest(out)
    assert packs and not any("source_audio" in p.extra for p in packs)
    assert not [p for p in audio_dir(out).iterdir() if p.name.endswith("-source.wav")]
    assert {p.audio_path().name for p in packs} == set(wav_bytes(out))
