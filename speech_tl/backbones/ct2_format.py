"""Reader for CTranslate2's ``model.bin`` (the format faster-whisper models ship in).

Layout (little-endian): ``u32 version``; if version >= 2 a name string; if >= 3 a ``u32``
revision; ``u32`` variable count; per variable: name string, ``u8`` rank, ``rank x u32``
dims, ``u8`` dtype, ``u32`` byte count, raw data; then ``u32`` alias count and
alias/target string pairs. A string is ``u16`` length (with a trailing NUL), then bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import SpeechTlError

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(SpeechTlError, ValueError):
    """A ``model.bin`` that does not follow the CTranslate2 layout."""


def _bf16_to_f32(raw: bytes) -> np.ndarray:
    u16 = np.frombuffer(raw, dtype=np.uint16)
    return (u16.astype(np.uint32) << 16).view(np.float32)


def read_ct2_model(path: str | Path | list[Path] | tuple[Path, ...]) -> tuple[dict[str, np.ndarray], dict]:
    """All variables of a CTranslate2 model as numpy arrays (aliases resolved), plus header info.

    ``path``: ``model.bin``, or the files whose concatenation is ``model.bin`` (a model split into parts to fit a
    package index's size limit; see :mod:`speech_tl.backbones.ct2_sources`). Anything left after the aliases, or
    missing inside a variable, is an error naming the file(s).

    bfloat16 variables are widened to float32; quantised (int8/int16) weights are scaled back to float32 with
    their ``*_scale`` variables (:func:`dequantize`); other dtypes are kept as stored.
    """
    if isinstance(path, list | tuple):
        parts = [Path(p) for p in path]
        data = b"".join(p.read_bytes() for p in parts)
        path = Path(" + ".join(str(p) for p in parts)) if len(parts) > 1 else parts[0]
    else:
        path = Path(path)
        data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {pos} (wanted {size} more bytes)")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    def string() -> str:
        nonlocal pos
        (n,) = take("<H")
        raw = data[pos:pos + n]
        pos += n
        return raw.rstrip(b"\0").decode("utf-8")

    (version,) = take("<I")
    if version > 10:
        raise CT2FormatError(f"{path}: unexpected version {version}; is this a CTranslate2 model.bin?")
    info = {"version": version}
    if version >= 2:
        info["name"] = string()
    if version >= 3:
        (info["revision"],) = take("<I")
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dtype_id,) = take("<B")
        (nbytes,) = take("<I")
        if dtype_id not in DTYPES:
            raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        raw = data[pos:pos + nbytes]
        if len(raw) != nbytes:
            raise CT2FormatError(f"{path}: truncated inside variable {name!r}")
        pos += nbytes
        dtype = DTYPES[dtype_id]
        arr = _bf16_to_f32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=dtype)
        variables[name] = arr.reshape(dims) if dims else arr.reshape(())
    if pos < len(data):
        (n_alias,) = take("<I")
        for _ in range(n_alias):
            alias, target = string(), string()
            if target in variables:
                variables[alias] = variables[target]
    if pos != len(data):
        raise CT2FormatError(f"{path}: {len(data) - pos} bytes after the model's end; a part is repeated or from "
                             "another model")
    return dequantize(variables, path), info


def dequantize(variables: dict[str, np.ndarray], path: str | Path = "model.bin") -> dict[str, np.ndarray]:
    """Quantised weights (``int8``/``int16`` with a ``<name>_scale``, as CTranslate2's converter writes them:
    ``stored = round(weight * scale)``, one scale per output row or one for the tensor) as float32 weights."""
    out = {k: v for k, v in variables.items() if not k.endswith("_scale")}
    for name, scale in variables.items():
        if not name.endswith("_scale"):
            continue
        base = name.removesuffix("_scale")
        if base not in variables:
            raise CT2FormatError(f"{path}: {name!r} has no quantised variable {base!r} beside it")
        weight, scale = variables[base], np.asarray(scale, dtype=np.float32)
        if weight.dtype.kind != "i":
            raise CT2FormatError(f"{path}: {name!r} scales {base!r}, which is not an integer tensor ({weight.dtype})")
        if scale.ndim == 1 and weight.ndim >= 1 and scale.shape[0] == weight.shape[0]:
            scale = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        elif scale.size != 1:
            raise CT2FormatError(f"{path}: {name!r} of shape {scale.shape} does not fit {base!r} of shape "
                                 f"{weight.shape}")
        out[base] = weight.astype(np.float32) / scale
    return out
