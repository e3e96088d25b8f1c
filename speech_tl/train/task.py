"""The :class:`Task` base: every hook a task gives the training loop, with its default."""

from __future__ import annotations

import torch
from torch import nn

from ..data import UtteranceDataset
from ..freeze import FreezePlan


class Task:
    """What a task gives the loop: every hook the loop uses, with its default.

    Set by the subclass: ``name``; ``model`` (``forward(wave=, lengths=, hidden=, frozen_depth=)`` -> the
    task's output, with ``.backbone`` and usually ``.head``); ``plan`` (the :class:`FreezePlan`);
    ``train_set`` (an :class:`UtteranceDataset`); ``primary_metric`` (the dev metric that selects the best
    checkpoint, lower is better); and the methods :meth:`loss`, :meth:`evaluate`, :meth:`checkpoint_files`.
    """

    name: str = "task"
    cfg = None  # the run's whole config (a dataclass): written to config.yaml, compared on resume
    model: nn.Module
    plan: FreezePlan
    train_set: UtteranceDataset
    primary_metric: str = "loss"
    secondary_metric: str | None = None  # breaks ties of the primary metric (e.g. WER 1.0 early on)
    input_varies: str | None = None  # why the model input changes between epochs (turns the prefix cache off)

    @property
    def head(self) -> nn.Module | None:
        """The new layers on top of the backbone (their own learning rate; reported apart)."""
        return getattr(self.model, "head", None)

    def set_progress(self, progress: float) -> None:
        """Training progress 0..1 before each step, for schedules inside the task (domain confusion)."""

    def model_state(self) -> dict:
        """What a checkpoint's ``model.pt`` holds: the model's state dict (a task with adapters merges them in)."""
        return self.model.state_dict()

    def load_model_state(self, state: dict, folder) -> None:
        """Resume: put ``model.pt``'s ``state`` (of checkpoint ``folder``) back into the model."""
        self.model.load_state_dict(state)

    def model_inputs(self, indices: list[int]) -> dict:
        """More keyword arguments of the model's forward for the batch ``indices`` (e.g. the decoder's teacher-forced
        input tokens); none by default."""
        return {}

    def loss(self, output, indices: torch.Tensor) -> torch.Tensor:
        """The loss of a batch: ``output`` of the model, ``indices (B,)`` into ``train_set``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, device: torch.device) -> dict:
        """Dev metrics (floats; lower is better for the primary one)."""
        raise NotImplementedError

    def checkpoint_files(self) -> dict:
        """Files saved with every checkpoint besides the weights: name -> text, dict (JSON) or tensors."""
        return {}

    def report(self) -> dict:
        """Counts for the run's summary (e.g. utterances the loss could not use); empty when nothing to say."""
        return {}
