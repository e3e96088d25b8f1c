"""Training audio through :class:`torch.utils.data.DataLoader`: decoding, resampling and waveform
augmentation in worker processes, so an accelerator does not wait on the CPU.

The trainer still decides everything that makes a run reproducible: the batch order is
:func:`speech_tl.data.duration_batches` (a pure function of seed and epoch) and a batch's utterances
are the ones the trainer asks for. The loader only turns ``(index, epoch)`` keys into waveforms, ahead
of time: :class:`BatchPlan` (the loader's batch sampler, iterated in the main process) yields, for each
batch of the epoch from the resume position on, the keys that still need audio (all of them, or those
not yet in the frozen-prefix cache). Every random draw of an item (speed perturbation, a speaker crop)
is seeded by ``(seed, epoch, index)``, never by the worker, so 0, 1 or 8 workers give the same batches.

Shapes: a loaded batch is ``{"wave": (B, T) float32, "lengths": (B,), "index": (B,), "rejected":
[(index, reason)]}``; a batch that needs no audio comes back with ``B == 0``. Utterances whose audio
fails the waveform checks come back in ``rejected``, not in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .audio import AudioChecks, AudioError, check_waveform
from .data import UtteranceDataset, collate, speed_perturb


class BatchPlan(torch.utils.data.Sampler):
    """The keys the loader loads: one list of ``(index, epoch)`` per training batch, in training order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.epoch = 0
        self.needs_audio: Callable[[int], bool] | None = None

    def set(self, batches: list[list[int]], epoch: int, needs_audio: Callable[[int], bool] | None = None) -> None:
        """The batches still to run this epoch; ``needs_audio(index)`` leaves out utterances already cached.

        ``needs_audio`` is asked when a batch is prefetched: an utterance appears once per epoch, so an
        answer cannot go stale before its batch is used (the trainer loads any that did, e.g. after a
        gradual-unfreezing step emptied the cache).
        """
        self.batches, self.epoch, self.needs_audio = batches, epoch, needs_audio

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches:
            yield [(i, self.epoch) for i in batch if self.needs_audio is None or self.needs_audio(i)]

    def __len__(self) -> int:
        return len(self.batches)


INTENDED_CLIPPING = AudioChecks(max_clipped_fraction=1.0)  # a simulated channel that clips on purpose


class TrainingItems(torch.utils.data.Dataset):
    """``(index, epoch)`` -> ``(wave (T,), index, rejection)``: the dataset's item for that epoch,
    speed-perturbed by a factor drawn from ``(seed, epoch, index)`` when ``speed_factors`` is given.

    Each waveform is checked (:func:`speech_tl.audio.check_waveform`: unreadable, NaN/Inf, silent,
    heavily clipped; not clipping where the manifest line says ``"clipping": "intended"``, as a simulated
    overdriven phone call does) before augmentation; a bad one comes back as an empty wave and ``rejection``, a
    message naming the file and the reason (None for a good item), so the trainer can leave it out and
    list it instead of stopping the run.
    """

    def __init__(self, dataset: UtteranceDataset, seed: int, speed_factors: list[float] | None = None):
        self.dataset, self.seed, self.speed_factors = dataset, seed, speed_factors

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, str | None]:
        index, epoch = key
        try:
            wave, _ = self.dataset.load(index, epoch)
            utt = self.dataset.utterances[index]
            check_waveform(wave, self.dataset.sample_rate, utt.audio_path(),
                           INTENDED_CLIPPING if utt.extra.get("clipping") == "intended" else AudioChecks())
        except AudioError as e:
            return torch.zeros(0), index, str(e)
        if self.speed_factors:
            factor = float(np.random.default_rng([self.seed, epoch, index]).choice(self.speed_factors))
            wave = speed_perturb(wave, factor)
        return wave, index, None


def collate_keys(items: list[tuple[torch.Tensor, int, str | None]]) -> dict:
    """:func:`speech_tl.data.collate` of the good items, with ``"rejected"``: ``[(index, reason)]`` of the bad
    ones; an empty batch when no item needed audio (or none was good)."""
    rejected = [(index, reason) for _, index, reason in items if reason is not None]
    good = [(wave, index) for wave, index, reason in items if reason is None]
    if not good:
        return {"wave": torch.zeros(0, 0), "lengths": torch.zeros(0, dtype=torch.long),
                "index": torch.zeros(0, dtype=torch.long), "rejected": rejected}
    return {**collate(good), "rejected": rejected}


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # a worker decodes one file at a time; more threads only contend with training


def make_loader(items: TrainingItems, plan: BatchPlan, num_workers: int, pin_memory: bool,
                prefetch_factor: int = 4) -> torch.utils.data.DataLoader:
    """A loader over ``plan``'s batches: ``num_workers`` persistent worker processes (0: in this process),
    ``prefetch_factor`` batches ahead per worker, pinned host memory for non-blocking copies to CUDA."""
    workers = {"persistent_workers": True, "prefetch_factor": prefetch_factor,
               "worker_init_fn": _worker_init} if num_workers > 0 else {}
    # its own generator: a DataLoader draws a seed for its workers on every new iterator, which would
    # otherwise come from the global RNG and shift dropout's draws depending on the number of workers
    return torch.utils.data.DataLoader(items, batch_sampler=plan, num_workers=num_workers, collate_fn=collate_keys,
                                       pin_memory=pin_memory, generator=torch.Generator().manual_seed(items.seed),
                                       **workers)
