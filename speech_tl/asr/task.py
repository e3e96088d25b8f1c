"""German (or any) ASR by transfer: config, the task the training loop runs, and building a model.

``speech-tl train asr CONFIG.yaml key=value ...`` -> :func:`train_asr`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..backbones import DEFAULT_ASR_BACKBONE, load_backbone
from ..backbones.base import set_dropout
from ..config import dump_config, to_dict
from ..data import DataConfig, UtteranceDataset, collate, duration_batches, load_training_manifest, subset
from ..domain import DomainConfig, DomainConfusion
from ..freeze import FreezeConfig, FreezePlan
from ..text import Vocabulary, normalize
from ..train import TrainConfig, Trainer
from .model import CtcModel, ctc_loss


@dataclass
class ModelConfig:
    backbone: str = DEFAULT_ASR_BACKBONE
    pretrained: bool = True  # false: the same architecture from random initialisation
    dropout: float = 0.1  # before the head
    backbone_dropout: float | None = None  # dropout inside the backbone's layers (None: as pretrained)


@dataclass
class DecodeConfig:
    beam: int = 0  # 0: greedy; N > 0: beam search of width N (flashlight-text)
    lm_order: int = 0  # n-gram LM trained on the training text (0: none)
    lm_unit: str = "word"  # word | char
    lm_weight: float = 0.5
    word_score: float = 0.0

    def check(self) -> None:
        if self.lm_unit not in ("word", "char"):
            raise ValueError(f"decode.lm_unit must be word or char, got {self.lm_unit!r}")
        if self.beam < 0 or self.lm_order < 0:
            raise ValueError("decode.beam and decode.lm_order must be >= 0")


@dataclass
class AsrConfig:
    out_dir: str = "exp/asr"
    language: str = "de"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)  # domain confusion on the encoder output (off)


def transcribe_batches(model: CtcModel, dataset: UtteranceDataset, vocab: Vocabulary, device: torch.device,
                       batch_seconds: float = 120.0, decoder=None) -> list[str]:
    """Hypotheses for every utterance of ``dataset``, in order (greedy unless a beam ``decoder`` is given)."""
    from .decode import greedy_decode

    hyps: list[str] = [""] * len(dataset)
    for batch_idx in duration_batches(dataset.durations, batch_seconds, 64, 0, 0, shuffle=False):
        batch = collate([dataset[i] for i in batch_idx])
        log_probs, lengths = model(wave=batch["wave"].to(device), lengths=batch["lengths"].to(device))
        log_probs, lengths = log_probs.float().cpu(), lengths.cpu()
        texts = decoder.decode(log_probs, lengths) if decoder is not None else greedy_decode(log_probs, lengths,
                                                                                           vocab)
        for i, text in zip(batch_idx, texts, strict=True):
            hyps[i] = text
    return hyps


class AsrTask:
    """The CTC task for :class:`speech_tl.train.Trainer`."""

    name = "asr"
    primary_metric = "wer"
    secondary_metric = "cer"

    def __init__(self, cfg: AsrConfig, log=print):
        self.cfg = cfg
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        train_utts = load_training_manifest(cfg.data.train, cfg.data, need_text=True, out_dir=out, name="train")
        self.vocab = Vocabulary.build((u.text for u in train_utts), language=cfg.language)
        self.targets, unknown = [], Counter()
        for u in train_utts:
            ids, bad = self.vocab.encode(u.text)
            self.targets.append(ids)
            unknown.update(bad)
        if unknown:
            log(f"characters outside the vocabulary, left out of targets: {dict(unknown.most_common(20))}")
        empty = [u for u, t in zip(train_utts, self.targets, strict=True) if not t]
        if empty:
            raise ValueError(f"{cfg.data.train}:{empty[0].line}: transcript {empty[0].text!r} has no character of "
                             f"the vocabulary after normalisation ({len(empty)} such utterances)")
        self.train_set = UtteranceDataset(train_utts)
        self.dev_set = None
        if cfg.data.dev:
            dev = load_training_manifest(cfg.data.dev, cfg.data, need_text=True, out_dir=out, name="dev")
            self.dev_set = UtteranceDataset(subset(dev, cfg.data.dev_max_utterances, cfg.train.seed))
        torch.manual_seed(cfg.train.seed)  # the new head (and a random-init backbone) start the same every run
        backbone = load_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained)
        if cfg.model.backbone_dropout is not None:
            set_dropout(backbone, cfg.model.backbone_dropout)
        self.model = CtcModel(backbone, len(self.vocab), cfg.model.dropout)
        self.plan = FreezePlan(backbone, cfg.freeze)
        self.domain = DomainConfusion.attach(cfg.domain, self.model, backbone.output_dim, train_utts, cfg.data.train,
                                             log)
        if cfg.data.spec_augment:
            if not hasattr(backbone, "input_augment"):
                raise ValueError(f"data.spec_augment is not supported for backbone {backbone.source}")
            backbone.spec_augment_seed = cfg.train.seed
            backbone.input_augment = "spec"
        self.lm_path = None
        if cfg.decode.lm_order > 0:
            from .lm import train_ngram_lm

            # the LM models the target language: with source-language data in the mix, only the target's text
            texts = [u.text for u in train_utts if u.language == cfg.language] or [u.text for u in train_utts]
            self.lm_path = train_ngram_lm(texts, cfg.decode.lm_order, cfg.decode.lm_unit, out / "lm.arpa")
            log(f"{cfg.decode.lm_unit} {cfg.decode.lm_order}-gram LM on {len(texts)} training transcripts "
                f"-> {self.lm_path}")
        log(f"vocabulary: {len(self.vocab)} symbols; train {len(self.train_set)} utterances "
            f"({sum(self.train_set.durations) / 3600:.2f} h)"
            + (f", dev {len(self.dev_set)}" if self.dev_set is not None else ""))

    def set_progress(self, progress: float) -> None:
        if self.domain is not None:
            self.domain.progress = progress

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        """CTC per target character, plus the domain classifier's loss when domain confusion is on."""
        log_probs, lengths = output
        loss = ctc_loss(log_probs, lengths, [self.targets[int(i)] for i in indices])
        if self.domain is not None:
            loss = loss + self.domain.loss(self.model.pooled, indices)
        return loss

    def evaluate(self, model, device) -> dict:
        if self.dev_set is None:
            return {}
        from ..metrics import error_counts

        hyps = transcribe_batches(model, self.dev_set, self.vocab, device, self.cfg.data.batch_seconds)
        refs = [normalize(u.text) for u in self.dev_set.utterances]
        c = error_counts(refs, hyps)
        return {"wer": c.words.rate(), "cer": c.chars.rate()}

    def checkpoint_files(self) -> dict:
        files = {"vocab.json": {"symbols": self.vocab.symbols},
                 "config.yaml": yaml.safe_dump(to_dict(self.cfg), sort_keys=False, allow_unicode=True)}
        if self.lm_path is not None:
            files["lm.arpa"] = self.lm_path
        return files


def train_asr(cfg: AsrConfig, log=print) -> dict:
    """Adapt a backbone to ASR as configured; returns the training summary (see ``summary.json``)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    task = AsrTask(cfg, log)
    return Trainer(task, cfg.train, out, cfg.data, log).run()
