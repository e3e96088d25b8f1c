"""The loop (:class:`Trainer`): optimizer and schedule, batches, the prefix cache, evaluation, checkpoints
and resume, limits.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext as _nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import CheckpointError, checkpoint_candidates, load_tensors, save_checkpoint
from ..config import ConfigError
from ..data import collate, duration_batches, hidden_augment, shard_batches
from ..errors import InputError
from ..loader import BatchPlan, TrainingItems, make_loader
from ..logs import info
from ..prefix_cache import PrefixCache, estimate_bytes, prefix_outputs
from .config import TrainConfig, run_settings
from .distributed import amp_settings, memory_mb, setup_distributed
from .runlog import RunLog
from .state import TrainState, seed_everything
from .task import Task

# the prefix cache's filling: utterances padded to a multiple of BUCKET_SECONDS, FILL_ROWS of them per forward pass
# (benchmarks/data_loading.py: on 2 CPU cores 4 rows fill about 1.1x faster than one at a time, 8 or more slower)
BUCKET_SECONDS = 1.0
FILL_ROWS = {"cpu": 4, "cuda": 16}


def lr_factor(step: int, progress: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio`` over progress 0..1."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return warm * cos


def manifest_fingerprint(data_cfg) -> dict:
    """``{"data.train_sha1": SHA-1 of the training manifest's bytes}`` (empty without a manifest file): stored with
    every checkpoint and in ``summary.json``, so that a resume refuses, and a recipe can tell, a manifest prepared
    again since (other channel draws, other packs) under the same path. The manifest names every audio file and
    each derived line records its draw, so its bytes stand for the data."""
    path = getattr(data_cfg, "train", None)
    if not path or not Path(path).is_file():
        return {}
    from ..digest import file_sha1

    return {"data.train_sha1": file_sha1(path)}


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out_dir: str | Path, data_cfg=None, log=info):
        self.task, self.cfg, self.out_dir = task, cfg, Path(out_dir)
        self.data_cfg = data_cfg
        self.dist, self.device = setup_distributed(cfg.device)
        self.runlog = RunLog(self.out_dir, self.dist.main, log, cfg.tensorboard)
        self.log_fn = self.runlog.say
        self.amp, self.amp_dtype, needs_scaler = amp_settings(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        self.model = task.model.to(self.device)
        self.plan = task.plan
        self.optimizer = torch.optim.AdamW(self._groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.state = TrainState()
        self.cache, self.cache_reason = self._make_cache()
        self.train_fingerprint = manifest_fingerprint(data_cfg)
        speed = data_cfg.speed_perturb if data_cfg is not None else None
        self.items = TrainingItems(task.train_set, cfg.seed, speed)
        self.ddp_model: nn.Module | None = None
        self.last_eval_step: int | None = None
        self.rejected: dict[int, str] = {}  # training utterances left out for unusable audio: index -> reason
        self._rejected_file = self.rejected_path

    @property
    def step(self) -> int:
        return self.state.step

    # ------------------------------------------------------------------ set-up helpers
    def _groups(self) -> list[dict]:
        groups = self.plan.param_groups(self.cfg.lr, self.task.head)
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

    def _frames_per_second(self) -> float:
        """Frames per second at the frozen boundary, measured on one second of silence."""
        backbone = self.task.model.backbone
        device = next(backbone.parameters()).device  # already moved to the training device
        with torch.no_grad():
            _, lengths = backbone.embed(torch.zeros(1, 16000, device=device), torch.tensor([16000], device=device))
        return float(lengths[0])

    def _make_cache(self) -> tuple[PrefixCache | None, str]:
        mode = self.cfg.prefix_cache
        if mode == "off":
            return None, "train.prefix_cache=off"
        if not self.plan.prefix_is_frozen():
            return None, "nothing is frozen below the trainable layers"
        reason = self.task.input_varies or self._augmenting()
        if reason:
            return None, reason
        durations, fps = self.task.train_set.durations, self._frames_per_second()
        pad = getattr(self.task.model.backbone, "pad_seconds", None)
        if pad:  # every input is padded to pad seconds (a Whisper decoder model): that many frames each
            durations, fps = [max(d, pad) for d in durations], fps / pad
        size = estimate_bytes(durations, fps, self.task.model.backbone.output_dim)
        if mode == "auto":
            mode = "memory" if size < 4 * 2**30 else "disk"
        cache = PrefixCache(mode, self.out_dir / "prefix_cache")
        return cache, f"{mode}, frozen depth {self.plan.depth}, {cache.check_space(size)}"

    def _wrapped(self) -> nn.Module:
        if self.dist.world_size == 1:
            return self.model
        if self.ddp_model is None:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DDP(self.model, device_ids=ids)
        return self.ddp_model

    # ------------------------------------------------------------------ checkpoints
    def _meta(self, metrics: dict | None = None) -> dict:
        s = self.state
        return {"task": self.task.name, "step": s.step, "epoch": s.epoch, "elapsed_s": round(s.elapsed, 1),
                "backbone": self.task.model.backbone.source,
                "backbone_arch": self.task.model.backbone.arch(), "metrics": metrics or {},
                "freeze": self.plan.summary(self.task.head), "freeze_state": self.plan.state(self.task.head)}

    def save(self, name: str, metrics: dict | None = None, resumable: bool = True) -> None:
        if not self.dist.main:
            return
        files = {"model.pt": self.task.model_state(), "meta.json": self._meta(metrics),
                 **self.task.checkpoint_files()}
        if resumable:
            files["optimizer.pt"] = self.optimizer.state_dict()
            files["state.pt"] = self.state.to_dict()
            if self.task.cfg is not None:
                files["settings.json"] = self._settings()
            if self.scaler is not None:
                files["scaler.pt"] = self.scaler.state_dict()
        save_checkpoint(self.out_dir / name, files)

    def try_resume(self) -> bool:
        """Restore the newest readable checkpoint of ``out_dir``: ``checkpoint/``, else the ``.old`` copy a
        kill inside a save left (also when a file of ``checkpoint/`` is truncated or corrupt)."""
        candidates = [c for c in checkpoint_candidates(self.out_dir / "checkpoint") if (c / "state.pt").is_file()]
        if not candidates or not self.cfg.resume:
            return False
        self._check_settings(candidates[0])
        problems = []
        for found in candidates:
            try:
                loaded = {name: load_tensors(found / f"{name}.pt") for name in ("model", "optimizer", "state")
                          + (("scaler",) if self.scaler is not None and (found / "scaler.pt").is_file() else ())}
            except (CheckpointError, FileNotFoundError) as e:
                problems.append(str(e))
                self.log_fn(f"warning: {e}" + ("; trying the previous copy" if found is not candidates[-1] else ""))
                continue
            self.task.load_model_state(loaded["model"], found)
            self.optimizer.load_state_dict(loaded["optimizer"])
            if "scaler" in loaded:
                self.scaler.load_state_dict(loaded["scaler"])
            self.state = TrainState.from_dict(loaded["state"])
            self.plan.apply(self.state.step)
            s = self.state
            self.log_fn(f"resuming from step {s.step} (epoch {s.epoch}, batch {s.position}, "
                        f"{s.elapsed / 60:.1f} min trained)" + (f" from {found.name}" if found.name.endswith(".old")
                                                                 else ""))
            return True
        raise CheckpointError(f"{self.out_dir}: no readable checkpoint to resume ({'; '.join(problems)}). Move the "
                              "folder away to keep it, then start over with train.resume=false (and --overwrite)")

    def _settings(self) -> dict:
        """The settings a resume must not change: the config's (:func:`run_settings`) and the training manifest's
        content (``data.train_sha1``), since a re-prepared manifest under the same name puts other utterances
        behind the batch positions a checkpoint stores."""
        return {**run_settings(self.task.cfg), **self.train_fingerprint}

    def _check_settings(self, found: Path) -> None:
        """Refuse to resume a checkpoint trained with other settings (``train.resume=force`` goes on anyway)."""
        if self.task.cfg is None or not (found / "settings.json").is_file():
            return  # a checkpoint written before settings were stored
        old = json.loads((found / "settings.json").read_text(encoding="utf-8"))
        new = json.loads(json.dumps(self._settings()))  # the same JSON round trip as the stored ones
        try:  # a setting added to the config since the checkpoint was written, at its default, is no change
            defaults = json.loads(json.dumps(run_settings(type(self.task.cfg)())))
        except (TypeError, ValueError):
            defaults = {}
        added = {k for k in set(new) - set(old)  # stored before the key existed: a fingerprint, or a default
                 if k in self.train_fingerprint or (k in defaults and new[k] == defaults[k])}
        changed = [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
                   for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k not in added]
        if not changed:
            return
        if self.cfg.resume == "force":
            self.log_fn(f"train.resume=force: resuming {found} with changed settings: " + "; ".join(changed))
            return
        if any(c.startswith("data.train_sha1") for c in changed):  # force would replay the stored batch positions
            raise ConfigError(                                       # over other utterances: not offered
                f"{self.out_dir} holds a run trained on another training manifest: the content of "
                f"{getattr(self.data_cfg, 'train', 'data.train')} differs from the one its checkpoint was trained on "
                f"({'; '.join(changed)}). Start over with train.resume=false (and --overwrite), or use a new out_dir")
        raise ConfigError(f"{self.out_dir} holds a run trained with other settings ({'; '.join(changed)}). Resuming "
                          "would restore the old optimizer state under the new settings: use a new out_dir, set "
                          "train.resume=false to start over there, or train.resume=force to go on anyway")

    # ------------------------------------------------------------------ limits
    def progress(self, steps_per_epoch: int) -> float:
        c, s = self.cfg, self.state
        parts = []
        if c.max_steps:
            parts.append(s.step / c.max_steps)
        if c.max_minutes:
            parts.append(s.elapsed / (60 * c.max_minutes))
        if c.max_epochs:
            parts.append(s.step / max(1, c.max_epochs * steps_per_epoch))
        return max(parts) if parts else 0.0

    def done(self, steps_per_epoch: int) -> bool:
        stop = self.progress(steps_per_epoch) >= 1.0
        if self.dist.world_size > 1:  # all ranks stop together (rank 0's clock decides)
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    # ------------------------------------------------------------------ one step
    def _waves(self, indices: list[int], epoch: int, loaded: dict | None) -> list[torch.Tensor]:
        """Waveforms ``(T_i,)`` (host memory) for ``indices``: from the loader's batch where it has them,
        else loaded here (a batch the loader prefetched before a gradual-unfreezing step emptied the cache)."""
        rows = {int(i): r for r, i in enumerate(loaded["index"])} if loaded is not None else {}
        return [loaded["wave"][rows[i], : int(loaded["lengths"][rows[i]])] if i in rows else self._load(i, epoch)
                for i in indices]

    def _load(self, i: int, epoch: int) -> torch.Tensor:
        wave, _, rejection = self.items[(i, epoch)]
        if rejection is not None:  # only audio that passed its check reaches here (it was cached before)
            raise InputError(f"{rejection} (it passed the check when first loaded; has the file changed?)")
        return wave

    # ------------------------------------------------------------------ audio that fails its checks
    @property
    def rejected_path(self) -> Path:
        return self.out_dir / "rejected_train_audio.jsonl"

    def _start_rejections(self, resumed: bool) -> None:
        """A resumed run knows the utterances left out before (from the list); a new run starts a new list."""
        self.rejected = {}
        path = self.rejected_path if self.dist.world_size == 1 else self.rejected_path.with_suffix(
            f".rank{self.dist.rank}.jsonl")
        self._rejected_file = path
        if not resumed:
            path.unlink(missing_ok=True)
            return
        if path.is_file():
            by_id = {u.id: i for i, u in enumerate(self.task.train_set.utterances)}
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.rejected[by_id[rec["id"]]] = rec["reason"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line a kill cut short: the check finds the utterance again

    def _note_rejections(self, rejected: list[tuple[int, str]]) -> None:
        """Leave out utterances whose audio failed its check: logged once, listed in rejected_train_audio.jsonl."""
        for index, reason in rejected:
            if index in self.rejected:
                continue
            self.rejected[index] = reason
            u = self.task.train_set.utterances[index]
            self.log_fn(f"warning: left out of training: {reason} (utterance {u.id})")
            with open(self._rejected_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({**u.to_dict(), "reason": reason}, ensure_ascii=False) + "\n")

    def _all_ranks_have(self, n: int) -> bool:
        """Whether every rank's batch still holds utterances (all ranks skip the step together if not)."""
        ok = torch.tensor([1.0 if n else 0.0], device=self.device)
        if self.dist.world_size > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item())

    def _batch(self, indices: list[int], epoch: int, loaded: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded waves ``(B, T)`` and lengths ``(B,)``: the loader's batch as it is when it holds exactly
        ``indices``, else assembled."""
        if loaded is not None and loaded["index"].tolist() == list(indices):
            return (loaded["wave"].to(self.device, non_blocking=True),
                    loaded["lengths"].to(self.device, non_blocking=True))
        batch = collate(list(zip(self._waves(indices, epoch, loaded), indices, strict=True)))
        return batch["wave"].to(self.device), batch["lengths"].to(self.device)

    def _batch_output(self, model: nn.Module, indices: list[int], epoch: int, loaded: dict | None = None):
        depth = self.plan.depth if self.plan.prefix_is_frozen() else None
        with self._autocast():  # a task's teacher forward runs at the student's precision (bf16 on such a CPU)
            extra = self.task.model_inputs(indices)
        masking = self.data_cfg is not None and self.data_cfg.hidden_augment
        if self.cache is not None:
            self.cache.reset(depth)

            def compute(missing: list[int]) -> list[torch.Tensor]:  # values independent of the batch
                def run(wave, lengths):
                    return self.model.backbone.forward_to(depth, wave, lengths)

                with torch.no_grad(), self._autocast():
                    waves = [w.to(self.device, non_blocking=True) for w in self._waves(missing, epoch, loaded)]
                    return prefix_outputs(run, waves, int(16000 * BUCKET_SECONDS), FILL_ROWS.get(self.device.type, 4))

            hidden, lengths = self.cache.batch(indices, compute, self.device)
        elif masking and depth is not None:
            wave, lengths = self._batch(indices, epoch, loaded)
            with torch.no_grad(), self._autocast():
                hidden, lengths = self.model.backbone.forward_to(depth, wave, lengths)
        else:
            if masking:
                raise ConfigError("data.hidden_* masks the output of the frozen prefix, but nothing is frozen; "
                                 "freeze at least the frontend (freeze.mode=bottom) or use data.spec_augment")
            wave, lengths = self._batch(indices, epoch, loaded)
            with self._autocast():
                return model(wave=wave, lengths=lengths, frozen_depth=depth, **extra)
        if masking:
            generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.state.step)
            hidden = hidden_augment(hidden, lengths, self.data_cfg, generator)
        with self._autocast():
            return model(hidden=hidden, lengths=lengths, frozen_depth=depth, **extra)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def _set_lr(self, steps_per_epoch: int) -> float:
        f = lr_factor(self.state.step, self.progress(steps_per_epoch), self.cfg.warmup_steps, self.cfg.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return self.cfg.lr * f

    def train_step(self, batches: list[int] | list[list[int]], steps_per_epoch: int,
                   loaded: list[dict] | None = None) -> float:
        """One optimizer step over ``batches`` (one batch of indices, or several to accumulate), with the
        loader's batches ``loaded`` when there are. Returns the mean loss."""
        micro = [batches] if batches and isinstance(batches[0], int) else batches
        loaded = loaded or [None] * len(micro)
        model = self._wrapped()
        model.train()
        self.plan.restore_eval()
        lr = self._set_lr(steps_per_epoch)
        self.task.set_progress(self.progress(steps_per_epoch))
        self.optimizer.zero_grad(set_to_none=True)
        total, finite, empty = 0.0, True, False
        for k, (indices, batch) in enumerate(zip(micro, loaded, strict=True)):
            if batch is not None:
                self._note_rejections(batch.get("rejected", []))
            indices = [i for i in indices if i not in self.rejected]
            if not self._all_ranks_have(len(indices)):
                empty = True
                break
            last = k == len(micro) - 1
            sync = model.no_sync() if (self.ddp_model is not None and not last) else _nullcontext()
            with sync:
                self.model.backbone.augmenting = True
                try:
                    output = self._batch_output(model, indices, self.state.epoch, batch)
                finally:
                    self.model.backbone.augmenting = False
                loss = self.task.loss(output, torch.tensor(indices)) / len(micro)
                finite = self._finite(loss)
                if not finite:  # every rank skips the step together (DDP needs all or none)
                    self.log_fn(f"step {self.state.step + 1}: non-finite loss ({float(loss.detach())}), step "
                                f"skipped; utterances {[self.task.train_set.utterances[i].id for i in indices][:8]}")
                    break
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            total += float(loss.detach())
        if finite and not empty:
            self._optimizer_step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            if empty:
                self.log_fn(f"step {self.state.step + 1}: no utterance of the batch has usable audio; step skipped")
                self.state.empty_steps += 1
            else:
                self.state.nonfinite_steps += 1
            total = float("nan")
        self.state.step += 1
        if self.plan.apply(self.state.step):  # gradual unfreezing moved the boundary
            self.log_fn(self.plan.summary(self.task.head))
            self.ddp_model = None
        self._last_lr = lr
        return total

    def _optimizer_step(self) -> None:
        """Clip the accumulated gradients and update (through the loss scaler under fp16)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        if self.cfg.grad_clip and params:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _finite(self, loss: torch.Tensor) -> bool:
        ok = torch.isfinite(loss.detach()).all().float().reshape(1)
        if self.dist.world_size > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item())

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

    def _eval_and_keep_best(self) -> dict:
        s = self.state
        self.last_eval_step = s.step  # the same on every rank: evaluation has a barrier
        metrics = self.evaluate()
        if self.dist.main and metrics:
            value = metrics.get(self.task.primary_metric)
            second = self.task.secondary_metric
            if value is not None and second in metrics:  # ties (e.g. WER 1.0 early on) go to the secondary metric
                value = value + 1e-6 * float(metrics[second])
            self.runlog.record({"step": s.step, "elapsed_s": round(s.elapsed, 1),
                                **{f"dev_{k}": v for k, v in metrics.items() if isinstance(v, float)}})
            improved = value is not None and (s.best is None or value < s.best)
            if improved:
                s.best, s.best_step = value, s.step
                self.save("best", metrics, resumable=False)
            self.log_fn(f"step {s.step}: dev " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                        if isinstance(v, float))
                        + (" (best)" if improved else f" (best {s.best:.4f} at step {s.best_step})"))
        return metrics

    # ------------------------------------------------------------------ run
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        return shard_batches(duration_batches(self.task.train_set.durations, self.data_batch_seconds(),
                                              self.max_batch(), self.cfg.seed, epoch),
                             self.dist.rank, self.dist.world_size)

    def run(self, stop_at_step: int | None = None, before_start=None) -> dict:
        """Train until a limit is reached. ``stop_at_step`` pauses early as a kill would (after the
        checkpoint of that step, no final evaluation); a later run resumes from there. ``before_start``: called
        first, the task and its data being ready (e.g. ``--overwrite`` removing a previous run's outputs)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if before_start is not None:
            before_start()
        if self.dist.world_size > 1:  # every rank sees out_dir as rank 0 left it
            dist.barrier()
        seed_everything(self.cfg.seed + self.dist.rank)
        resumed = self.try_resume()  # decides (or refuses) before anything in out_dir is replaced
        if self.dist.main and self.task.cfg is not None:
            from ..config import dump_config

            dump_config(self.task.cfg, self.out_dir / "config.yaml")
        self.runlog.start(self.state.step if resumed else None)
        self._start_rejections(resumed)
        try:
            return self._run(stop_at_step)
        finally:
            self.runlog.close()
            if self.cache is not None:
                self.cache.close()

    def _run(self, stop_at_step: int | None) -> dict:
        s = self.state
        head = self.task.head
        self.log_fn(self.plan.summary(head))
        self.log_fn(f"device {self.device}" + (f", AMP {self.amp_dtype}" if self.amp else ", AMP off")
                    + (" (train.amp=bf16, but this CPU has no native bfloat16: AVX512-BF16 or AMX)"
                       if self.cfg.amp == "bf16" and not self.amp and self.device.type == "cpu" else "")
                    + (f", DDP x{self.dist.world_size}" if self.dist.world_size > 1 else "")
                    + f", {self.cfg.num_workers} loader worker(s)"
                    + (f", {self.cfg.accumulate} batches per step" if self.cfg.accumulate > 1 else ""))
        cache = f"on, {self.cache_reason}" if self.cache is not None else f"off ({self.cache_reason})"
        self.log_fn(f"prefix cache: {cache}")
        durations = self.task.train_set.durations
        n_batches = len(self._epoch_batches(0))
        steps_per_epoch = math.ceil(n_batches / self.cfg.accumulate)
        plan = BatchPlan()
        loader = make_loader(self.items, plan, self.cfg.num_workers, pin_memory=self.device.type == "cuda")
        needs_audio = (lambda i: i not in self.cache) if self.cache is not None else None
        window = {"loss": 0.0, "n": 0, "utts": 0, "audio": 0.0, "t": time.time()}
        metrics: dict = {}
        start_file = self.out_dir / "start_dev.json"
        if self.cfg.eval_at_start and s.step == 0:  # not counted in the training budget: nothing trains
            metrics = self._eval_and_keep_best()
            if self.dist.main:
                from ..atomic import atomic_write_text

                # nested: a results file (a top-level "wer") would be read by `speech-tl report` as an evaluation
                atomic_write_text(start_file, json.dumps({"before_first_step": metrics}, indent=1))
        while not self.done(steps_per_epoch):
            batches = self._epoch_batches(s.epoch)
            plan.set(batches[s.position:], s.epoch, needs_audio)
            stream = iter(loader)
            while s.position < len(batches) and not self.done(steps_per_epoch):
                t0 = time.time()
                group = batches[s.position:s.position + self.cfg.accumulate]
                loaded = [next(stream) for _ in group]
                loss = self.train_step(group, steps_per_epoch, loaded)
                s.position += len(group)
                s.elapsed += time.time() - t0
                window["loss"] += loss
                window["n"] += 1
                window["utts"] += sum(len(b) for b in group)
                window["audio"] += sum(durations[i] for b in group for i in b)
                if s.step % self.cfg.log_every == 0:
                    dt = max(1e-9, time.time() - window["t"])
                    rec = {"step": s.step, "epoch": s.epoch, "loss": window["loss"] / window["n"],
                           "lr": self._last_lr, "utt_per_s": window["utts"] / dt,
                           "audio_s_per_s": window["audio"] / dt, "memory_mb": memory_mb(self.device),
                           "elapsed_s": round(s.elapsed, 1)}
                    self.runlog.record(rec)
                    self.log_fn(f"step {rec['step']:>6} epoch {rec['epoch']:>3} loss {rec['loss']:8.4f} "
                                f"lr {rec['lr']:.2e} {rec['utt_per_s']:6.1f} utt/s "
                                f"{rec['memory_mb']:7.0f} MB {s.elapsed / 60:6.2f} min")
                    window = {"loss": 0.0, "n": 0, "utts": 0, "audio": 0.0, "t": time.time()}
                t_eval = time.time()
                if self.cfg.eval_every and s.step % self.cfg.eval_every == 0:
                    metrics = self._eval_and_keep_best()
                    s.elapsed += time.time() - t_eval
                if self.cfg.checkpoint_every and s.step % self.cfg.checkpoint_every == 0:
                    self.save("checkpoint")
                if stop_at_step is not None and s.step >= stop_at_step:
                    if s.position >= len(batches):
                        s.epoch, s.position = s.epoch + 1, 0
                    self.save("checkpoint")
                    return {"stopped_at_step": s.step}
            if s.position >= len(batches):
                s.epoch += 1
                s.position = 0
        t_eval = time.time()
        if self.last_eval_step != s.step:
            metrics = self._eval_and_keep_best()
        s.elapsed += time.time() - t_eval
        self.save("checkpoint", metrics)
        summary = {"steps": s.step, "epochs": s.epoch + s.position / max(1, n_batches),
                   "train_minutes": round(s.elapsed / 60, 3), "best_step": s.best_step,
                   f"best_dev_{self.task.primary_metric}": s.best, "last_dev": metrics,
                   "trainable_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                   "total_parameters": sum(p.numel() for p in self.model.parameters()),
                   "freeze": self.plan.summary(head), "freeze_state": self.plan.state(head),
                   "backbone": self.task.model.backbone.source,
                   "prefix_cache": self.cache_reason if self.cache is not None else f"off ({self.cache_reason})",
                   "nonfinite_steps": s.nonfinite_steps, "empty_steps": s.empty_steps,
                   "rejected_audio": len(self.rejected),
                   "train_manifest_sha1": self.train_fingerprint.get("data.train_sha1"), **self.task.report()}
        best_meta = self.out_dir / "best" / "meta.json"
        if best_meta.is_file():  # every dev metric of the checkpoint kept (reports rank ASR runs by WER, say)
            kept = json.loads(best_meta.read_text(encoding="utf-8")).get("metrics") or {}
            summary.update({f"best_dev_{k}": v for k, v in kept.items()
                            if isinstance(v, float) and f"best_dev_{k}" not in summary})
        if self.cfg.eval_at_start and start_file.is_file():
            summary["start_dev"] = json.loads(start_file.read_text(encoding="utf-8"))["before_first_step"]
            summary["best_is_start"] = s.best_step == 0
        if s.nonfinite_steps:
            self.log_fn(f"{s.nonfinite_steps} step(s) skipped for a non-finite loss")
        if self.rejected:
            self.log_fn(f"{len(self.rejected)} training utterance(s) left out for unusable audio, listed in "
                        f"{self._rejected_file}")
        if summary.get("ctc_zeroed_utterances"):
            self.log_fn(f"{summary['ctc_zeroed_utterances']} training utterance(s) have a transcript too long for "
                        f"their audio: CTC taught nothing from them (e.g. {summary['ctc_zeroed_ids'][:3]})")
        if self.dist.main:
            from ..atomic import atomic_write_text

            atomic_write_text(self.out_dir / "summary.json", json.dumps(summary, indent=1))
        return summary

    def data_batch_seconds(self) -> float:
        return self.data_cfg.batch_seconds if self.data_cfg is not None else 120.0

    def max_batch(self) -> int:
        return self.data_cfg.max_batch_size if self.data_cfg is not None else 64
