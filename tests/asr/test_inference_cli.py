"""Inference anywhere: `transcribe` of many files and of a manifest, batched; `evaluate asr --batch-size`;
a 70-second recording transcribed in full; `--device` on every ASR command that runs a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from speech_tl.cli import main
from speech_tl.metrics import error_counts
from tests.tiny_asr import save_tiny_whisper, spell, train_tone_asr


@pytest.fixture(scope="module")
def short_whisper(tmp_path_factory):
    """A tiny random Whisper whose position table holds 2 s (100 positions): longer audio goes in windows, as
    Whisper's own 30 s do, but in windows of the length this tiny model is trained on."""
    torch.manual_seed(0)
    return save_tiny_whisper(tmp_path_factory.mktemp("models") / "short-whisper", positions=100)


@pytest.fixture(scope="module")
def model(tone_corpus, short_whisper, tmp_path_factory):
    """:func:`short_whisper` trained on the tone-spelled words until it reads them (greedy)."""
    return train_tone_asr(tone_corpus, tmp_path_factory.mktemp("run") / "asr",
                          {"backbone": short_whisper, "dropout": 0.0}, {"mode": "full"},
                          {"lr": 0.01, "warmup_steps": 10, "max_steps": 150, "eval_every": 50, "log_every": 50},
                          {"lm_order": 2, "lm_unit": "char"}, max_duration=2)


