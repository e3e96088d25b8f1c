"""Checkpoint folders, written atomically and self-describing.

A checkpoint folder holds ``model.pt`` (state dict: every weight, the frozen backbone's too), ``meta.json`` (task,
backbone source and ``backbone_arch``, the JSON description that rebuilds the backbone without its source, see
:func:`speech_tl.backbones.checkpoint_backbone`; fingerprint, step, metrics), ``config.yaml`` (the resolved
config) and task files such as ``vocab.json``; a resumable one adds ``optimizer.pt`` and ``state.pt`` (step, epoch,
position, elapsed time, random-number-generator states). The folder is written under a
temporary name and renamed into place, so a kill at any moment leaves the old or the new one
complete (see :func:`save_checkpoint`; ``tests/test_kill.py`` kills real training processes).
Everything is loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import uuid
import zipfile
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
        # flattened first: a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()[:16]


def _sync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete a folder by renaming it away first, so a half-deleted folder never carries a name
    that is read (a kill inside rmtree leaves only a ``.trash-`` folder, which the next save removes)."""
    trash = path.with_name(f".{path.name.lstrip('.')}.trash-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _is_complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file()


def clean_stale(folder: str | Path) -> list[Path]:
    """Remove what killed saves of ``folder`` left beside it: ``.<name>.tmp-*`` and ``.<name>.trash-*``
    folders, and the ``.<name>.XXXXXXXX`` temporary folders of older versions when they hold only
    checkpoint files. ``.<name>.old`` is kept. Returns the removed paths."""
    folder = Path(folder)
    ours = re.compile(rf"^\.{re.escape(folder.name)}\.(tmp-|trash-|old\.trash-)")
    legacy = re.compile(rf"^\.{re.escape(folder.name)}\.[a-z0-9_]{{8}}$")
    removed = []
    for p in folder.parent.glob(f".{folder.name}.*"):
        if not p.is_dir() or p.name == f".{folder.name}.old":
            continue
        if ours.match(p.name) or (legacy.match(p.name) and all(
                f.suffix in (".pt", ".json", ".yaml", ".txt", ".arpa", ".bin") for f in p.iterdir())):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def save_checkpoint(folder: str | Path, files: dict[str, object]) -> Path:
    """Write ``files`` into ``folder`` so that a kill at any moment leaves a complete checkpoint.

    Values: tensors/state dicts (``.pt``, saved with torch.save), dicts (``.json``), strings
    (written as text, also for a ``.json`` name: already JSON, e.g. a ``tokenizer.json``), or a
    :class:`pathlib.Path` to copy.

    The new folder is written and synced under a temporary name. Then the current folder becomes
    ``.<name>.old``, the new one takes the name, and ``.old`` is removed. At every moment either
    ``folder`` or ``.<name>.old`` is complete (:func:`find_checkpoint` reads whichever is): ``.old`` is
    only removed while ``folder`` is complete, and a save that finds only ``.old`` (a kill between
    the renames) keeps it until the new folder is in place.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name, value in files.items():
            target = tmp / name
            if isinstance(value, Path):
                shutil.copyfile(value, target)
            elif name.endswith(".pt"):
                torch.save(value, target)
            elif name.endswith(".json") and not isinstance(value, str):
                target.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
            else:
                target.write_text(str(value), encoding="utf-8")
        for f in tmp.iterdir():  # make the data durable before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _sync_dir(tmp)
        old = folder.with_name(f".{folder.name}.old")
        if _is_complete(folder):
            if old.exists():
                _remove(old)
            os.replace(folder, old)
        elif folder.exists():  # an incomplete folder (not written by this function): never the only copy
            _remove(folder)
        os.replace(tmp, folder)
        _sync_dir(folder.parent)
        if old.exists():
            _remove(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def find_checkpoint(folder: str | Path) -> Path | None:
    """The folder itself, or the one a kill between the two renames left as ``.<name>.old``."""
    candidates = checkpoint_candidates(folder)
    return candidates[0] if candidates else None


def checkpoint_candidates(folder: str | Path) -> list[Path]:
    """The complete copies of a checkpoint, newest first: ``folder`` and/or ``.<name>.old``."""
    folder = Path(folder)
    return [p for p in (folder, folder.with_name(f".{folder.name}.old")) if _is_complete(p)]


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
    """``torch.load(path, weights_only=True)`` on the CPU; a truncated or corrupt file raises a
    :class:`CheckpointError` that names it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        detail = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else "no detail"
        raise CheckpointError(f"{path}: cannot be read as a checkpoint file ({type(e).__name__}: {detail}); it is "
                              "truncated or corrupt") from e
