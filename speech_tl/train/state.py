"""Where a run is (:class:`TrainState`, what a checkpoint restores besides the weights), the random
generators' state it carries, and seeding.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class TrainState:
    """Where a run is: what a checkpoint restores besides the weights and the optimizer."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    position: int = 0  # batches of the current epoch already done
    elapsed: float = 0.0  # seconds of training so far, over all resumes
    best: float | None = None
    best_step: int | None = None
    nonfinite_steps: int = 0  # steps skipped because a loss was NaN or infinite
    empty_steps: int = 0  # steps skipped because every utterance of a batch had unusable audio

    def to_dict(self) -> dict:
        return {**asdict(self), "rng": rng_state()}

    @classmethod
    def from_dict(cls, state: dict) -> TrainState:
        set_rng_state(state["rng"])
        return cls(**{k: state[k] for k in ("step", "epoch", "position", "elapsed", "best", "best_step")},
                   nonfinite_steps=int(state.get("nonfinite_steps", 0)),
                   empty_steps=int(state.get("empty_steps", 0)))


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
