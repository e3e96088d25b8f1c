"""The one training loop, shared by every task (ASR, speaker).

A task (see :class:`Task`) supplies the model, the loss of a batch and the dev
evaluation; this loop does the rest: AdamW with warmup then cosine decay, gradient
clipping, AMP on CUDA (bf16 where supported, else fp16 with loss scaling), duration-
bucketed batches, the frozen-prefix cache, dev evaluation every N steps with the best
checkpoint kept, limits in steps, epochs and minutes, atomic checkpoints with exact
resume, and DDP under ``torchrun`` (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import find_checkpoint, load_tensors, save_checkpoint
from .data import UtteranceDataset, collate, duration_batches, hidden_augment, shard_batches, speed_perturb
from .freeze import FreezePlan
from .prefix_cache import PrefixCache


@dataclass
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = 10.0
    eval_every: int = 200
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | bf16 | fp16 | off
    prefix_cache: str = "auto"  # auto | memory | disk | off
    num_workers: int = 1
    resume: bool = True

    def check(self) -> None:
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("give at least one limit: train.max_steps, train.max_epochs or train.max_minutes")
        for key in ("device", "amp", "prefix_cache"):
            allowed = {"device": ("auto", "cpu", "cuda"), "amp": ("auto", "bf16", "fp16", "off"),
                       "prefix_cache": ("auto", "memory", "disk", "off")}[key]
            if getattr(self, key) not in allowed:
                raise ValueError(f"train.{key}={getattr(self, key)!r}: allowed {', '.join(allowed)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")


class Task(Protocol):
    """What a task gives the loop."""

    name: str
    model: nn.Module  # forward(wave=, lengths=, hidden=, frozen_depth=) -> task output; has .backbone
    plan: FreezePlan
    train_set: UtteranceDataset
    primary_metric: str  # dev metric to select the best checkpoint by (lower is better)

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict: ...

    def checkpoint_files(self) -> dict: ...


# --------------------------------------------------------------------------- environment

@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0 under ``torchrun`` (or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """Join the process group when started by ``torchrun``; pick the device (CUDA when present)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    info = Dist()
    if world > 1:
        info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        return info, torch.device("cuda", info.local_rank)
    return info, torch.device("cpu")


def amp_settings(pref: str, device: torch.device) -> tuple[bool, torch.dtype | None, bool]:
    """(enabled, dtype, needs GradScaler)."""
    if device.type != "cuda" or pref == "off":
        return False, None, False
    if pref == "bf16" or (pref == "auto" and torch.cuda.is_bf16_supported()):
        return True, torch.bfloat16, False
    return True, torch.float16, True


