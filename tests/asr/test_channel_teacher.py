"""Teacher-student channel adaptation (:mod:`speech_tl.asr.channel_teacher`) on a tiny random Whisper
encoder-decoder (:func:`tests.tiny_asr.save_tiny_whisper_seq2seq`): where a line's clean version is
(:func:`speech_tl.manifest.clean_source`, and what ``prepare channel`` records for it), the masked MSE, a teacher that
stays the pretrained encoder, the task's loss (cross-entropy + weight x MSE), a short training run on twins of the
tone corpus (noisy audio, clean source) that pulls the encoder's output on the noise toward the teacher's on the
clean audio, the same teacher at the decoder's output (the KL term, its targets, a training run pulling the
student's distributions toward the teacher's), and the configuration's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech_tl.asr.channel_teacher import ChannelTeacher
from speech_tl.asr.config import ModelConfig
from speech_tl.asr.seq2seq import Seq2SeqModel, pad_targets, seq2seq_loss
from speech_tl.asr.task import AsrConfig, train_asr
from speech_tl.backbones.whisper_decoder import load_whisper_parts
from speech_tl.backbones.whisper_tokens import WhisperTokens
from speech_tl.config import ConfigError, build
from speech_tl.data import pad_waves
from speech_tl.manifest import Utterance, clean_source, read_manifest, write_manifest
from tests.channel.speech import one_torch_thread  # noqa: F401  (autouse fixture: one torch thread)
from tests.tiny_asr import spell, tiny_whisper_seq2seq  # noqa: F401  (fixture)

SR = 16000
WORDS = ["ab", "ba", "abc", "cab", "cc", "bca"]
NOISE = 0.2  # std of the white noise of the "phone" twins (the tones' amplitude is 0.3): nothing clips


def quiet(*_a, **_k):
    pass


def tiny_model(source: str) -> Seq2SeqModel:
    parts = load_whisper_parts(source)
    tokens = WhisperTokens(parts.tokenizer_json, parts.decoder.embed_tokens.weight.shape[0], parts.generation)
    return Seq2SeqModel(parts.encoder, parts.decoder, tokens, "en", pad_seconds=None).eval()


@pytest.fixture(scope="module")
def listening_whisper(tiny_whisper_seq2seq, tmp_path_factory):  # noqa: F811
    """The tiny Whisper with its two input convolutions scaled up 10x: a random tiny encoder's output is almost all
    position embedding (its convolutions' weights have std 0.02), so noise in the input would hardly move it; here
    the input matters, and a noisy twin's encoding is far from its clean source's (MSE about 1)."""
    from transformers import AutoTokenizer, GenerationConfig, WhisperForConditionalGeneration

    folder = tiny_whisper_seq2seq.removeprefix("hf:")
    path = tmp_path_factory.mktemp("models") / "listening-whisper"
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    with torch.no_grad():
        model.model.encoder.conv1.weight.mul_(10)
        model.model.encoder.conv2.weight.mul_(10)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(folder).save_pretrained(path)
    GenerationConfig.from_pretrained(folder).save_pretrained(path)
    return f"hf:{path}"


@pytest.fixture(scope="module")
def twin_corpus(tmp_path_factory) -> Path:
    """``train.jsonl``: the spelled words in white noise (``phone/``, relative paths) whose ``source_audio`` is
    the clean recording (``clean/``, absolute), plus one clean line of its own (no ``source_audio``)."""
    root = tmp_path_factory.mktemp("twins")
    (root / "clean").mkdir()
    (root / "phone").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, w in enumerate(WORDS):
        clean = spell(w, seed=i)
        noisy = (clean + NOISE * rng.standard_normal(clean.size)).astype(np.float32)
        sf.write(root / "clean" / f"{i}.wav", clean, SR, subtype="FLOAT")
        sf.write(root / "phone" / f"{i}.wav", noisy, SR, subtype="FLOAT")
        lines.append({"id": f"u{i}-phone", "audio": f"phone/{i}.wav", "duration": clean.size / SR,
                      "text": w.upper() + ".", "speaker": "s", "language": "en",
                      "source_audio": str(root / "clean" / f"{i}.wav"), "source_id": f"u{i}"})
    sf.write(root / "clean" / "own.wav", spell("ca", seed=9), SR, subtype="FLOAT")
    lines.append({"id": "own", "audio": "clean/own.wav", "duration": spell("ca").size / SR, "text": "CA.",
                  "speaker": "s", "language": "en"})
    (root / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def twin_config(corpus: Path, source: str, out: Path, weight: float, **train) -> AsrConfig:
    return build(AsrConfig, {
        "out_dir": str(out), "language": "en",
        "data": {"train": str(corpus / "train.jsonl"), "dev": None, "batch_seconds": 4.0, "min_duration": 0.1,
                 "max_duration": 4.0},
        "model": {"backbone": source, "head": "decoder", "channel_teacher_weight": weight},
        "freeze": {"mode": "bottom", "bottom_layers": 0},
        "train": {"lr": 3e-2, "warmup_steps": 1, "max_steps": 4, "eval_every": 0, "checkpoint_every": 4,
                  "log_every": 1, "seed": 0, "num_workers": 0, "tensorboard": False, **train},
    })


def teacher_gap(model: Seq2SeqModel, teacher: ChannelTeacher, utterances: list[Utterance], indices: list[int]
                ) -> float:
    """MSE over the speech frames between ``model``'s encoding of the lines' own (noisy) audio and ``teacher``'s
    of their clean sources."""
    from speech_tl.audio import load_audio

    wave, lengths = pad_waves([load_audio(utterances[i].audio_path()) for i in indices])
    target, frames = teacher.targets(indices, torch.device("cpu"))
    with torch.no_grad():
        encoded, _ = model.eval().encode(wave, lengths)
    return float(teacher.loss(encoded, target, frames))


# --------------------------------------------------------------------------- where the clean version is

def test_clean_source_is_the_twins_source_or_the_lines_own_audio(tmp_path, monkeypatch):
    twin = Utterance(id="a-phone", audio="/calls/a.wav", duration=2.0, text="t", speaker="s", language="de",
                     extra={"source_audio": "/clean/a.wav"})
    assert clean_source(twin) == {"audio": "/clean/a.wav", "offset": 0.0, "duration": None}
    segment_twin = Utterance(id="b-phone", audio="/calls/b.wav", duration=1.5, text="t", speaker="s",
                             language="de", extra={"source_audio": "/clean/long.wav", "source_offset": 3.25,
                                                   "source_duration": 1.5})
    assert clean_source(segment_twin) == {"audio": "/clean/long.wav", "offset": 3.25, "duration": 1.5}
    plain = Utterance(id="c", audio="/clean/c.wav", duration=2.0, text="t", speaker="s", language="de")
    assert clean_source(plain) == {"audio": "/clean/c.wav", "offset": 0.0, "duration": None}
    segment = Utterance(id="d", audio="/clean/long.wav", duration=1.0, text="t", speaker="s", language="de",
                        offset=2.0)
    assert clean_source(segment) == {"audio": "/clean/long.wav", "offset": 2.0, "duration": 1.0}
    at_zero = Utterance(id="e", audio="/clean/long.wav", duration=1.0, text="t", speaker="s", language="de",
                        offset=0.0)
    assert clean_source(at_zero) == {"audio": "/clean/long.wav", "offset": 0.0, "duration": 1.0}  # a span, too

    # read from a manifest: relative paths, the line's own and its source, resolve against the manifest's folder
    folder = tmp_path / "corpus"
    (folder / "clean").mkdir(parents=True)
    (folder / "phone").mkdir()
    sf.write(folder / "clean" / "x.wav", spell("ab"), SR)
    sf.write(folder / "phone" / "x.wav", spell("ab", seed=1), SR)
    (folder / "m.jsonl").write_text(json.dumps(
        {"id": "x-phone", "audio": "phone/x.wav", "duration": 0.24, "text": "AB.", "speaker": "s", "language": "en",
         "source_audio": "clean/x.wav"}) + "\n" + json.dumps(
        {"id": "x", "audio": "clean/x.wav", "duration": 0.24, "text": "AB.", "speaker": "s", "language": "en"}) + "\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    twin, own = read_manifest(folder / "m.jsonl")
    for u in (twin, own):
        src = clean_source(u)
        assert Path(src["audio"]).resolve() == (folder / "clean" / "x.wav").resolve(), src
        assert Path(src["audio"]).is_file(), src


def test_a_phone_twin_records_its_clean_source_and_the_span_of_a_segment(tmp_path):
    from speech_tl.audio import load_audio
    from speech_tl.channel.codecs import codec_available
    from speech_tl.prepare.channel_twin import prepare_channel_twin

    if codec_available("mulaw") is not None:
        pytest.skip(str(codec_available("mulaw")))
    long = np.concatenate([spell("abcab", seed=3), spell("cbacb", seed=4)])  # 1.2 s
    sf.write(tmp_path / "long.wav", long, SR)
    sf.write(tmp_path / "whole.wav", spell("abc", seed=5), SR)
    utts = [Utterance(id="whole", audio=str(tmp_path / "whole.wav"), duration=0.36, text="ABC.", speaker="s",
                      language="de"),
            Utterance(id="head", audio=str(tmp_path / "long.wav"), duration=0.48, text="ABCA.", speaker="s",
                      language="de", offset=0.0),
            Utterance(id="tail", audio=str(tmp_path / "long.wav"), duration=0.36, text="ACB.", speaker="s",
                      language="de", offset=0.84)]
    write_manifest(tmp_path / "m.jsonl", utts, relative=False)
    res = prepare_channel_twin(tmp_path / "m.jsonl", tmp_path / "twin.jsonl", codec="mulaw", workers=1)
    assert not res.rejected
    twins = {u.extra["source_id"]: u for u in read_manifest(tmp_path / "twin.jsonl")}
    assert set(twins) == {"whole", "head", "tail"}
    assert twins["whole"].extra["source_audio"] == str(tmp_path / "whole.wav")
    assert "source_offset" not in twins["whole"].extra and "source_duration" not in twins["whole"].extra
    for uid, offset, seconds in (("head", 0.0, 0.48), ("tail", 0.84, 0.36)):
        t = twins[uid]
        assert t.extra["source_audio"] == str(tmp_path / "long.wav")
        assert (t.extra.get("source_offset"), t.extra.get("source_duration")) == (offset, seconds), uid
        # the call is of the span (not of the whole file), and the span is what the teacher hears
        assert t.duration == pytest.approx(seconds, abs=0.01), uid
        src = clean_source(t)
        heard = load_audio(src["audio"], offset=src["offset"], duration=src["duration"]).numpy()
        start = int(round(offset * SR))
        np.testing.assert_allclose(heard, long[start:start + int(round(seconds * SR))], atol=1 / 32768)


# --------------------------------------------------------------------------- the loss

def test_the_loss_is_the_mse_over_the_speech_frames_only():
    teacher = ChannelTeacher(torch.nn.Linear(2, 2), [], 1.0)
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 10, 4, generator=g)
    frames = torch.tensor([3, 7])
    assert float(teacher.loss(target.clone(), target, frames)) == 0.0
    student = torch.randn(2, 10, 4, generator=g)
    loss = teacher.loss(student, target, frames)
    by_hand = (((student[0, :3] - target[0, :3]) ** 2).sum() + ((student[1, :7] - target[1, :7]) ** 2).sum()) \
        / ((3 + 7) * 4)
    torch.testing.assert_close(loss, by_hand)
    # frames past each line's speech do not count: not in the student, not in the target
    changed, other = student.clone(), target.clone()
    changed[0, 3:] += 100.0
    changed[1, 7:] -= 50.0
    other[0, 3:] = 0.0
    torch.testing.assert_close(teacher.loss(changed, other, frames), loss)
    # a frame within the speech does
    changed[1, 6] += 1.0
    assert float(teacher.loss(changed, target, frames)) > float(loss) + 1e-3
    # a student padded to 30 s (more frames than the target) is compared over the target's frames
    padded = torch.cat([student, torch.randn(2, 1490, 4, generator=g)], 1)
    torch.testing.assert_close(teacher.loss(padded, target, frames), loss)
    # speech frames beyond both tensors are clamped: every frame counts, no division by a count too large
    torch.testing.assert_close(teacher.loss(student, target, torch.tensor([50, 50])),
                               ((student - target) ** 2).mean())
    # and it has a gradient for the student
    student.requires_grad_(True)
    teacher.loss(student, target, frames).backward()
    assert student.grad[0, :3].abs().sum() > 0 and student.grad[0, 3:].abs().sum() == 0


# --------------------------------------------------------------------------- the teacher

def test_the_teacher_is_a_frozen_copy_that_training_the_student_does_not_move(twin_corpus, listening_whisper):
    utts = read_manifest(twin_corpus / "train.jsonl")
    model = tiny_model(listening_whisper)
    teacher = ChannelTeacher(model.backbone, utts, 1.0)
    assert teacher.paired == len(WORDS)  # the clean line is its own source
    before = {k: v.clone() for k, v in teacher.encoder.state_dict().items()}
    student_params = {p.data_ptr() for p in model.parameters()}
    assert not student_params & {p.data_ptr() for p in teacher.encoder.parameters()}  # no shared storage
    assert all(not p.requires_grad for p in teacher.encoder.parameters())
    assert not teacher.encoder.training
    indices = [0, 2, 4]
    start = teacher_gap(model, teacher, utts, indices)
    assert start > 0.3, start  # the noise moves this encoder's output

    from speech_tl.audio import load_audio

    wave, lengths = pad_waves([load_audio(utts[i].audio_path()) for i in indices])
    optimizer = torch.optim.Adam(model.backbone.layers.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        target, frames = teacher.targets(indices, torch.device("cpu"))
        encoded, _ = model.encode(wave, lengths)
        loss = teacher.loss(encoded, target, frames)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not teacher.encoder.training  # model.train() does not reach it: it is no submodule of the model
    assert all(torch.equal(before[k], v) for k, v in teacher.encoder.state_dict().items())
    assert not torch.equal(model.backbone.layers[1].fc1.weight, before["layers.1.fc1.weight"])  # the student moved
    assert teacher_gap(model, teacher, utts, indices) < start

    # its targets: the pretrained encoder's output on the clean audio (a twin's source, a clean line's own audio)
    pretrained = tiny_model(listening_whisper)
    own = len(WORDS)
    for i in (1, own):
        target, frames = teacher.targets([i], torch.device("cpu"))
        clean = load_audio(twin_corpus / "clean" / (f"{i}.wav" if i < own else "own.wav"))
        with torch.no_grad():
            expected, enc_lengths = pretrained.encode(clean[None], torch.tensor([clean.numel()]))
        assert int(frames[0]) == int(enc_lengths[0])
        torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)


def test_speech_frames_are_the_encoders_frames_of_speech_whatever_the_batch(tmp_path, listening_whisper):
    """Lengths that are no multiple of 320 samples (one encoder frame): the speech frames of a line are the frames
    the encoder gives it alone, and its targets over them do not depend on the longer lines padded beside it."""
    from speech_tl.audio import load_audio

    lengths = [16100, 24000, 8319, 12960]
    utts = []
    for k, n in enumerate(lengths):
        x = np.concatenate([spell("abcabc", seed=k)] * 3)[:n]
        sf.write(tmp_path / f"{k}.wav", x, SR, subtype="FLOAT")
        utts.append(Utterance(id=str(k), audio=str(tmp_path / f"{k}.wav"), duration=n / SR, text="A.", speaker="s",
                              language="en"))
    model = tiny_model(listening_whisper)
    teacher = ChannelTeacher(model.backbone, utts, 1.0)
    batch, batch_frames = teacher.targets(list(range(len(utts))), torch.device("cpu"))
    for k, n in enumerate(lengths):
        alone, frames = teacher.targets([k], torch.device("cpu"))
        with torch.no_grad():
            _, enc_lengths = model.encode(load_audio(utts[k].audio_path())[None], torch.tensor([n]))
        assert int(frames[0]) == int(batch_frames[k]) == int(enc_lengths[0]) == alone.shape[1], (n, frames)
        m = int(frames[0])
        torch.testing.assert_close(batch[k, :m], alone[0], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- the task's loss

def test_the_task_adds_weight_times_the_teacher_mse_to_the_cross_entropy(twin_corpus, listening_whisper, tmp_path):
    from speech_tl.asr.seq2seq_task import Seq2SeqTask

    logs = []
    task = Seq2SeqTask(twin_config(twin_corpus, listening_whisper, tmp_path / "w", 2.5), logs.append)
    assert task.primary_metric == "cer" and task.secondary_metric == "wer"
    assert task.teacher is not None and task.teacher.weight == 2.5
    assert any(f"channel teacher: the pretrained encoder on the clean sources of {len(WORDS)} of {len(WORDS) + 1} "
               "training utterances" in m for m in logs), logs
    indices = [0, 3, len(WORDS)]
    inputs = task.model_inputs(indices)
    assert inputs["return_encoded"] is True
    wave, lengths = pad_waves([task.train_set[i][0] for i in indices])
    task.model.eval()
    with torch.no_grad():
        output = task.model(wave=wave, lengths=lengths, **inputs)
        encoded, _ = task.model.encode(wave, lengths)
    assert len(output) == 3
    torch.testing.assert_close(output[2], encoded)
    loss = task.loss(output, torch.tensor(indices))
    _, labels = pad_targets([task.pairs[i] for i in indices], task.model.tokens.eot)
    cross_entropy = seq2seq_loss(output[0], labels)
    mse = task.teacher.loss(output[2], *task.teacher.targets(indices, torch.device("cpu")))
    assert float(mse) > 0.1  # the twins' noise: a term that matters
    torch.testing.assert_close(loss, cross_entropy + 2.5 * mse)
    with pytest.raises(RuntimeError, match="another batch"):
        task.loss(output, torch.tensor([0, 3, 1]))

    plain = Seq2SeqTask(twin_config(twin_corpus, listening_whisper, tmp_path / "off", 0.0), quiet)
    assert plain.teacher is None
    inputs = plain.model_inputs(indices)
    assert set(inputs) == {"tokens"}
    with torch.no_grad():
        output = plain.model(wave=wave, lengths=lengths, **inputs)
    assert len(output) == 2
    torch.testing.assert_close(plain.loss(output, torch.tensor(indices)), cross_entropy)


def test_the_teacher_pads_to_30_s_as_the_student_does(twin_corpus, listening_whisper, tmp_path):
    """With ``model.pad_seconds: 30`` the student encodes 30 s windows (1,500 frames, no attention mask); the
    teacher must too, else a clean line (its own source) would not give a zero term."""
    from speech_tl.asr.seq2seq_task import Seq2SeqTask

    cfg = twin_config(twin_corpus, listening_whisper, tmp_path / "pad", 1.0)
    cfg.model.pad_seconds = 30.0
    task = Seq2SeqTask(cfg, quiet)
    own = len(WORDS)
    wave, lengths = pad_waves([task.train_set[own][0]])
    target, frames = task.teacher.targets([own], torch.device("cpu"))
    with torch.no_grad():
        encoded, _ = task.model.eval().encode(wave, lengths)
    assert encoded.shape[1] == target.shape[1] == 1500 and int(frames[0]) < 100
    assert float(task.teacher.loss(encoded, target, frames)) < 1e-10
    # and the 30 s window changes what the encoder makes of the speech (the test would not tell otherwise)
    unpadded = ChannelTeacher(tiny_model(listening_whisper).backbone, task.train_set.utterances, 1.0)
    alone, _ = unpadded.targets([own], torch.device("cpu"))
    assert float(task.teacher.loss(alone, target, frames)) > 1e-4


# --------------------------------------------------------------------------- training

def test_training_with_the_teacher_pulls_the_noisy_encoding_toward_the_clean_one(twin_corpus, listening_whisper,
                                                                                  tmp_path):
    from speech_tl.asr.seq2seq_task import Seq2SeqTask
    from speech_tl.train import Trainer

    utts = read_manifest(twin_corpus / "train.jsonl")
    twins = list(range(len(WORDS)))
    pretrained = tiny_model(listening_whisper)
    judge = ChannelTeacher(pretrained.backbone, utts, 1.0)  # measures the gap for both runs
    start = teacher_gap(pretrained, judge, utts, twins)
    assert start > 0.5, start
    gaps, tasks = {}, {}
    for weight in (0.0, 1.0):
        cfg = twin_config(twin_corpus, listening_whisper, tmp_path / f"w{weight:g}", weight)
        task = Seq2SeqTask(cfg, quiet)
        summary = Trainer(task, cfg.train, cfg.out_dir, cfg.data, quiet).run()
        assert summary["steps"] == 4
        seen = [r["loss"] for r in map(json.loads, (tmp_path / f"w{weight:g}" / "train_log.jsonl").read_text()
                                       .splitlines()) if "loss" in r]
        assert len(seen) == 4 and np.isfinite(seen).all()
        rejected = tmp_path / f"w{weight:g}" / "rejected_train_audio.jsonl"
        assert not rejected.is_file() or not rejected.read_text().strip()  # every twin trained
        gaps[weight], tasks[weight] = teacher_gap(task.model, judge, utts, twins), task
    # the teacher's term closes most of the gap the noise opened; cross-entropy alone does not close it
    assert gaps[1.0] < 0.7 * start, (start, gaps)
    assert gaps[1.0] < 0.5 * gaps[0.0], (start, gaps)
    # the run's own teacher is still the pretrained encoder
    teacher = tasks[1.0].teacher.encoder.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in pretrained.backbone.state_dict().items())


# --------------------------------------------------------------------------- configuration

def test_a_negative_weight_or_a_ctc_head_is_a_config_error(tmp_path, tone_corpus, tiny_whisper):
    with pytest.raises(ConfigError, match="channel_teacher_weight must be >= 0"):
        ModelConfig(backbone="hf:x", head="decoder", channel_teacher_weight=-0.5).check()
    with pytest.raises(ConfigError, match="needs model.head=decoder"):
        ModelConfig(backbone="hf:x", head="ctc", channel_teacher_weight=1.0).check()
    ModelConfig(backbone="hf:x", head="ctc", channel_teacher_weight=0.0).check()
    ModelConfig(backbone="hf:x", head="decoder", channel_teacher_weight=0.5).check()
    # from a config file's values (the CTC head is the default), and before anything is written
    from tests.tiny_asr import asr_config

    for model, match in (({"head": "decoder", "channel_teacher_weight": -1}, ">= 0"),
                         ({"channel_teacher_weight": 1}, "needs model.head=decoder")):
        with pytest.raises(ConfigError, match=match):
            build(AsrConfig, {"out_dir": str(tmp_path / "x"), "data": {"train": str(tone_corpus / "train.jsonl")},
                              "model": {"backbone": tiny_whisper, **model}})
    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "ctc")
    cfg.model.channel_teacher_weight = 1.0
    with pytest.raises(ConfigError, match="needs model.head=decoder"):
        train_asr(cfg, log=quiet)
    assert not (tmp_path / "ctc" / "checkpoint").exists()


def test_speed_perturbation_with_the_teacher_is_refused(twin_corpus, listening_whisper, tmp_path):
    """The teacher's frames are compared one by one with the student's: a student whose input was sped up would be
    pulled toward frames of other speech."""
    from speech_tl.asr.seq2seq_task import Seq2SeqTask

    cfg = twin_config(twin_corpus, listening_whisper, tmp_path / "sp", 1.0)
    cfg.data.speed_perturb = [0.9, 1.0, 1.1]
    with pytest.raises(ConfigError, match="speed_perturb"):
        Seq2SeqTask(cfg, quiet)
    cfg.data.speed_perturb = [1.0]  # no perturbation at all: fine
    assert Seq2SeqTask(cfg, quiet).teacher is not None
    cfg = twin_config(twin_corpus, listening_whisper, tmp_path / "sp0", 0.0)
    cfg.data.speed_perturb = [0.9, 1.1]  # without the teacher: fine
    assert Seq2SeqTask(cfg, quiet).teacher is None


# --------------------------------------------------------------------------- the decoder-output term

def kd_config(corpus: Path, source: str, out: Path, kd: float, mse: float = 0.0, **train) -> AsrConfig:
    cfg = twin_config(corpus, source, out, mse, **train)
    cfg.model.channel_teacher_kd_weight = kd
    return cfg


def test_the_kd_loss_is_the_kl_from_the_teacher_over_the_labelled_tokens_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    teacher = torch.randn(2, 5, 7, generator=g).log_softmax(-1)
    labels = torch.tensor([[-100, 3, 1, 2, -100], [-100, -100, 4, -100, -100]])
    mask = labels != -100
    loss = ChannelTeacher.kd_loss(logits, teacher[mask], labels)
    student = logits.log_softmax(-1)
    by_hand = sum(float((teacher[b, t].exp() * (teacher[b, t] - student[b, t])).sum())
                  for b, t in ((0, 1), (0, 2), (0, 3), (1, 2))) / 4
    assert float(loss) == pytest.approx(by_hand, rel=1e-5)
    torch.testing.assert_close(loss, torch.nn.functional.kl_div(student[labels != -100], teacher[labels != -100],
                                                                log_target=True, reduction="batchmean"))
    assert float(ChannelTeacher.kd_loss(teacher.clone(), teacher[mask], labels)) == pytest.approx(0.0, abs=1e-6)
    changed = logits.clone()
    changed[0, 0] += 5.0  # an unlabelled position (the prompt) does not count
    changed[1, 4] -= 5.0
    torch.testing.assert_close(ChannelTeacher.kd_loss(changed, teacher[mask], labels), loss)
    logits.requires_grad_(True)
    ChannelTeacher.kd_loss(logits, teacher[mask], labels).backward()
    assert logits.grad[0, 1].abs().sum() > 0 and logits.grad[0, 0].abs().sum() == 0


def test_the_kd_targets_are_the_pretrained_models_distributions_on_the_clean_source(twin_corpus, listening_whisper,
                                                                                    tmp_path):
    from speech_tl.asr.seq2seq_task import Seq2SeqTask
    from speech_tl.audio import load_audio

    logs = []
    task = Seq2SeqTask(kd_config(twin_corpus, listening_whisper, tmp_path / "kd", 0.5), logs.append)
    assert task.teacher is not None and task.teacher.weight == 0.0 and task.teacher.kd_weight == 0.5
    assert any("the pretrained model on the clean sources" in m and "decoder-output weight 0.5" in m for m in logs)
    indices = [1, len(WORDS)]  # a twin and the clean line
    inputs = task.model_inputs(indices)
    _, (_, _, log_probs) = task._targets
    _, labels = pad_targets([task.pairs[i] for i in indices], task.model.tokens.eot)
    labelled = labels != -100
    assert log_probs.shape == (int(labelled.sum()), task.model.decoder.embed_tokens.weight.shape[0])
    assert not labelled[:, 0].any()  # the prompt predicts nothing: no target kept for it
    pretrained = tiny_model(listening_whisper)
    expected = []
    for row, i in enumerate(indices):
        clean = load_audio(twin_corpus / "clean" / (f"{i}.wav" if i < len(WORDS) else "own.wav"))
        with torch.no_grad():
            full = pretrained(wave=clean[None], lengths=torch.tensor([clean.numel()]),
                              tokens=inputs["tokens"][row:row + 1])[0].log_softmax(-1)
        expected.append(full[0][labelled[row]])
    torch.testing.assert_close(log_probs, torch.cat(expected), atol=1e-4, rtol=0)
    # the task's loss: cross-entropy + weight x KL, no encoder term at weight 0
    wave, lengths = pad_waves([task.train_set[i][0] for i in indices])
    task.model.eval()
    with torch.no_grad():
        output = task.model(wave=wave, lengths=lengths, **inputs)
    kl = ChannelTeacher.kd_loss(output[0], log_probs, labels)
    # before any step the student is the teacher: on the clean line (its own source) nothing to pull, on the
    # twin the noise changes the distributions
    first = int(labelled[0].sum())
    twin = float(ChannelTeacher.kd_loss(output[0][:1], log_probs[:first], labels[:1]))
    own = float(ChannelTeacher.kd_loss(output[0][1:], log_probs[first:], labels[1:]))
    with pytest.raises(ValueError, match="labelled positions"):
        ChannelTeacher.kd_loss(output[0][:1], log_probs, labels[:1])
    assert own < 1e-6 and twin > 1e-4 and twin > 1000 * own, (twin, own)
    torch.testing.assert_close(task.loss(output, torch.tensor(indices)), seq2seq_loss(output[0], labels) + 0.5 * kl)
    with pytest.raises(RuntimeError, match="used already"):  # one loss per model_inputs: nothing held after it
        task.loss(output, torch.tensor(indices))
    # with both terms
    both = Seq2SeqTask(kd_config(twin_corpus, listening_whisper, tmp_path / "both", 0.5, mse=2.0), quiet)
    inputs = both.model_inputs(indices)
    target, frames, log_probs = both._targets[1]
    both.model.eval()
    with torch.no_grad():
        output = both.model(wave=wave, lengths=lengths, **inputs)
    expected = (seq2seq_loss(output[0], labels) + 2.0 * both.teacher.loss(output[2], target, frames)
                + 0.5 * ChannelTeacher.kd_loss(output[0], log_probs, labels))
    torch.testing.assert_close(both.loss(output, torch.tensor(indices)), expected)


def test_training_with_the_kd_term_pulls_the_students_distributions_toward_the_teachers(twin_corpus,
                                                                                        listening_whisper, tmp_path):
    """A random tiny teacher's distributions are far from the one-hot transcripts: cross-entropy alone moves the
    student elsewhere, the KD term toward the teacher's distributions on the clean audio (weighted up here: this
    teacher's KL is a thousandth of its cross-entropy)."""
    from speech_tl.asr.seq2seq_task import Seq2SeqTask
    from speech_tl.train import Trainer

    twins = list(range(len(WORDS)))
    kls = {}
    for kd in (0.0, 100.0):
        cfg = kd_config(twin_corpus, listening_whisper, tmp_path / f"kd{kd:g}", kd, lr=1e-2, max_steps=6)
        task = Seq2SeqTask(cfg, quiet)
        Trainer(task, cfg.train, cfg.out_dir, cfg.data, quiet).run()
        judge = Seq2SeqTask(kd_config(twin_corpus, listening_whisper, tmp_path / f"judge{kd:g}", 1.0), quiet)
        inputs = judge.model_inputs(twins)
        wave, lengths = pad_waves([judge.train_set[i][0] for i in twins])
        _, labels = pad_targets([judge.pairs[i] for i in twins], judge.model.tokens.eot)
        with torch.no_grad():
            logits = task.model.eval()(wave=wave, lengths=lengths, tokens=inputs["tokens"])[0]
        kls[kd] = float(ChannelTeacher.kd_loss(logits, judge._targets[1][2], labels))
        if kd:  # the run's teacher decoder is its own frozen copy: unshared, unmoved by the student's training
            teacher = task.teacher.decoder
            assert not {p.data_ptr() for p in teacher.parameters()} & {p.data_ptr() for p in task.model.parameters()}
            assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in judge.teacher.decoder.state_dict().items())
            assert not torch.equal(task.model.decoder.layers[0].fc1.weight, teacher.layers[0].fc1.weight)
    assert kls[100.0] < 0.7 * kls[0.0], kls


