"""Cache of the frozen prefix's output, so later epochs run only the trainable layers.

When the frontend and the bottom ``k`` layers are frozen and the input is not augmented,
each utterance's hidden states at the top of the prefix never change: they are computed
once, for each utterance on its own, and kept in memory (float16) or on disk (one ``.pt``
file per utterance). On its own, not in the padded training batch: a padded batch changes
the last bits of the values with its composition (enough to flip float16 roundings), and
an utterance that first arrives in another batch after a resume would then get other
values, so resumed training would not be exact. The cost: the filling epoch runs the
prefix without batching (``benchmarks/asr_training_speed.py`` reports that epoch).

Shapes: one entry is ``(T'_i, D)``; a batch comes back padded as ``(B, max T', D)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class PrefixCache:
    """Frozen-prefix outputs by utterance index, for one frozen depth."""

    def __init__(self, mode: str = "memory", folder: str | Path | None = None, dtype=torch.float16):
        if mode not in ("memory", "disk"):
            raise ValueError(f"prefix cache mode must be 'memory' or 'disk', got {mode!r}")
        if mode == "disk" and folder is None:
            raise ValueError("a disk prefix cache needs a folder")
        self.mode = mode
        self.folder = Path(folder) if folder else None
        self.dtype = dtype
        self.depth: int | None = None
        self._memory: dict[int, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def reset(self, depth: int) -> None:
        """Forget everything if the frozen depth changed (gradual unfreezing)."""
        if depth != self.depth:
            self._memory.clear()
            if self.folder is not None and self.folder.is_dir():
                for f in self.folder.glob("*.pt"):
                    f.unlink()
            self.depth = depth

    def __contains__(self, index: int) -> bool:
        if self.mode == "memory":
            return index in self._memory
        return self._path(index).is_file()

    def __len__(self) -> int:
        return len(self._memory) if self.mode == "memory" else len(list(self.folder.glob("*.pt")))

    def _path(self, index: int) -> Path:
        return self.folder / f"{index}.pt"

    def put(self, index: int, hidden: torch.Tensor) -> None:
        value = hidden.detach().to("cpu", self.dtype).contiguous()
        if self.mode == "memory":
            self._memory[index] = value
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self._path(index).with_suffix(f".tmp{os.getpid()}")
            torch.save(value.clone(), tmp)
            os.replace(tmp, self._path(index))

    def get(self, index: int) -> torch.Tensor:
        if self.mode == "memory":
            return self._memory[index]
        return torch.load(self._path(index), weights_only=True)

    def batch(self, indices: list[int], compute, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded hidden states ``(B, T', D)`` and lengths ``(B,)`` for ``indices``.

        ``compute(index) -> (T', D)`` runs the frozen prefix on one utterance not cached yet.
        """
        missing = [i for i in indices if i not in self]
        self.misses += len(missing)
        self.hits += len(indices) - len(missing)
        for i in missing:
            self.put(i, compute(i))
        items = [self.get(i) for i in indices]
        lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1], dtype=torch.float32)
        for j, t in enumerate(items):
            out[j, : t.shape[0]] = t.float()
        return out.to(device), lengths.to(device)

    def bytes_estimate(self, num_frames: int, dim: int) -> int:
        return num_frames * dim * torch.tensor([], dtype=self.dtype).element_size()
