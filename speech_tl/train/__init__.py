"""The one training loop, shared by every task (ASR, speaker, multitask).

A task (a subclass of :class:`Task`) supplies the model, the loss of a batch and the dev
evaluation; this loop does the rest: AdamW with warmup then cosine decay, gradient
clipping, gradient accumulation, AMP on CUDA (bf16 where supported, else fp16 with loss
scaling), duration-bucketed batches loaded by a :class:`torch.utils.data.DataLoader` with
worker processes (:mod:`speech_tl.loader`), the frozen-prefix cache, dev evaluation every N
steps with the best checkpoint kept, limits in steps, epochs and minutes, atomic checkpoints
with exact resume, a JSON-lines log (and TensorBoard events when ``tensorboard`` is
installed), and DDP under ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Its parts, one module each: :mod:`.config` (:class:`TrainConfig`, the settings a resume compares),
:mod:`.task` (the :class:`Task` base), :mod:`.state` (:class:`TrainState`, what a checkpoint restores),
:mod:`.runlog` (:class:`RunLog`, where records go), :mod:`.distributed` (process group, device, AMP) and
:mod:`.trainer` (:class:`Trainer`, the loop).
"""

from .config import RESUMABLE_SETTINGS, TrainConfig, run_settings
from .distributed import Dist, amp_settings, is_main_process, memory_mb, setup_distributed
from .runlog import RunLog
from .state import TrainState, rng_state, seed_everything, set_rng_state
from .task import Task
from .trainer import BUCKET_SECONDS, FILL_ROWS, Trainer, lr_factor

__all__ = ["BUCKET_SECONDS", "FILL_ROWS", "RESUMABLE_SETTINGS", "Dist", "RunLog", "Task", "TrainConfig", "TrainState",
           "Trainer", "amp_settings", "is_main_process", "lr_factor", "memory_mb", "rng_state", "run_settings",
           "seed_everything", "set_rng_state", "setup_distributed"]
