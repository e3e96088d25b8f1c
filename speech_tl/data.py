"""Datasets, duration-bucketed batches and waveform-level augmentation for training.

Utterances are loaded on demand from their manifest (never kept as samples). Batches
are formed by total padded duration, so a batch of short clips holds more of them.
The sampler is a pure function of (seed, epoch), which makes resuming mid-epoch exact.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio
from .logs import warning
from .manifest import ManifestError, Utterance, filter_duration, read_manifest, write_jsonl


@dataclass
class DataConfig:
    train: str = ""
    dev: str | None = None
    min_duration: float = 0.3
    max_duration: float = 20.0
    batch_seconds: float = 120.0  # total padded audio per batch
    max_batch_size: int = 64
    dev_max_utterances: int | None = 300  # dev evaluation subset (seeded), None = all
    speed_perturb: list[float] | None = None  # e.g. [0.9, 1.0, 1.1]; turns the prefix cache off
    spec_augment: bool = False  # time and frequency masking of the backbone input; turns the prefix cache off
    # masking of the frozen prefix's output (the trainable layers' input); keeps the prefix cache on
    hidden_time_masks: int = 0  # time masks per utterance
    hidden_time_width: float = 0.05  # a time mask spans up to this fraction of the utterance
    hidden_channel_masks: int = 0  # channel masks per utterance
    hidden_channel_width: int = 32  # a channel mask spans up to this many channels
    hidden_noise: float = 0.0  # Gaussian noise, as a fraction of each utterance's hidden-state std

    @property
    def hidden_augment(self) -> bool:
        return bool(self.hidden_time_masks or self.hidden_channel_masks or self.hidden_noise)

    def check(self) -> None:
        if not self.train:
            raise ValueError("data.train: required (a manifest .jsonl)")
        if not 0 <= self.min_duration < self.max_duration:
            raise ValueError(f"data.min_duration {self.min_duration} must be >= 0 and < max_duration")
        if min(self.hidden_time_masks, self.hidden_channel_masks, self.hidden_channel_width) < 0 \
                or not 0 <= self.hidden_time_width <= 1 or self.hidden_noise < 0:
            raise ValueError("data.hidden_*: mask counts and widths must be >= 0, hidden_time_width in [0, 1], "
                             "hidden_noise >= 0")
        if self.batch_seconds < self.max_duration:
            raise ValueError(f"data.batch_seconds ({self.batch_seconds}) must be >= data.max_duration "
                             f"({self.max_duration}) so that every utterance fits in a batch")


def load_training_manifest(path: str | Path, cfg: DataConfig, need_text: bool, out_dir: Path | None,
                           name: str) -> list[Utterance]:
    """Read and check a manifest for training or evaluation.

    Missing audio files and (for ASR) empty transcripts are errors that name ``file:line``:
    training on a manifest with holes would silently lose data. Utterances outside the
    duration bounds are left out, counted, and listed in ``out_dir/rejected_<name>.jsonl``.
    """
    path = Path(path)
    utts = read_manifest(path)
    if not utts:
        raise ManifestError(f"{path}: the manifest has no utterances")
    problems = [f"{path}:{u.line}: audio file not found: {u.audio_path()}" for u in utts
                if not u.audio_path().is_file()]
    if need_text:
        problems += [f"{path}:{u.line}: empty transcript (id {u.id})" for u in utts if not u.text.strip()]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ManifestError(f"{len(problems)} unusable utterance(s) in {path}:\n  " + "\n  ".join(problems[:10])
                            + more + "\nfix them, or drop them with `speech-tl manifest filter` / re-run prepare")
    kept, rejected = filter_duration(utts, cfg.min_duration, cfg.max_duration)
    if rejected:
        warning(f"{path}: {len(rejected)} of {len(utts)} utterances outside {cfg.min_duration:g}-"
              f"{cfg.max_duration:g} s left out" + (f" (listed in {out_dir}/rejected_{name}.jsonl)" if out_dir else ""))
        if out_dir is not None:
            write_jsonl(out_dir / f"rejected_{name}.jsonl", ({**u.to_dict(), "reason": r} for u, r in rejected))
    return kept


def subset(utts: list[Utterance], n: int | None, seed: int = 0) -> list[Utterance]:
    if n is None or len(utts) <= n:
        return utts
    idx = sorted(random.Random(seed).sample(range(len(utts)), n))
    return [utts[i] for i in idx]


class UtteranceDataset(torch.utils.data.Dataset):
    """Item ``i``: ``(wave (T,), index)``, 16 kHz mono float32."""

    def __init__(self, utterances: list[Utterance], sample_rate: int = 16000):
        self.utterances = utterances
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        u = self.utterances[i]
        duration = u.duration if u.offset is not None else None
        return load_audio(u.audio_path(), self.sample_rate, u.offset or 0.0, duration), i

    def load(self, i: int, epoch: int) -> tuple[torch.Tensor, int]:
        """Item ``i`` as seen in ``epoch`` (the same every epoch here; datasets with per-epoch crops differ).
        The loader's workers call this, so an item never depends on state set in the main process."""
        return self[i]

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]


