"""Multitask config, the task the one training loop runs, and the export of the two single-task checkpoints.

The training set is the transcribed utterances (``data.train``, CTC loss) and the speaker-labelled ones
(``data.speaker_train``, AAM-softmax loss) together; batches are drawn by duration from both, so a batch
may hold either kind or both. The loss is ``loss.asr * CTC + loss.speaker * AAM`` over the items of each
kind in the batch. Whole utterances are used (no random crops), so a frozen prefix is cached. The dev
metric that selects the best checkpoint is the mean of dev CER and dev EER. With ``decode.lm_order`` an
n-gram LM is trained on the transcripts and goes with the ``asr/`` export, as in single-task ASR.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..asr.config import DecodeConfig, ModelConfig
from ..asr.corpus import load_asr_corpus, train_decoder_lm
from ..asr.model import ctc_loss
from ..asr.task import transcribe_batches
from ..backbones import load_backbone
from ..backbones.base import set_dropout
from ..checkpoint import load_tensors, save_checkpoint
from ..config import ConfigError, to_dict
from ..data import DataConfig, UtteranceDataset, load_training_manifest, subset
from ..errors import InputError
from ..freeze import FreezeConfig, FreezePlan
from ..logs import info
from ..metrics import error_counts
from ..speaker.task import dev_eer
from ..text import normalize
from ..train import Task, TrainConfig, Trainer
from .model import AsrView, MultitaskModel, asr_state, speaker_state


@dataclass
class MultitaskDataConfig(DataConfig):
    speaker_train: str = ""  # speaker-labelled manifest for the speaker branch
    speaker_dev: str | None = None
    speaker_dev_max_utterances: int | None = 240

    def check(self) -> None:
        super().check()
        if self.spec_augment or self.speed_perturb:
            raise ConfigError("data.spec_augment / data.speed_perturb are not supported by multitask training")
        if not self.speaker_train:
            raise ConfigError("data.speaker_train: required (a speaker-labelled manifest .jsonl)")


@dataclass
class MultitaskModelConfig(ModelConfig):
    embedding_dim: int = 256
    margin: float = 0.2
    scale: float = 30.0


@dataclass
class LossWeights:
    asr: float = 1.0
    speaker: float = 1.0

    def check(self) -> None:
        if self.asr < 0 or self.speaker < 0 or self.asr + self.speaker == 0:
            raise ConfigError(f"loss.asr and loss.speaker must be >= 0 and not both 0, got {self.asr}, {self.speaker}")


@dataclass
class MultitaskConfig:
    out_dir: str = "exp/multitask"
    language: str = "de"
    data: MultitaskDataConfig = field(default_factory=MultitaskDataConfig)
    model: MultitaskModelConfig = field(default_factory=MultitaskModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


class MultitaskTask(Task):
    name = "multitask"
    secondary_metric = None

    def __init__(self, cfg: MultitaskConfig, log=info):
        self.cfg = cfg
        cfg.loss.check()
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        d = cfg.data
        corpus = load_asr_corpus(d, cfg.language, cfg.train.seed, out, log)  # the same set-up as ASR training
        asr_utts, self.vocab, self.targets = corpus.train, corpus.vocab, corpus.targets
        spk_utts = load_training_manifest(d.speaker_train, d, need_text=False, out_dir=out, name="speaker_train")
        self.speakers = sorted({u.speaker for u in spk_utts})
        if len(self.speakers) < 2:
            raise InputError(f"{d.speaker_train}: {len(self.speakers)} speaker(s); the speaker branch needs 2 or more "
                             "(data.speaker_train)")
        index = {s: i for i, s in enumerate(self.speakers)}
        self.num_asr = len(asr_utts)
        self.labels = torch.tensor([-1] * len(asr_utts) + [index[u.speaker] for u in spk_utts])
        self.train_set = UtteranceDataset(asr_utts + spk_utts)
        self.asr_dev, self.spk_dev = corpus.dev, None
        if d.speaker_dev:
            dev = load_training_manifest(d.speaker_dev, d, need_text=False, out_dir=out, name="speaker_dev")
            self.spk_dev = UtteranceDataset(subset(dev, d.speaker_dev_max_utterances, cfg.train.seed))
        self.primary_metric = ("error" if self.asr_dev and self.spk_dev else "cer" if self.asr_dev else "eer")
        torch.manual_seed(cfg.train.seed)
        m = cfg.model
        backbone = load_backbone(m.backbone, pretrained=m.pretrained)
        if m.backbone_dropout is not None:
            set_dropout(backbone, m.backbone_dropout)
        self.model = MultitaskModel(backbone, len(self.vocab), len(self.speakers), m.dropout, m.embedding_dim,
                                    m.margin, m.scale)
        self.plan = FreezePlan(backbone, cfg.freeze)
        self.lm_path = None
        if cfg.decode.lm_order > 0:
            self.lm_path = train_decoder_lm(corpus, cfg.language, cfg.decode, out / "lm.arpa", log)
        log(f"multitask: {len(asr_utts)} transcribed utterances ({sum(u.duration for u in asr_utts) / 3600:.2f} h), "
            f"{len(spk_utts)} of {len(self.speakers)} speakers ({sum(u.duration for u in spk_utts) / 3600:.2f} h); "
            f"loss = {cfg.loss.asr} CTC + {cfg.loss.speaker} AAM")

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        log_probs, lengths, emb = output
        is_asr = indices < self.num_asr
        total = log_probs.new_zeros(())
        if is_asr.any() and self.cfg.loss.asr > 0:
            sel = is_asr.nonzero().squeeze(1)
            targets = [self.targets[int(indices[j])] for j in sel]
            total = total + self.cfg.loss.asr * ctc_loss(log_probs[sel.to(log_probs.device)],
                                                          lengths[sel.to(lengths.device)], targets)
        else:  # zero-weight terms keep every parameter in the graph (DDP expects gradients for all of them)
            total = total + 0.0 * log_probs.sum()
        if (~is_asr).any() and self.cfg.loss.speaker > 0:
            sel = (~is_asr).nonzero().squeeze(1)
            spk, _ = self.model.head["speaker"](emb[sel.to(emb.device)], self.labels[indices[sel]].to(emb.device))
            total = total + self.cfg.loss.speaker * spk
        else:
            total = total + 0.0 * (emb.sum() + self.model.head["speaker"].weight.sum())
        return total

    def evaluate(self, model, device) -> dict:
        metrics: dict = {}
        if self.asr_dev is not None:
            hyps = transcribe_batches(AsrView(self.model), self.asr_dev, self.vocab, device,
                                      self.cfg.data.batch_seconds)
            c = error_counts([normalize(u.text) for u in self.asr_dev.utterances], hyps)
            metrics.update(wer=c.words.rate(), cer=c.chars.rate())
        if self.spk_dev is not None:
            metrics.update(dev_eer(self.model, self.spk_dev))
        if "cer" in metrics and "eer" in metrics:
            metrics["error"] = (metrics["cer"] + metrics["eer"]) / 2
        return metrics

    def checkpoint_files(self) -> dict:
        files = {"vocab.json": {"symbols": self.vocab.symbols}, "speakers.json": {"speakers": self.speakers},
                 "config.yaml": yaml.safe_dump(to_dict(self.cfg), sort_keys=False, allow_unicode=True)}
        if self.lm_path is not None:
            files["lm.arpa"] = self.lm_path
        return files


def export_views(run: Path, cfg: MultitaskConfig) -> dict[str, Path]:
    """Write ``run/asr`` and ``run/speaker``: single-task run folders whose ``best/`` checkpoints hold the
    adapted shared encoder with the CTC head, and with the speaker projection (mean pooling)."""
    source = run / "best" if (run / "best" / "model.pt").is_file() else run / "checkpoint"
    meta = json.loads((source / "meta.json").read_text(encoding="utf-8"))
    state = load_tensors(source / "model.pt")
    base = to_dict(cfg)
    asr_cfg = {k: base[k] for k in ("out_dir", "language", "data", "model", "freeze", "train", "decode")}
    spk_cfg = {"out_dir": base["out_dir"], "data": {"train": cfg.data.speaker_train, "dev": cfg.data.speaker_dev},
               "model": {"backbone": cfg.model.backbone, "pretrained": cfg.model.pretrained, "pooling": "mean",
                         "embedding_dim": cfg.model.embedding_dim, "margin": cfg.model.margin,
                         "scale": cfg.model.scale},
               "freeze": base["freeze"], "train": base["train"]}
    views = {
        "asr": (asr_state(state), asr_cfg, {"vocab.json": source / "vocab.json",
                                            **({"lm.arpa": source / "lm.arpa"} if (source / "lm.arpa").is_file()
                                               else {})}),
        "speaker": (speaker_state(state), spk_cfg, {"speakers.json": source / "speakers.json"}),
    }
    out = {}
    summary = run / "summary.json"
    for task, (st, c, files) in views.items():
        folder = run / task
        save_checkpoint(folder / "best", {"model.pt": st, "config.yaml": yaml.safe_dump(c, sort_keys=False),
                                          "meta.json": {**meta, "task": task, "multitask_run": str(run)}, **files})
        (folder / "config.yaml").write_text(yaml.safe_dump(c, sort_keys=False), encoding="utf-8")
        if summary.is_file():
            shutil.copyfile(summary, folder / "summary.json")
        out[task] = folder
    return out


def train_multitask(cfg: MultitaskConfig, log=info, before_start=None) -> dict:
    """Train the shared encoder on both tasks; export ``asr/`` and ``speaker/`` views; return the summary.
    ``before_start``: as for :func:`speech_tl.asr.task.train_asr`."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = MultitaskTask(cfg, log)
    trainer = Trainer(task, cfg.train, out, cfg.data, log)
    summary = trainer.run(before_start=before_start)
    if trainer.dist.main:  # one process writes the exports; the others wait for them
        views = export_views(out, cfg)
        log("single-task views: " + ", ".join(f"{k} -> {v}" for k, v in views.items()))
    if trainer.dist.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return summary
