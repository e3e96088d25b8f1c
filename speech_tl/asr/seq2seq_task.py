"""The encoder-decoder ASR task (``model.head: decoder``): a whole pretrained Whisper adapted with teacher-forced
cross-entropy on its own tokenizer, through the one training loop (:class:`speech_tl.train.Trainer`).

Each training utterance becomes ``prompt + tokens`` (decoder input) and ``tokens + <|endoftext|>`` (labels): the
prompt has the utterance's own language token on a multilingual checkpoint (its manifest ``language``, else the
config's), none on an English-only one. Transcripts are kept as written (case, punctuation): Whisper writes them
so, and scoring normalises both sides. A transcript too long for the decoder's 448 positions is an error naming
``file:line``, never cut.

Dev evaluation decodes greedily (beam 1) to keep it cheap; ``evaluate asr`` decodes with ``decode.beam`` (default 5).
Before the first step the run scores its zero-shot starting point on the dev set too (``summary.json``:
``zero_shot_dev``), so every run says whether adapting beat not adapting.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..backbones.whisper_tokens import WhisperTokens
from ..config import ConfigError, to_dict
from ..data import UtteranceDataset, load_training_manifest, subset
from ..logs import info
from ..text import normalize
from ..train import Task
from .seq2seq import Seq2SeqModel, pad_targets, seq2seq_loss
from .seq2seq_freeze import Seq2SeqFreezePlan


class Seq2SeqTask(Task):
    name = "asr"
    primary_metric = "cer"  # the checkpoint kept is the one with the lowest dev CER, the yardstick of German ASR here
    secondary_metric = "wer"

    def __init__(self, cfg, log=info):
        from ..backbones.base import set_dropout
        from ..backbones.whisper_decoder import load_whisper_parts

        self.cfg = cfg
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.domain.target or cfg.data.spec_augment:
            raise ConfigError("model.head=decoder does not support domain.target or data.spec_augment yet; use "
                              "model.head=ctc for them")
        if cfg.model.channel_teacher_weight > 0 and any(f != 1.0 for f in cfg.data.speed_perturb or []):
            raise ConfigError("model.channel_teacher_weight compares the encoder's output frame by frame with the "
                              "teacher's on the unperturbed clean source; data.speed_perturb would change the timing "
                              "of the student's input only: leave one of them out")
        torch.manual_seed(cfg.train.seed)
        parts = load_whisper_parts(cfg.model.backbone, pretrained=cfg.model.pretrained)
        self.tokenizer_json, self.generation = parts.tokenizer_json, parts.generation
        tokens = WhisperTokens(parts.tokenizer_json, parts.decoder.embed_tokens.weight.shape[0], parts.generation)
        if cfg.model.backbone_dropout is not None:
            set_dropout(parts.encoder, cfg.model.backbone_dropout)
            set_dropout(parts.decoder, cfg.model.backbone_dropout)
        self.lora = cfg.freeze.mode == "lora"
        if self.lora:
            from .seq2seq_lora import add_lora

            cfg.freeze.validate(len(parts.encoder.layers), lora=True)
            n = add_lora(parts.encoder, parts.decoder, cfg.freeze)
            log(f"LoRA: adapters of rank {cfg.freeze.lora_rank} on {n} linear layers")
        self.model = Seq2SeqModel(parts.encoder, parts.decoder, tokens, cfg.language, cfg.model.pad_seconds)
        self.plan = Seq2SeqFreezePlan(parts.encoder, parts.decoder, cfg.freeze)
        train = load_training_manifest(cfg.data.train, cfg.data, need_text=True, out_dir=out, name="train")
        self.pairs = [tokens.target(u.text, u.language or cfg.language, f"{cfg.data.train}:{u.line}")
                      for u in train]
        langs = sorted({u.language or cfg.language for u in train})
        if tokens.multilingual:
            for lang in langs:
                tokens.language_token(lang)  # a language the checkpoint lacks is an error now, not mid-run
        self.train_set = UtteranceDataset(train)
        self.teacher = None
        if cfg.model.channel_teacher_weight > 0 or cfg.model.channel_teacher_kd_weight > 0:
            from .channel_teacher import ChannelTeacher

            kd = cfg.model.channel_teacher_kd_weight
            self.teacher = ChannelTeacher(parts.encoder, train, cfg.model.channel_teacher_weight, parts.decoder, kd,
                                          manifest=cfg.data.train)
            log(f"channel teacher: the pretrained {'model' if kd else 'encoder'} on the clean sources of "
                f"{self.teacher.paired} of {len(train)} training utterances (the others are their own source), "
                f"encoder-output weight {cfg.model.channel_teacher_weight:g}, decoder-output weight {kd:g}")
        # the teacher's targets for the batch in flight: (indices, (encoder output, speech frames, log-probs or None))
        self._targets: tuple[list[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = None
        self.dev_set = None
        if cfg.data.dev:
            dev = load_training_manifest(cfg.data.dev, cfg.data, need_text=True, out_dir=out, name="dev")
            self.dev_set = UtteranceDataset(subset(dev, cfg.data.dev_max_utterances, cfg.train.seed))
        self.input_varies = None
        log(f"decoder head on {cfg.model.backbone} ({'multilingual' if tokens.multilingual else 'English-only'}, "
            f"prompt {tokens.tokenizer.decode(self.model.prompt, skip_special_tokens=False)}); train "
            f"{len(train)} utterances ({sum(u.duration for u in train) / 3600:.2f} h, languages {', '.join(langs)}), "
            f"{sum(len(p[0]) for p in self.pairs)} decoder tokens"
            + (f"; dev {len(self.dev_set)}" if self.dev_set is not None else ""))

    def model_inputs(self, indices: list[int]) -> dict:
        inputs, labels = pad_targets([self.pairs[int(i)] for i in indices], self.model.tokens.eot)
        if self.teacher is None:
            return {"tokens": inputs}
        device = next(self.model.parameters()).device
        self._targets = ([int(i) for i in indices], self.teacher.all_targets(indices, device, inputs, labels != -100))
        return {"tokens": inputs, "return_encoded": True}

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        logits = output[0]
        _, labels = pad_targets([self.pairs[int(i)] for i in indices], self.model.tokens.eot)
        loss = seq2seq_loss(logits, labels)
        if self.teacher is not None:
            if self._targets is None or self._targets[0] != [int(i) for i in indices]:
                raise RuntimeError("channel teacher: the targets were made for another batch, or were used already "
                                   "(model_inputs makes them for one loss)")
            target, frames, log_probs = self._targets[1]
            if self.teacher.weight > 0:
                loss = loss + self.teacher.weight * self.teacher.loss(output[2], target, frames)
            if log_probs is not None:
                loss = loss + self.teacher.kd_weight * self.teacher.kd_loss(logits, log_probs, labels)
            self._targets = None  # not held through the backward pass and the dev evaluation
        return loss

    def evaluate(self, model, device) -> dict:
        if self.dev_set is None:
            return {}
        from ..metrics import error_counts
        from .seq2seq_infer import transcribe_seq2seq

        hyps = transcribe_seq2seq(model, self.dev_set, device, beam=1, batch_size=8)
        c = error_counts([normalize(u.text) for u in self.dev_set.utterances], [normalize(h) for h in hyps])
        return {"wer": c.words.rate(), "cer": c.chars.rate()}

    def checkpoint_files(self) -> dict:
        files = {"tokenizer.json": self.tokenizer_json, "whisper_generation.json": self.generation,
                 "config.yaml": yaml.safe_dump(to_dict(self.cfg), sort_keys=False, allow_unicode=True)}
        if self.lora:
            from .seq2seq_lora import adapter_state

            files["lora.pt"] = adapter_state(self.model)
        return files

    def model_state(self) -> dict:
        """model.pt: plain weights, LoRA adapters merged in (the checkpoint loads into the plain model)."""
        if self.lora:
            from .seq2seq_lora import merged_state

            return merged_state(self.model)
        return self.model.state_dict()

    def load_model_state(self, state: dict, folder: Path) -> None:
        """Resume: with LoRA, the adapters of ``folder/lora.pt`` on top of the pretrained weights (model.pt holds
        them merged, which the adapters cannot be recovered from)."""
        if not self.lora:
            self.model.load_state_dict(state)
            return
        from ..checkpoint import load_tensors

        adapters = load_tensors(folder / "lora.pt")
        missing = set(adapter_keys := [k for k in self.model.state_dict() if ".lora_" in k]) - set(adapters)
        if missing:
            raise ConfigError(f"{folder / 'lora.pt'}: lacks {len(missing)} of the run's {len(adapter_keys)} adapter "
                              "tensors (another freeze.lora_* setting?)")
        self.model.load_state_dict(adapters, strict=False)
