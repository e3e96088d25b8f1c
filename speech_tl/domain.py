"""Domain confusion: a domain classifier behind a gradient-reversal layer (Ganin & Lempitsky, 2015).

The classifier learns to tell the domains apart (language, recording channel, TTS engine) from
the encoder's output; the reversed gradient pushes the encoder to make them indistinguishable,
so what the task head learns transfers across them. The reversal weight rises from 0 to
``weight`` over training, ``weight * (2 / (1 + exp(-gamma * progress)) - 1)``, so the task head
gets a start before the adversary pulls.

Domain labels come from the manifest: ``language``, or any key of an utterance's extra fields
(``domain`` of the synthetic corpora: ``tts-espeak``, ``tts-mbrola``, ``tts-pico``), or ``target``:
the training manifest is the ``source`` domain and the utterances of ``domain.target``, a manifest
of audio from the domain the model is meant for (real recordings, no transcripts needed), are
``domain.target_label``. Target utterances take part in the domain loss only (sim-to-real domain
confusion: the encoder learns to make synthetic and real speech look alike).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ConfigError
from .errors import InputError
from .logs import info
from .manifest import Utterance


@dataclass
class DomainConfig:
    field: str = ""  # "" (off), "language", or an extra field of the manifest such as "domain"
    weight: float = 0.0  # final gradient-reversal weight; 0 turns domain confusion off
    gamma: float = 10.0  # steepness of the 0 -> weight schedule over training progress
    hidden: int = 256  # width of the classifier's hidden layer
    target: str = ""  # manifest of untranscribed target-domain audio (e.g. real speech), for field "target"
    target_label: str = "real"

    @property
    def enabled(self) -> bool:
        return bool(self.field) and self.weight > 0

    def check(self) -> None:
        if self.weight < 0 or self.gamma <= 0 or self.hidden <= 0:
            raise ConfigError("domain.weight must be >= 0, domain.gamma and domain.hidden > 0")
        if self.weight > 0 and not self.field:
            raise ConfigError("domain.weight > 0 needs domain.field (language, target, or a manifest field such as "
                              "domain)")
        if self.field == "target" and not self.target:
            raise ConfigError("domain.field=target needs domain.target: a manifest of target-domain audio "
                              "(e.g. real recordings; transcripts are not needed)")
        if self.target and self.field != "target":
            raise ConfigError(f"domain.target is used with domain.field=target only (got field {self.field!r})")
        if self.target_label == SOURCE_LABEL:
            raise ConfigError(f"domain.target_label must differ from {SOURCE_LABEL!r}")


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-weight`` on the way back."""
    return _Reverse.apply(x, weight)


def reversal_weight(progress: float, weight: float, gamma: float = 10.0) -> float:
    """``weight * (2 / (1 + exp(-gamma * p)) - 1)`` for training progress ``p`` in [0, 1]."""
    p = min(1.0, max(0.0, progress))
    return weight * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class DomainClassifier(nn.Module):
    """``(B, D)`` pooled encoder output -> ``(B, num_domains)`` logits, behind a gradient reversal."""

    def __init__(self, dim: int, num_domains: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_domains))

    def forward(self, pooled: torch.Tensor, weight: float) -> torch.Tensor:
        return self.net(reverse_gradient(pooled, weight))


SOURCE_LABEL = "source"
TARGET_KEY = "target_domain"  # extra field set on the utterances of domain.target


def domain_of(u: Utterance, field: str) -> str:
    if field == "target":
        return str(u.extra.get(TARGET_KEY, SOURCE_LABEL))
    return u.language if field == "language" else str(u.extra.get(field, ""))


def mark_target(utts: list[Utterance], label: str) -> list[Utterance]:
    """Label ``utts`` (of the ``domain.target`` manifest) as target-domain utterances; returns them."""
    for u in utts:
        u.extra[TARGET_KEY] = label
    return utts


def is_target(u: Utterance) -> bool:
    return TARGET_KEY in u.extra


def domain_labels(utts: list[Utterance], field: str, manifest: str) -> tuple[list[str], torch.Tensor]:
    """Sorted domain names and a label per utterance ``(N,)``; every utterance must have one, and 2+ domains."""
    values = [domain_of(u, field) for u in utts]
    missing = [u for u, v in zip(utts, values, strict=True) if not v or v == "None"]
    if missing:
        raise InputError(f"{manifest}:{missing[0].line}: utterance {missing[0].id!r} has no {field!r} "
                         f"({len(missing)} such); domain confusion needs a domain for every training utterance")
    names = sorted(set(values))
    if len(names) < 2:
        raise InputError(f"{manifest}: every utterance has {field} {names[0]!r}; domain confusion needs at least two "
                         "domains (e.g. add the source-language data to the training manifest)")
    index = {n: i for i, n in enumerate(names)}
    return names, torch.tensor([index[v] for v in values])


class DomainConfusion:
    """What a task holds for domain confusion: labels, the classifier (registered on the model) and the loss."""

    def __init__(self, cfg: DomainConfig, model: nn.Module, dim: int, utts: list[Utterance], manifest: str):
        cfg.check()
        self.cfg = cfg
        self.names, self.labels = domain_labels(utts, cfg.field, manifest)
        model.domain_classifier = DomainClassifier(dim, len(self.names), cfg.hidden)
        self.classifier = model.domain_classifier
        self.progress = 0.0
        self.last: dict[str, float] = {}

    @classmethod
    def attach(cls, cfg: DomainConfig, model: nn.Module, dim: int, utts: list[Utterance], manifest: str,
               log=info) -> DomainConfusion | None:
        """Check ``cfg``; when domain confusion is on, attach the classifier to ``model`` and return the
        confusion (else None)."""
        cfg.check()
        if not cfg.enabled:
            return None
        confusion = cls(cfg, model, dim, utts, manifest)
        log(f"domain confusion on {cfg.field}: {', '.join(confusion.names)} (reversal weight 0 -> {cfg.weight})")
        return confusion

    def loss(self, pooled: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Domain cross-entropy on ``pooled`` ``(B, D)``; its gradient reaches the encoder reversed."""
        w = reversal_weight(self.progress, self.cfg.weight, self.cfg.gamma)
        logits = self.classifier(pooled.float(), w)
        labels = self.labels[indices].to(logits.device)
        loss = nn.functional.cross_entropy(logits, labels)
        self.last = {"domain_loss": float(loss.detach()), "domain_acc": float((logits.argmax(1) == labels).float()
                                                                                .mean()), "reversal": w}
        return loss


def strip_training_modules(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's state without the domain classifier (used only in training)."""
    return {k: v for k, v in state.items() if not k.startswith("domain_classifier.")}