def pad_waves(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of ``(T_i,)`` -> ``(B, max T)`` zero-padded and lengths ``(B,)``."""
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : w.numel()] = w
    return out, lengths


def collate(items: list[tuple[torch.Tensor, int]]) -> dict:
    waves, idx = zip(*items, strict=True)
    wave, lengths = pad_waves(list(waves))
    return {"wave": wave, "lengths": lengths, "index": torch.tensor(idx, dtype=torch.long)}


def duration_batches(durations: list[float], batch_seconds: float, max_batch_size: int, seed: int, epoch: int,
                     shuffle: bool = True) -> list[list[int]]:
    """Batches of indices whose padded duration (longest x count) stays within ``batch_seconds``.

    Sorted by duration (with a seeded jitter so batches differ between epochs), cut into
    batches, then the batch order is shuffled. Deterministic in (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    d = np.asarray(durations, dtype=np.float64)
    keys = d * (1 + 0.1 * rng.random(d.size)) if shuffle else d
    order = np.argsort(keys, kind="stable")
    batches, current, longest = [], [], 0.0
    for i in order:
        longest_new = max(longest, d[i])
        if current and (longest_new * (len(current) + 1) > batch_seconds or len(current) >= max_batch_size):
            batches.append(current)
            current, longest_new = [], d[i]
        current.append(int(i))
        longest = longest_new
    if current:
        batches.append(current)
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[p] for p in perm]
    return batches


def shard_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's share of the batches; every rank gets the same number (the last ones repeat)."""
    if world_size == 1:
        return batches
    per_rank = math.ceil(len(batches) / world_size)
    padded = batches + batches[: per_rank * world_size - len(batches)]
    return padded[rank::world_size]


# --------------------------------------------------------------------------- augmentation

def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int = 16000) -> torch.Tensor:
    """Kaldi-style speed perturbation: resample by ``factor`` (tempo and pitch change together).

    Computed in float64: torch's convolution sums in an order that depends on its thread count, and a loader
    worker runs one thread while the training process runs several; in float64 the differences vanish when the
    result is rounded to float32, so an item is the same wherever it is made."""
    if factor == 1.0:
        return wave
    from .audio import resample

    return resample(wave.double(), int(round(sample_rate * factor)), sample_rate).to(wave.dtype)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None,
                 freq_masks: int = 2, freq_width: int = 10, time_masks: int = 2, time_ratio: float = 0.05
                 ) -> torch.Tensor:
    """SpecAugment masking on ``(B, F, T)`` features (masked with each utterance's mean)."""
    out = feats.clone()
    B, F, _ = feats.shape
    for b in range(B):
        T = int(lengths[b])
        fill = out[b, :, :T].mean()
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(1, F - w), (1,), generator=generator))
            out[b, f0:f0 + w, :T] = fill
        for _ in range(time_masks):
            w = int(torch.randint(0, max(1, int(T * time_ratio)) + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, T - w), (1,), generator=generator))
            out[b, :, t0:t0 + w] = fill
    return out


def hidden_augment(hidden: torch.Tensor, lengths: torch.Tensor, cfg: DataConfig, generator: torch.Generator
                   ) -> torch.Tensor:
    """Mask and perturb hidden states ``(B, T, D)`` at the frozen boundary (valid lengths ``(B,)``).

    SpecAugment (Park et al., 2019) moved from the log-mel input to the frozen prefix's output, so
    the cached prefix stays valid: ``hidden_time_masks`` spans of up to ``hidden_time_width`` of each
    utterance are replaced by the utterance's mean hidden vector, ``hidden_channel_masks`` bands of up to
    ``hidden_channel_width`` channels are flattened to their mean over time, and Gaussian noise of
    ``hidden_noise`` times the utterance's std is added. Padding stays untouched. Draws come from
    ``generator`` only, so a seeded generator makes a step reproducible.
    """
    out = hidden.clone()
    B, _, D = hidden.shape
    for b in range(B):
        T = int(lengths[b])
        if T == 0:
            continue
        x = out[b, :T]
        mean_t = x.mean(dim=0)  # (D,)
        for _ in range(cfg.hidden_time_masks):
            w = int(torch.randint(0, max(1, int(T * cfg.hidden_time_width)) + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(1, T - w + 1), (1,), generator=generator))
            x[t0:t0 + w] = mean_t
        for _ in range(cfg.hidden_channel_masks):
            w = int(torch.randint(0, min(cfg.hidden_channel_width, D) + 1, (1,), generator=generator))
            c0 = int(torch.randint(0, max(1, D - w + 1), (1,), generator=generator))
            x[:, c0:c0 + w] = x[:, c0:c0 + w].mean(dim=0, keepdim=True)
        if cfg.hidden_noise:
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            x += cfg.hidden_noise * float(x.std()) * noise
    return out
