"""Cache of the frozen prefix's output, so later epochs run only the trainable layers.

When the frontend and the bottom ``k`` layers are frozen and the input is not augmented, each
utterance's hidden states at the top of the prefix never change: they are computed once and kept in
memory or on disk (float16).

**Values that do not depend on the batch.** A padded batch changes the last bits of an utterance's
values with the batch's composition (attention and convolutions sum over a different length), enough to
flip float16 roundings; an utterance that first arrives in another batch after a resume would then get
other values and resumed training would not be exact. So :func:`prefix_outputs` pads every utterance to
a length that depends on the utterance alone (its duration rounded up to ``bucket_seconds``) and batches
only utterances of the same padded length, always in batches of the same number of rows: on a CPU each row
then gets bit for bit what it gets alone (``tests/test_prefix_cache.py`` checks it on Whisper tiny.en), and
the cache fills in batches.

**Disk mode** appends entries to shard files of up to ``shard_bytes`` (``shard-00000.bin``, ...) with
the index in memory, instead of one file per utterance: a corpus of a million utterances is a few
hundred files. The cache lives for one process (it is emptied when a run starts or the frozen depth
changes), so the index needs no file of its own. :func:`estimate_bytes` says up front how much space it
will take.

Shapes: one entry is ``(T'_i, D)``; a batch comes back padded as ``(B, max T', D)``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .errors import SpeechTlError


def estimate_bytes(durations: list[float], frames_per_second: float, dim: int, dtype=torch.float16) -> int:
    """Bytes the cache will hold for utterances of ``durations`` seconds."""
    frames = sum(math.ceil(d * frames_per_second) for d in durations)
    return frames * dim * torch.tensor([], dtype=dtype).element_size()


def bucket_length(samples: int, bucket_samples: int) -> int:
    """The padded length an utterance of ``samples`` is computed at: rounded up to a multiple of the bucket."""
    return max(1, math.ceil(samples / bucket_samples)) * bucket_samples


def prefix_outputs(run: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   waves: list[torch.Tensor], bucket_samples: int, rows: int = 8) -> list[torch.Tensor]:
    """The frozen prefix on each of ``waves`` (``(T_i,)``), batched by padded length.

    ``run(wave (B, T), lengths (B,)) -> (hidden (B, T', D), out_lengths (B,))`` is the prefix. Every
    utterance is zero-padded to :func:`bucket_length` and only utterances of the same padded length share
    a forward pass of exactly ``rows`` rows (spare rows are copies), so an utterance's values depend on it
    alone, not on what else is in the batch or where: on CPUs (oneDNN) another batch shape takes other kernels,
    whose last bits differ, while within one shape each row's values do not depend on the other rows.
    Returns ``(T'_i, D)`` per input, in order.
    """
    out: list[torch.Tensor | None] = [None] * len(waves)
    groups: dict[int, list[int]] = {}
    for j, w in enumerate(waves):
        groups.setdefault(bucket_length(w.numel(), bucket_samples), []).append(j)
    for length, members in sorted(groups.items()):
        for start in range(0, len(members), rows):
            chunk = members[start:start + rows]
            # always exactly `rows` rows (the spare ones copies): other batch shapes take other kernels
            full = chunk + [chunk[0]] * (rows - len(chunk))
            batch = waves[chunk[0]].new_zeros(rows, length)
            for row, j in enumerate(full):
                batch[row, : waves[j].numel()] = waves[j]
            lengths = torch.tensor([waves[j].numel() for j in full], device=batch.device)
            hidden, out_lengths = run(batch, lengths)
            for row, j in enumerate(chunk):
                out[j] = hidden[row, : int(out_lengths[row])]
    return out  # type: ignore[return-value]


class _Shards:
    """Append-only shard files; entry ``index`` -> (shard, byte offset, frames)."""

    def __init__(self, folder: Path, dim_dtype: np.dtype, shard_bytes: int):
        self.folder, self.np_dtype, self.shard_bytes = folder, dim_dtype, shard_bytes
        self.where: dict[int, tuple[int, int, int, int]] = {}
        self.shard, self.size = 0, 0
        self._writer = None

    def clear(self) -> None:
        self.close()
        self.where.clear()
        self.shard, self.size = 0, 0
        if self.folder.is_dir():
            for f in list(self.folder.glob("shard-*.bin")) + list(self.folder.glob("*.pt")):  # *.pt: older layout
                f.unlink()

    def _path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.bin"

    def put(self, index: int, value: np.ndarray) -> None:
        data = np.ascontiguousarray(value).tobytes()
        if self._writer is not None and self.size and self.size + len(data) > self.shard_bytes:
            self.close()
            self.shard, self.size = self.shard + 1, 0
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._writer = open(self._path(self.shard), "ab")  # noqa: SIM115 (kept open while the shard fills)
            self.size = self._writer.tell()
        self._writer.write(data)
        self._writer.flush()
        self.where[index] = (self.shard, self.size, value.shape[0], value.shape[1])
        self.size += len(data)

    def get(self, index: int) -> np.ndarray:
        shard, offset, frames, dim = self.where[index]
        with open(self._path(shard), "rb") as f:
            f.seek(offset)
            data = f.read(frames * dim * self.np_dtype.itemsize)
        return np.frombuffer(data, dtype=self.np_dtype).reshape(frames, dim)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class CacheSpaceError(SpeechTlError, OSError):
    """A disk prefix cache would not fit on its disk."""


class PrefixCache:
    """Frozen-prefix outputs by utterance index, for one frozen depth."""

    def __init__(self, mode: str = "memory", folder: str | Path | None = None, dtype=torch.float16,
                 shard_bytes: int = 2**30):
        if mode not in ("memory", "disk"):
            raise ValueError(f"prefix cache mode must be 'memory' or 'disk', got {mode!r}")
        if mode == "disk" and folder is None:
            raise ValueError("a disk prefix cache needs a folder")
        self.mode = mode
        self.folder = Path(folder) if folder else None
        self.dtype = dtype
        self.depth: int | None = None
        self._memory: dict[int, torch.Tensor] = {}
        self._shards = _Shards(self.folder, np.dtype(str(dtype).removeprefix("torch.")), shard_bytes) \
            if mode == "disk" else None
        self.hits = 0
        self.misses = 0

    def reset(self, depth: int) -> None:
        """Forget everything if the frozen depth changed (gradual unfreezing) or nothing is known yet."""
        if depth != self.depth:
            self._memory.clear()
            if self._shards is not None:
                self._shards.clear()
            self.depth = depth

    def __contains__(self, index: int) -> bool:
        return index in (self._memory if self.mode == "memory" else self._shards.where)

    def __len__(self) -> int:
        return len(self._memory) if self.mode == "memory" else len(self._shards.where)

    def check_space(self, needed: int) -> str:
        """A line that says how much the cache will take; for disk mode, an error if the disk lacks room."""
        if self.mode == "memory":
            return f"about {needed / 2**30:.2f} GiB in memory"
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if needed > free:
            raise CacheSpaceError(f"the prefix cache needs about {needed / 2**30:.1f} GiB in {self.folder}, but only "
                                  f"{free / 2**30:.1f} GiB are free: free space there, put out_dir on a larger disk, "
                                  "or set train.prefix_cache=off (the frozen prefix then runs every step)")
        return f"about {needed / 2**30:.2f} GiB on disk in {self.folder} ({free / 2**30:.0f} GiB free)"

    def put(self, index: int, hidden: torch.Tensor) -> None:
        value = hidden.detach().to("cpu", self.dtype).contiguous()
        if self.mode == "memory":
            self._memory[index] = value
        else:
            self._shards.put(index, value.numpy())

    def get(self, index: int) -> torch.Tensor:
        if self.mode == "memory":
            return self._memory[index]
        return torch.from_numpy(self._shards.get(index).copy())

    def batch(self, indices: list[int], compute: Callable[[list[int]], list[torch.Tensor]],
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Padded hidden states ``(B, T', D)`` and lengths ``(B,)`` for ``indices``.

        ``compute(missing) -> [(T', D), ...]`` runs the frozen prefix on the utterances not cached yet.
        """
        missing = [i for i in indices if i not in self]
        self.misses += len(missing)
        self.hits += len(indices) - len(missing)
        if missing:
            for i, hidden in zip(missing, compute(missing), strict=True):
                self.put(i, hidden)
        items = [self.get(i) for i in indices]
        lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1], dtype=torch.float32)
        for j, t in enumerate(items):
            out[j, : t.shape[0]] = t.float()
        return out.to(device), lengths.to(device)

    def close(self) -> None:
        if self._shards is not None:
            self._shards.close()
