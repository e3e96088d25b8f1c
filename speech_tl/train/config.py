"""The training settings (``train:`` of a config) and the run settings a resume compares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None  # a wall-clock budget; recipes set one, a real run usually does not
    eval_every: int = 200
    # score the model on the dev set before the first step too (a pretrained model's zero-shot point, in
    # summary.json as start_dev) and keep it as a candidate for the best checkpoint: a run whose steps never beat
    # it on the dev set keeps the starting model
    eval_at_start: bool = False
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | bf16 | fp16 | off
    prefix_cache: str = "auto"  # auto | memory | disk | off
    num_workers: int = 2  # DataLoader worker processes decoding audio (0: on the training thread)
    accumulate: int = 1  # batches per optimizer step (gradient accumulation)
    tensorboard: bool = True  # TensorBoard event files beside train_log.jsonl when tensorboard is installed
    resume: bool | str = True  # true: go on from out_dir/checkpoint if its settings match; force: even if not

    def check(self) -> None:
        if self.accumulate < 1 or self.num_workers < 0:
            raise ValueError(f"train.accumulate must be >= 1 and train.num_workers >= 0, got {self.accumulate} "
                             f"and {self.num_workers}")
        for key in ("device", "amp", "prefix_cache"):
            allowed = {"device": ("auto", "cpu", "cuda"), "amp": ("auto", "bf16", "fp16", "off"),
                       "prefix_cache": ("auto", "memory", "disk", "off")}[key]
            if getattr(self, key) not in allowed:
                raise ValueError(f"train.{key}={getattr(self, key)!r}: allowed {', '.join(allowed)}")
        if isinstance(self.resume, str) and self.resume != "force":
            raise ValueError(f"train.resume={self.resume!r}: allowed true, false or force")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("give at least one limit: train.max_steps, train.max_epochs or train.max_minutes")


# settings a resumed run may change: limits, logging and evaluation cadence, where it runs, how it decodes
RESUMABLE_SETTINGS = ("out_dir", "train.max_steps", "train.max_epochs", "train.max_minutes", "train.eval_every",
                      "train.log_every", "train.checkpoint_every", "train.eval_at_start", "train.num_workers",
                      "train.resume", "train.device", "train.tensorboard", "data.dev", "data.dev_max_utterances",
                      "decode.")


def run_settings(cfg) -> dict:
    """The settings of a run that a resume must not change, flattened to dotted keys."""
    from ..config import to_dict

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    return {k: v for k, v in flat(to_dict(cfg)).items()
            if not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE_SETTINGS)}
