"""Weight-space interpolation between a fine-tuned checkpoint and its pretrained backbone (WiSE-FT).

Fine-tuning on a narrow target (a few dozen synthetic voices, one TTS corpus) improves that
target but can lose what made the pretrained model robust elsewhere. Wortsman et al. (2022,
"Robust fine-tuning of zero-shot models") showed that the straight line between the two weight
vectors keeps most of both: ``theta(alpha) = theta_0 + alpha * (theta_ft - theta_0)``, with
``alpha = 0.5`` a good default when no data of the shifted domain is at hand to choose it.

Only backbone parameters have a pretrained value; the new head and any projection keep their
fine-tuned values. Frozen layers are unchanged by construction (``theta_ft == theta_0`` there). A Whisper
decoder model (``model.head: decoder``) has a pretrained decoder too: it moves along the same line as the
encoder, so ``alpha`` 0 is the whole zero-shot model.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from .checkpoint import CheckpointError, fingerprint, load_tensors, read_meta, resolve_checkpoint, save_checkpoint
from .errors import InputError, OutputExistsError

TRAINING_ONLY = {"optimizer.pt", "state.pt", "scaler.pt"}


def interpolate_state(finetuned: dict[str, torch.Tensor], pretrained: dict[str, torch.Tensor], alpha: float,
                      prefix: str = "backbone.") -> tuple[dict[str, torch.Tensor], int]:
    """``theta_0 + alpha * (theta_ft - theta_0)`` for every floating-point ``prefix`` entry with a pretrained value.

    Returns the new state dict and how many tensors were interpolated. Shapes must agree.
    """
    out, moved = {}, 0
    for name, value in finetuned.items():
        base = pretrained.get(name[len(prefix):]) if name.startswith(prefix) else None
        if base is None or not value.is_floating_point():
            out[name] = value
            continue
        if base.shape != value.shape:
            raise CheckpointError(f"{name}: fine-tuned shape {tuple(value.shape)} but pretrained "
                                  f"{tuple(base.shape)}; is this checkpoint from another backbone?")
        out[name] = base.to(value.dtype) + alpha * (value - base.to(value.dtype))
        moved += 1
    return out, moved


def interpolate_checkpoint(checkpoint: str | Path, alpha: float, out: str | Path) -> dict:
    """Write a checkpoint folder at ``out`` whose backbone is ``alpha`` of the way from pretrained to ``checkpoint``.

    ``alpha`` 0 is the pretrained backbone (with the trained head), 1 the fine-tuned one. The new
    folder holds the same task files (config, vocabulary or speakers) and a ``meta.json`` that
    records the interpolation; it is evaluated and used like any checkpoint. Returns that meta.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"--alpha must be in [0, 1] (0: pretrained, 1: fine-tuned), got {alpha}")
    from .backbones import load_backbone

    src = resolve_checkpoint(checkpoint)
    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"--out {out} exists; interpolation writes a new checkpoint folder (remove it first, "
                                "or give another path)")
    if src.resolve().is_relative_to(out.resolve()):
        raise InputError(f"--out {out} would hold the checkpoint itself ({src}); give a new folder")
    meta = read_meta(src)
    config = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8")) if (src / "config.yaml").is_file() \
        else {}
    if ((config or {}).get("model") or {}).get("pretrained") is False:
        raise CheckpointError(f"{src}: trained from random initialisation (model.pretrained: false); "
                              "there is no pretrained point to interpolate towards")
    if ((config or {}).get("model") or {}).get("head") == "decoder":  # encoder and decoder both pretrained
        from .backbones.whisper_decoder import load_whisper_parts

        parts = load_whisper_parts(meta["backbone"])
        parts.encoder.pad_seconds = None
        pretrained = {**{f"backbone.{k}": v for k, v in parts.encoder.state_dict().items()},
                      **{f"head.{k}": v for k, v in parts.decoder.state_dict().items()}}
        state, moved = interpolate_state(load_tensors(src / "model.pt"), pretrained, alpha, prefix="")
    else:
        pretrained = load_backbone(meta["backbone"], pretrained=True).state_dict()
        state, moved = interpolate_state(load_tensors(src / "model.pt"), pretrained, alpha)
    if moved == 0:
        raise CheckpointError(f"{src}: no backbone parameter matches the pretrained {meta['backbone']!r}")
    meta = {k: v for k, v in meta.items() if k != "folder"}
    meta["interpolation"] = {"alpha": alpha, "finetuned": str(src), "pretrained": meta["backbone"],
                             "tensors": moved}
    files: dict[str, object] = {"model.pt": state}
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in TRAINING_ONLY and f.name not in ("model.pt", "meta.json"):
            files[f.name] = f
    meta["fingerprint"] = fingerprint(state)
    files["meta.json"] = meta
    save_checkpoint(out, files)
    return meta


def interpolate_run(run: str | Path, alpha: float, out: str | Path) -> dict:
    """WiSE-FT of a run folder into a new run folder ``out``: ``out/best`` (the interpolated checkpoint),
    ``out/config.yaml`` and ``out/summary.json``, which keeps the fine-tuned run's training cost (steps, minutes,
    parameters) but not its dev results (they are not this model's), and records the interpolation."""
    import json

    from .atomic import atomic_write_text

    run, out = Path(run), Path(out)
    if not (run / "summary.json").is_file():
        raise CheckpointError(f"{run}: not a run folder (no summary.json); give the folder `speech-tl train` wrote, "
                              "or interpolate a checkpoint without --as-run")
    if out.exists():
        raise OutputExistsError(f"--out {out} exists; interpolation writes a new run folder (remove it first, or "
                                "give another path)")
    meta = interpolate_checkpoint(run, alpha, out / "best")
    if (run / "config.yaml").is_file():
        atomic_write_text(out / "config.yaml", (run / "config.yaml").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    summary = {k: v for k, v in summary.items() if not k.startswith(("best_", "last_dev"))}
    summary["interpolation"] = {"alpha": alpha, "finetuned": str(run)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return meta