def test_a_negative_kd_weight_or_kd_on_a_ctc_head_is_a_config_error():
    with pytest.raises(ConfigError, match="channel_teacher_kd_weight must be >= 0"):
        ModelConfig(backbone="hf:x", head="decoder", channel_teacher_kd_weight=-1).check()
    with pytest.raises(ConfigError, match="channel_teacher_kd_weight needs model.head=decoder"):
        ModelConfig(backbone="hf:x", head="ctc", channel_teacher_kd_weight=0.5).check()
    ModelConfig(backbone="hf:x", head="decoder", channel_teacher_kd_weight=0.5).check()
    with pytest.raises(ValueError, match="needs the pretrained decoder"):
        ChannelTeacher(torch.nn.Linear(2, 2), [], 0.0, None, kd_weight=1.0)


def test_a_missing_clean_source_is_an_error_naming_the_manifest_line_and_both_weights(twin_corpus,
                                                                                      listening_whisper, tmp_path):
    from speech_tl.asr.seq2seq_task import Seq2SeqTask
    from speech_tl.errors import InputError

    lines = [json.loads(x) for x in (twin_corpus / "train.jsonl").read_text().splitlines()]
    for x in lines:  # absolute paths, so that the copy reads the same audio
        x["audio"] = str(twin_corpus / x["audio"])
    lines[2]["source_audio"] = str(tmp_path / "gone.wav")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = kd_config(twin_corpus, listening_whisper, tmp_path / "run", 1.0)
    cfg.data.train = str(tmp_path / "train.jsonl")
    with pytest.raises(InputError, match=r"train.jsonl:3: the clean source of 'u2-phone' \(.*gone.wav\) is not "
                                         r"there .*channel_teacher_kd_weight.*set both weights to 0"):
        Seq2SeqTask(cfg, quiet)
