"""Speaker adaptation: config and the task the one training loop runs.

``speech-tl train speaker CONFIG.yaml key=value ...`` -> :func:`train_speaker`. Each step sees
random fixed-length crops of the training utterances (a new crop per epoch, seeded), the
AAM-softmax loss over the training speakers, and dev evaluation is the EER of all dev pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ..backbones import load_backbone
from ..config import ConfigError, to_dict
from ..data import DataConfig, UtteranceDataset, load_training_manifest, subset
from ..domain import DomainConfig, DomainConfusion
from ..errors import InputError
from ..freeze import FreezeConfig, FreezePlan
from ..logs import info
from ..train import Task, TrainConfig, Trainer
from .model import SpeakerModel

DEFAULT_SPEAKER_BACKBONE = "ge2e:resemblyzer"


@dataclass
class SpeakerDataConfig(DataConfig):
    crop_seconds: float = 1.6  # training crop (GE2E was trained on 1.6 s partials)
    # None: every crop is crop_seconds of speech. A value below crop_seconds: each crop holds a random
    # min_crop_seconds..crop_seconds of speech, zero-padded to crop_seconds, as a short clip is at test time
    min_crop_seconds: float | None = None
    min_duration: float = 0.5
    batch_seconds: float = 64.0
    max_duration: float = 60.0

    def check(self) -> None:
        if not self.train:
            raise ConfigError("data.train: required (a manifest .jsonl)")
        if self.crop_seconds <= 0 or self.batch_seconds < self.crop_seconds:
            raise ConfigError(f"data.batch_seconds ({self.batch_seconds}) must be >= data.crop_seconds "
                              f"({self.crop_seconds}) > 0")
        if self.min_crop_seconds is not None and not 0 < self.min_crop_seconds <= self.crop_seconds:
            raise ConfigError(f"data.min_crop_seconds must be in (0, data.crop_seconds={self.crop_seconds}], "
                              f"got {self.min_crop_seconds}")


@dataclass
class SpeakerModelConfig:
    backbone: str = DEFAULT_SPEAKER_BACKBONE
    pretrained: bool = True
    pooling: str = "auto"  # auto (GE2E: last frame; ECAPA: its own; others: mean) | last | mean | backbone
    embedding_dim: int | None = None  # a projection after pooling (None: the backbone's width)
    margin: float = 0.2
    scale: float = 30.0


@dataclass
class SpeakerConfig:
    out_dir: str = "exp/speaker"
    data: SpeakerDataConfig = field(default_factory=SpeakerDataConfig)
    model: SpeakerModelConfig = field(default_factory=SpeakerModelConfig)
    freeze: FreezeConfig = field(default_factory=lambda: FreezeConfig(bottom_layers=2))
    train: TrainConfig = field(default_factory=TrainConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)  # domain confusion on the embedding (off by default)


class CropDataset(UtteranceDataset):
    """``load(i, epoch)``: a ``crop_seconds`` piece ``(T,)`` of utterance ``i`` at an offset seeded by
    ``(seed, epoch, i)``, so new each epoch and the same in every run; item ``i`` is epoch 0's crop.

    With ``min_crop_seconds``, the piece holds a random ``min_crop_seconds..crop_seconds`` of speech and is
    zero-padded to ``crop_seconds``: the model then also learns from clips as short as those it meets at
    test time (embedding a clip shorter than one window pads it the same way).
    """

    def __init__(self, utterances, crop_seconds: float, seed: int, min_crop_seconds: float | None = None):
        super().__init__(utterances)
        self.crop, self.seed = crop_seconds, seed
        self.min_crop = min_crop_seconds

    def __getitem__(self, i: int):
        return self.load(i, 0)  # the training loop asks for other epochs' crops through load()

    def load(self, i: int, epoch: int):
        wave, _ = super().__getitem__(i)
        rng = np.random.default_rng([self.seed, epoch, i])
        full = int(self.crop * self.sample_rate)
        n = full if self.min_crop is None else int(rng.uniform(self.min_crop, self.crop) * self.sample_rate)
        if wave.numel() > n:
            start = int(rng.integers(0, wave.numel() - n + 1))
            wave = wave[start:start + n]
        return torch.nn.functional.pad(wave, (0, full - wave.numel())), i

    @property
    def durations(self) -> list[float]:
        return [self.crop] * len(self.utterances)  # every item is one crop (shorter ones zero-padded)


def dev_eer(model: SpeakerModel, dev: UtteranceDataset) -> dict:
    """EER over all pairs of the dev utterances (cosine of whole-utterance embeddings)."""
    from ..metrics import eer

    device = next(model.parameters()).device
    emb = torch.stack([model.embed_utterance(dev[i][0].to(device)) for i in range(len(dev))]).float().cpu()
    scores = (emb @ emb.T).numpy()
    spk = np.array([u.speaker for u in dev.utterances])
    iu = np.triu_indices(len(spk), k=1)
    labels = (spk[iu[0]] == spk[iu[1]]).astype(np.int64)
    if labels.sum() == 0 or labels.sum() == labels.size:
        return {}
    value, _ = eer(scores[iu], labels)
    return {"eer": value}


class SpeakerTask(Task):
    name = "speaker"
    primary_metric = "eer"
    input_varies = "random crops change the input every epoch"

    def __init__(self, cfg: SpeakerConfig, log=info):
        self.cfg = cfg
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        train_utts = load_training_manifest(cfg.data.train, cfg.data, need_text=False, out_dir=out, name="train")
        self.speakers = sorted({u.speaker for u in train_utts})
        if len(self.speakers) < 2:
            raise InputError(f"{cfg.data.train}: {len(self.speakers)} speaker(s); speaker adaptation needs at least 2 "
                             "(data.train)")
        index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = torch.tensor([index[u.speaker] for u in train_utts])
        self.train_set = CropDataset(train_utts, cfg.data.crop_seconds, cfg.train.seed, cfg.data.min_crop_seconds)
        self.dev_set = None
        if cfg.data.dev:
            dev = load_training_manifest(cfg.data.dev, cfg.data, need_text=False, out_dir=out, name="dev")
            self.dev_set = UtteranceDataset(subset(dev, cfg.data.dev_max_utterances, cfg.train.seed))
        torch.manual_seed(cfg.train.seed)
        backbone = load_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained)
        m = cfg.model
        self.model = SpeakerModel(backbone, len(self.speakers), m.pooling, m.embedding_dim, m.margin, m.scale)
        self.plan = FreezePlan(backbone, cfg.freeze)
        self.domain = DomainConfusion.attach(cfg.domain, self.model, self.model.embedding_dim, train_utts,
                                             cfg.data.train, log)
        log(f"speakers: {len(self.speakers)} in training, {len(train_utts)} utterances "
            f"({sum(u.duration for u in train_utts) / 3600:.2f} h)"
            + (f"; dev {len(self.dev_set)} utterances" if self.dev_set is not None else ""))

    def set_progress(self, progress: float) -> None:
        if self.domain is not None:
            self.domain.progress = progress

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        """AAM-softmax on the embeddings ``(B, D)``, plus the domain classifier's loss when domain confusion is on."""
        loss, _ = self.model.head(output, self.labels[indices].to(output.device))
        if self.domain is not None:
            loss = loss + self.domain.loss(output, indices)
        return loss

    def evaluate(self, model, device) -> dict:
        return dev_eer(self.model, self.dev_set) if self.dev_set is not None else {}

    def checkpoint_files(self) -> dict:
        return {"speakers.json": {"speakers": self.speakers},
                "config.yaml": yaml.safe_dump(to_dict(self.cfg), sort_keys=False, allow_unicode=True)}


def train_speaker(cfg: SpeakerConfig, log=info, before_start=None) -> dict:
    """Adapt a speaker encoder as configured; returns the training summary. ``before_start``: as for
    :func:`speech_tl.asr.task.train_asr`."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = SpeakerTask(cfg, log)
    summary = Trainer(task, cfg.train, out, cfg.data, log).run(before_start=before_start)
    (out / "speakers.json").write_text(json.dumps({"speakers": task.speakers}), encoding="utf-8")
    return summary
