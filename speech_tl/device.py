"""Where inference runs: one rule for every command that runs a model (``--device auto|cpu|cuda[:N]``).

``auto`` is CUDA when a GPU is visible, else the CPU; ``cuda`` without a GPU is an error that says so,
never a silent fall-back to the CPU (a run that was meant to take minutes would take hours).
"""

from __future__ import annotations

import re

import torch

from .errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceError(InputError):
    """A device name that is not understood, or a device this machine does not have."""


def check_device_name(name: str) -> str:
    """``name`` if it is a device :func:`resolve_device` understands, else :class:`DeviceError` (a ValueError;
    no torch call)."""
    if not isinstance(name, str) or not _PATTERN.fullmatch(name.strip()):
        raise DeviceError(f"device {name!r}: expected {DEVICE_CHOICES}")
    return name.strip()


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a device).

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: no CUDA GPU is available here (torch.cuda.is_available() is False; "
                          f"torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s) here "
                          f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); give one of those, or --device auto")
    return dev
