"""Where a run executes: the process group under ``torchrun``, the device, AMP settings, peak memory."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
        from ..device import DeviceError

        raise DeviceError("train.device=cuda but this machine has no CUDA device; use train.device=auto or cpu")
    info = Dist()
    if world > 1:
        info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        return info, torch.device("cuda", info.local_rank)
    return info, torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX-BF16, Linux's /proc/cpuinfo): there bf16
    autocast about halves a Whisper encoder's training step (measured 3.9 s -> 1.9 s, forward and backward of the top
    3 of Whisper base's 6 blocks, 4 x 30 s, 2 cores of an AMD EPYC); elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def amp_settings(pref: str, device: torch.device) -> tuple[bool, torch.dtype | None, bool]:
    """(enabled, dtype, needs GradScaler). On a CPU only an explicit ``bf16`` turns it on, and only where the CPU
    has native bfloat16 (:func:`cpu_has_native_bf16`)."""
    if device.type == "cpu" and pref == "bf16" and cpu_has_native_bf16():
        return True, torch.bfloat16, False
    if device.type != "cuda" or pref == "off":
        return False, None, False
    if pref == "bf16" or (pref == "auto" and torch.cuda.is_bf16_supported()):
        return True, torch.bfloat16, False
    return True, torch.float16, True


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
