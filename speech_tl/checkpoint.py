"""Checkpoint folders, written atomically and self-describing.

A checkpoint folder holds ``model.pt`` (state dict), ``meta.json`` (task, backbone source,
fingerprint, step, metrics), ``config.yaml`` (the resolved config) and task files such as
``vocab.json``; a resumable one adds ``optimizer.pt`` and ``state.pt`` (step, epoch,
position, elapsed time, random-number-generator states). The folder is written under a
temporary name and renamed into place, so a kill leaves either the old or the new one.
Everything is loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import SpeechTlError


class CheckpointError(SpeechTlError, ValueError):
    """A folder that is not a usable checkpoint (or one of another task)."""


def fingerprint(module: torch.nn.Module | dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, shapes and values (of a module or a state dict): identifies the exact weights."""
    h = hashlib.sha256()
    state = module if isinstance(module, dict) else module.state_dict()
    for name, p in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()[:16]


def save_checkpoint(folder: str | Path, files: dict[str, object]) -> Path:
    """Write ``files`` into ``folder`` atomically.

    Values: tensors/state dicts (``.pt``, saved with torch.save), dicts (``.json``), strings
    (written as text), or a :class:`pathlib.Path` to copy.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, value in files.items():
            target = tmp / name
            if isinstance(value, Path):
                shutil.copyfile(value, target)
            elif name.endswith(".pt"):
                torch.save(value, target)
            elif name.endswith(".json"):
                target.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
            else:
                target.write_text(str(value), encoding="utf-8")
        for f in tmp.iterdir():  # make the data durable before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def find_checkpoint(folder: str | Path) -> Path | None:
    """The folder itself, or the one a kill between the two renames left as ``.<name>.old``."""
    folder = Path(folder)
    if (folder / "meta.json").is_file():
        return folder
    old = folder.with_name(f".{folder.name}.old")
    if (old / "meta.json").is_file():
        return old
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (its ``best/``, else ``checkpoint/``) or a checkpoint folder itself."""
    path = Path(path)
    for candidate in (path, path / "best", path / "checkpoint"):
        found = find_checkpoint(candidate)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: no checkpoint here (expected meta.json, or a run folder with best/)")


def read_meta(folder: str | Path, task: str | None = None) -> dict:
    """``meta.json`` of a checkpoint; with ``task``, refuse a checkpoint of another task."""
    folder = Path(folder)
    found = find_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"{folder}: not a speech-tl checkpoint (no meta.json); give the folder written by "
                              "`speech-tl train` (its best/ or checkpoint/ subfolder, or the run folder)")
    meta = json.loads((found / "meta.json").read_text(encoding="utf-8"))
    if task is not None and meta.get("task") != task:
        raise CheckpointError(f"{folder}: this is a {meta.get('task')!r} checkpoint, not {task!r}; use "
                              f"`speech-tl evaluate {meta.get('task')} ...` for it")
    meta["folder"] = str(found)
    return meta


def load_tensors(path: str | Path):
    return torch.load(path, map_location="cpu", weights_only=True)