def run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Exactly 70 s of spelled words (one pause between words, as in training): (path, the text)."""
    rng = np.random.default_rng(0)
    words = ["ab", "ba", "abc", "cab", "bca", "cba", "ac", "ca"]  # no doubled letters: plain CTC reads them
    text = "ac"
    while fits := [w for w in words if (len(text) + 1 + len(w)) * 0.12 <= 70]:  # 0.12 s a letter or pause
        text += " " + fits[int(rng.integers(len(fits)))]
    wave = spell(text + "   ", seed=3)[: 70 * 16000]  # a pause of less than 0.36 s fills the 70 s
    path = tmp_path_factory.mktemp("long") / "seventy.wav"
    sf.write(path, wave, 16000)
    return path, text


def test_a_70_second_recording_is_transcribed_in_full(model, recording, tmp_path):
    """Through the same code as Whisper's 30 s windows (tests/asr/test_infer.py checks their geometry on a
    30 s Whisper frame by frame), in 2 s windows: about 40 seams, every one a chance to lose or repeat letters."""
    path, truth = recording
    assert sf.info(path).duration == 70.0
    code, out, err = run("transcribe", model, path, "--device", "cpu", "--batch-size", "8")
    assert code == 0, err
    name, text = out.rstrip("\n").split("\t")
    assert name == str(path)
    # the pieces transcribed one by one, cut in the pauses between words every 1.5-2 s: what the model reads
    # without windows, its own errors included (a tiny model trained on 0.5 s clips errs now and then)
    wave, sr = sf.read(path, dtype="float32")
    seg = int(0.12 * sr)
    bounds = [0]
    for k, ch in enumerate(truth):
        if ch == " " and (k + 0.5) * seg - bounds[-1] > 1.5 * sr:
            bounds.append(int((k + 0.5) * seg))
    bounds.append(len(wave))
    pieces = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        sf.write(tmp_path / f"piece{k:02d}.wav", wave[a:b], sr)
        pieces.append(tmp_path / f"piece{k:02d}.wav")
    code, out, err = run("transcribe", model, *pieces)
    assert code == 0, err
    joined = " ".join(line.split("\t")[1] for line in out.strip().splitlines())

    cer, cer_pieces = (error_counts([truth], [t]).chars.rate() for t in (text, joined))
    print(f"\n70 s in 2 s windows: CER {cer:.3f} (pieces alone {cer_pieces:.3f})\n  truth {truth[:60]} ... "
          f"{truth[-60:]}\n  got   {text[:60]} ... {text[-60:]}")
    assert error_counts([joined], [text]).chars.rate() < 0.08  # the stitched transcript reads as the pieces do
    assert cer <= cer_pieces + 0.03  # and the seams add (next to) no errors
    assert cer < 0.5  # all of it: the first window alone would leave CER 0.97
    for part in (slice(0, 60), slice(-60, None)):  # its start and its end
        assert error_counts([truth[part]], [text[part]]).chars.rate() < 0.5, (truth[part], text[part])

    # `evaluate asr` reads it through the same code
    manifest = tmp_path / "long.jsonl"
    manifest.write_text(json.dumps({"id": "seventy", "audio": str(path), "duration": 70.0, "text": truth,
                                    "speaker": "s", "language": "en"}) + "\n")
    code, _, err = run("evaluate", "asr", model, manifest, "--out", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.hypotheses.jsonl").read_text())["hyp"] == text
    assert json.loads((tmp_path / "r.json").read_text())["cer"] == pytest.approx(cer)

    # shorter windows on request: 1.2 s
    code, out, err = run("transcribe", model, path, "--window-seconds", "1.2")
    assert code == 0, err
    assert error_counts([joined], [out.rstrip("\n").split("\t")[1]]).chars.rate() < 0.15


def test_evaluate_batch_size_16_gives_the_wer_and_cer_of_batch_size_1(model, tone_corpus, tmp_path):
    for beam in (0, 4):
        r, hyps = {}, {}
        for bs in (1, 16):
            out = tmp_path / f"b{beam}_bs{bs}.json"
            code, _, err = run("evaluate", "asr", model, tone_corpus / "train.jsonl", "--out", out, "--beam", beam,
                               "--batch-size", bs, "--device", "cpu")
            assert code == 0, err
            r[bs] = json.loads(out.read_text())
            hyps[bs] = [json.loads(x) for x in out.with_name(out.stem + ".hypotheses.jsonl").read_text().splitlines()]
            assert r[bs]["batch_size"] == bs and r[bs]["device"] == "cpu" and r[bs]["num_utterances"] == 24
        assert r[1]["wer"] == r[16]["wer"] and r[1]["cer"] == r[16]["cer"], beam
        assert r[1]["per_speaker"] == r[16]["per_speaker"]
        assert hyps[1] == hyps[16]
    assert r[1]["cer"] < 0.2  # the model reads the tones (else equal outputs would prove little)


def test_transcribe_many_files_and_a_manifest_in_batches(model, tone_corpus, tmp_path):
    files = sorted(tone_corpus.glob("dev-*.wav"))[:3]
    manifest = tone_corpus / "dev.jsonl"
    outputs = {}
    for bs in (1, 3, 64):
        code, out, err = run("transcribe", model, *files, "--manifest", manifest, "--batch-size", bs, "--beam", "0")
        assert code == 0, err
        outputs[bs] = out
    assert outputs[1] == outputs[3] == outputs[64]
    lines = outputs[1].strip().splitlines()
    ids = [json.loads(x)["id"] for x in manifest.read_text().splitlines()]
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files] + ids

    code, out, err = run("transcribe", model, *files, "--manifest", manifest, "--json", "--beam", "0")
    assert code == 0, err
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert [r.get("id") for r in rows] == [None] * 3 + ids
    assert [r["text"] for r in rows] == [line.split("\t")[1] for line in lines]
    assert all(r["duration"] > 0 and r["audio"] for r in rows) and list(rows[3]) == ["id", "audio", "duration", "text"]
    # the manifest's lines read as `evaluate asr` reads them
    ev = tmp_path / "ev.json"
    assert run("evaluate", "asr", model, manifest, "--out", ev, "--beam", "0")[0] == 0
    hyps = {h["id"]: h["hyp"] for h in map(json.loads, ev.with_name("ev.hypotheses.jsonl").read_text().splitlines())}
    assert [r["text"] for r in rows[3:]] == [hyps[i] for i in ids]


def test_transcribe_refuses_nothing_and_missing_files_before_loading_the_model(model, tone_corpus, tmp_path):
    code, _, err = run("transcribe", model)
    assert code == 1 and "nothing to transcribe" in err
    gone = tmp_path / "gone.wav"
    code, _, err = run("transcribe", model, sorted(tone_corpus.glob("dev-*.wav"))[0], gone)
    assert code == 1 and str(gone) in err and "not found" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(model, tone_corpus, tiny_whisper, tmp_path):
    wav = sorted(tone_corpus.glob("dev-*.wav"))[0]
    dev = tone_corpus / "dev.jsonl"
    for args in (["transcribe", model, wav], ["evaluate", "asr", model, dev, "--out", tmp_path / "r.json"],
                 ["tune-decoder", model, dev], ["probe", "asr", tiny_whisper, dev, "--out", tmp_path / "p.json"],
                 ["probe", "speaker", tiny_whisper, dev, "--out", tmp_path / "p.json"]):
        code, _, err = run(*args, "--device", "cuda")
        assert code == 1 and "no CUDA GPU is available" in err and "--device cpu" in err, (args, err)
    code, _, err = run("transcribe", model, wav, "--device", "gpu")
    assert code == 2 and "expected auto, cpu, cuda or cuda:N" in err