def lr_factor(step: int, progress: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio`` over progress 0..1."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return warm * cos


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- the loop

class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out_dir: str | Path, data_cfg=None, log=print):
        self.task, self.cfg, self.out_dir = task, cfg, Path(out_dir)
        self.data_cfg = data_cfg
        self.dist, self.device = setup_distributed(cfg.device)
        self.log_fn = log if self.dist.main else (lambda *a, **k: None)
        self.amp, self.amp_dtype, needs_scaler = amp_settings(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        self.model = task.model.to(self.device)
        self.plan = task.plan
        self.optimizer = torch.optim.AdamW(self._groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.epoch = 0
        self.position = 0  # batches of the current epoch already done
        self.elapsed = 0.0  # seconds of training so far, over all resumes
        self.best: float | None = None
        self.best_step: int | None = None
        self.cache, self.cache_reason = self._make_cache()
        self.ddp_model: nn.Module | None = None
        self.last_eval_step: int | None = None

    # ------------------------------------------------------------------ set-up helpers
    def _groups(self) -> list[dict]:
        groups = self.plan.param_groups(self.cfg.lr, getattr(self.task.model, "head", None))
        for g in groups:
            g["base_lr"] = g["lr"]
        known = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.task.model.parameters() if id(p) not in known]
        if rest:  # task-specific modules outside backbone and head (e.g. a domain classifier)
            groups.append({"params": rest, "lr": self.cfg.lr, "base_lr": self.cfg.lr, "name": "other"})
        return groups

    def _augmenting(self) -> str | None:
        d = self.data_cfg
        if d is not None and d.speed_perturb and any(f != 1.0 for f in d.speed_perturb):
            return "speed perturbation changes the input"
        if d is not None and d.spec_augment:
            return "SpecAugment changes the input"
        return None

    def _make_cache(self) -> tuple[PrefixCache | None, str]:
        mode = self.cfg.prefix_cache
        if mode == "off":
            return None, "train.prefix_cache=off"
        if not self.plan.prefix_is_frozen():
            return None, "nothing is frozen below the trainable layers"
        reason = getattr(self.task, "input_varies", None) or self._augmenting()
        if reason:
            return None, reason
        if mode == "auto":
            frames = sum(self.task.train_set.durations) * 50  # 50 frames/s is typical; an estimate
            size = frames * self.task.model.backbone.output_dim * 2
            mode = "memory" if size < 4 * 2**30 else "disk"
        return PrefixCache(mode, self.out_dir / "prefix_cache"), f"{mode}, frozen depth {self.plan.depth}"

    def _wrapped(self) -> nn.Module:
        if self.dist.world_size == 1:
            return self.model
        if self.ddp_model is None:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DDP(self.model, device_ids=ids)
        return self.ddp_model

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "position": self.position, "elapsed": self.elapsed,
                "best": self.best, "best_step": self.best_step, "rng": rng_state()}

    def _meta(self, metrics: dict | None = None) -> dict:
        return {"task": self.task.name, "step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 1),
                "backbone": self.task.model.backbone.source, "metrics": metrics or {},
                "freeze": self.plan.summary(getattr(self.task.model, "head", None))}

    def save(self, name: str, metrics: dict | None = None, resumable: bool = True) -> None:
        if not self.dist.main:
            return
        files = {"model.pt": self.model.state_dict(), "meta.json": self._meta(metrics),
                 **self.task.checkpoint_files()}
        if resumable:
            files["optimizer.pt"] = self.optimizer.state_dict()
            files["state.pt"] = self._state()
            if self.scaler is not None:
                files["scaler.pt"] = self.scaler.state_dict()
        save_checkpoint(self.out_dir / name, files)

    def try_resume(self) -> bool:
        found = find_checkpoint(self.out_dir / "checkpoint")
        if found is None or not self.cfg.resume or not (found / "state.pt").is_file():
            return False
        self.model.load_state_dict(load_tensors(found / "model.pt"))
        self.optimizer.load_state_dict(load_tensors(found / "optimizer.pt"))
        if self.scaler is not None and (found / "scaler.pt").is_file():
            self.scaler.load_state_dict(load_tensors(found / "scaler.pt"))
        state = load_tensors(found / "state.pt")
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.elapsed, self.best, self.best_step = state["elapsed"], state["best"], state["best_step"]
        set_rng_state(state["rng"])
        self.plan.apply(self.step)
        self.log_fn(f"resuming from step {self.step} (epoch {self.epoch}, batch {self.position}, "
                    f"{self.elapsed / 60:.1f} min trained)")
        return True

    # ------------------------------------------------------------------ limits
    def progress(self, batches_per_epoch: int) -> float:
        c = self.cfg
        parts = []
        if c.max_steps:
            parts.append(self.step / c.max_steps)
        if c.max_minutes:
            parts.append(self.elapsed / (60 * c.max_minutes))
        if c.max_epochs:
            parts.append(self.step / max(1, c.max_epochs * batches_per_epoch))
        return max(parts) if parts else 0.0

    def done(self, batches_per_epoch: int) -> bool:
        stop = self.progress(batches_per_epoch) >= 1.0
        if self.dist.world_size > 1:  # all ranks stop together (rank 0's clock decides)
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    # ------------------------------------------------------------------ one step
    def _batch_output(self, model: nn.Module, indices: list[int], epoch: int):
        depth = self.plan.depth if self.plan.prefix_is_frozen() else None
        masking = self.data_cfg is not None and self.data_cfg.hidden_augment
        if self.cache is not None:
            self.cache.reset(depth)

            def compute(index: int) -> torch.Tensor:  # one utterance alone: see PrefixCache
                wave, lengths = self._load([index], epoch)
                with torch.no_grad(), self._autocast():
                    hidden, out_lengths = self.model.backbone.forward_to(depth, wave, lengths)
                return hidden[0, : int(out_lengths[0])]

            hidden, lengths = self.cache.batch(indices, compute, self.device)
        elif masking and depth is not None:
            wave, lengths = self._load(indices, epoch)
            with torch.no_grad(), self._autocast():
                hidden, lengths = self.model.backbone.forward_to(depth, wave, lengths)
        else:
            if masking:
                raise ValueError("data.hidden_* masks the output of the frozen prefix, but nothing is frozen; "
                                 "freeze at least the frontend (freeze.mode=bottom) or use data.spec_augment")
            wave, lengths = self._load(indices, epoch)
            with self._autocast():
                return model(wave=wave, lengths=lengths, frozen_depth=depth)
        if masking:
            generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
            hidden = hidden_augment(hidden, lengths, self.data_cfg, generator)
        with self._autocast():
            return model(hidden=hidden, lengths=lengths, frozen_depth=depth)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def _load(self, indices: list[int], epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.task.train_set[i] for i in indices]
        factors = self.data_cfg.speed_perturb if self.data_cfg is not None else None
        if factors:
            rng = np.random.default_rng([self.cfg.seed, epoch, *indices[:1]])
            items = [(speed_perturb(w, float(rng.choice(factors))), i) for w, i in items]
        batch = collate(items)
        return batch["wave"].to(self.device), batch["lengths"].to(self.device)

    def _set_lr(self, batches_per_epoch: int) -> float:
        f = lr_factor(self.step, self.progress(batches_per_epoch), self.cfg.warmup_steps, self.cfg.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return self.cfg.lr * f

    def train_step(self, indices: list[int], batches_per_epoch: int) -> float:
        model = self._wrapped()
        model.train()
        self.plan.restore_eval()
        lr = self._set_lr(batches_per_epoch)
        if hasattr(self.task, "set_progress"):  # schedules inside the task (domain confusion's reversal weight)
            self.task.set_progress(self.progress(batches_per_epoch))
        self.model.backbone.augmenting = True
        try:
            output = self._batch_output(model, indices, self.epoch)
        finally:
            self.model.backbone.augmenting = False
        loss = self.task.loss(output, torch.tensor(indices))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        if self.cfg.grad_clip and params:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        if self.plan.apply(self.step):  # gradual unfreezing moved the boundary
            self.log_fn(self.plan.summary(getattr(self.task.model, "head", None)))
            self.ddp_model = None
        self._last_lr = lr
        return float(loss.detach())

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        metrics = {}
        if self.dist.main:
            self.model.eval()
            with torch.no_grad(), self._autocast():
                metrics = self.task.evaluate(self.model, self.device)
            metrics = {k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()}
        if self.dist.world_size > 1:
            dist.barrier()
        return metrics

    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _eval_and_keep_best(self) -> dict:
        self.last_eval_step = self.step  # the same on every rank: evaluation has a barrier
        metrics = self.evaluate()
        if self.dist.main and metrics:
            value = metrics.get(self.task.primary_metric)
            second = getattr(self.task, "secondary_metric", None)
            if value is not None and second in metrics:  # ties (e.g. WER 1.0 early on) go to the secondary metric
                value = value + 1e-6 * float(metrics[second])
            record = {"step": self.step, "elapsed_s": round(self.elapsed, 1),
                      **{f"dev_{k}": v for k, v in metrics.items() if isinstance(v, float)}}
            self._log(record)
            improved = value is not None and (self.best is None or value < self.best)
            if improved:
                self.best, self.best_step = value, self.step
                self.save("best", metrics, resumable=False)
            self.log_fn(f"step {self.step}: dev " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                           if isinstance(v, float))
                        + (" (best)" if improved else f" (best {self.best:.4f} at step {self.best_step})"))
        return metrics

    # ------------------------------------------------------------------ run
    def run(self, stop_at_step: int | None = None) -> dict:
        """Train until a limit is reached. ``stop_at_step`` pauses early as a kill would (after the
        checkpoint of that step, no final evaluation); a later run resumes from there."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(self.cfg.seed + self.dist.rank)
        resumed = self.try_resume()
        if not resumed and self.dist.main:
            (self.out_dir / "train_log.jsonl").unlink(missing_ok=True)
        head = getattr(self.task.model, "head", None)
        self.log_fn(self.plan.summary(head))
        self.log_fn(f"device {self.device}" + (f", AMP {self.amp_dtype}" if self.amp else ", AMP off")
                    + (f", DDP x{self.dist.world_size}" if self.dist.world_size > 1 else ""))
        cache = f"on, {self.cache_reason}" if self.cache is not None else f"off ({self.cache_reason})"
        self.log_fn(f"prefix cache: {cache}")
        durations = self.task.train_set.durations
        n_batches = len(shard_batches(duration_batches(durations, self.data_batch_seconds(), self.max_batch(),
                                                       self.cfg.seed, 0), self.dist.rank, self.dist.world_size))
        window = {"loss": 0.0, "n": 0, "utts": 0, "audio": 0.0, "t": time.time()}
        metrics: dict = {}
        while not self.done(n_batches):
            batches = shard_batches(duration_batches(durations, self.data_batch_seconds(), self.max_batch(),
                                                     self.cfg.seed, self.epoch), self.dist.rank, self.dist.world_size)
            if hasattr(self.task.train_set, "set_epoch"):  # per-epoch crops
                self.task.train_set.set_epoch(self.epoch)
            while self.position < len(batches) and not self.done(n_batches):
                t0 = time.time()
                indices = batches[self.position]
                loss = self.train_step(indices, n_batches)
                self.position += 1
                self.elapsed += time.time() - t0
                window["loss"] += loss
                window["n"] += 1
                window["utts"] += len(indices)
                window["audio"] += sum(durations[i] for i in indices)
                if self.step % self.cfg.log_every == 0:
                    dt = max(1e-9, time.time() - window["t"])
                    rec = {"step": self.step, "epoch": self.epoch, "loss": window["loss"] / window["n"],
                           "lr": self._last_lr, "utt_per_s": window["utts"] / dt,
                           "audio_s_per_s": window["audio"] / dt, "memory_mb": memory_mb(self.device),
                           "elapsed_s": round(self.elapsed, 1)}
                    self._log(rec)
                    self.log_fn(f"step {rec['step']:>6} epoch {rec['epoch']:>3} loss {rec['loss']:8.4f} "
                                f"lr {rec['lr']:.2e} {rec['utt_per_s']:6.1f} utt/s "
                                f"{rec['memory_mb']:7.0f} MB {self.elapsed / 60:6.2f} min")
                    window = {"loss": 0.0, "n": 0, "utts": 0, "audio": 0.0, "t": time.time()}
                t_eval = time.time()
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                    metrics = self._eval_and_keep_best()
                    self.elapsed += time.time() - t_eval
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save("checkpoint")
                if stop_at_step is not None and self.step >= stop_at_step:
                    if self.position >= len(batches):
                        self.epoch, self.position = self.epoch + 1, 0
                    self.save("checkpoint")
                    return {"stopped_at_step": self.step}
            if self.position >= len(batches):
                self.epoch += 1
                self.position = 0
        t_eval = time.time()
        if self.last_eval_step != self.step:
            metrics = self._eval_and_keep_best()
        self.elapsed += time.time() - t_eval
        self.save("checkpoint", metrics)
        summary = {"steps": self.step, "epochs": self.epoch + self.position / max(1, n_batches),
                   "train_minutes": round(self.elapsed / 60, 3), "best_step": self.best_step,
                   f"best_dev_{self.task.primary_metric}": self.best, "last_dev": metrics,
                   "trainable_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                   "total_parameters": sum(p.numel() for p in self.model.parameters()),
                   "freeze": self.plan.summary(head), "backbone": self.task.model.backbone.source,
                   "prefix_cache": self.cache_reason if self.cache is not None else f"off ({self.cache_reason})"}
        if self.dist.main:
            from .atomic import atomic_write_text

            atomic_write_text(self.out_dir / "summary.json", json.dumps(summary, indent=1))
        return summary

    def data_batch_seconds(self) -> float:
        return self.data_cfg.batch_seconds if self.data_cfg is not None else 120.0

    def max_batch(self) -> int:
        return self.data_cfg.max_batch_size if self.data_cfg is not None else 64
