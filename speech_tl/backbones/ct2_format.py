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

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(ValueError):
    """A ``model.bin`` that does not follow the CTranslate2 layout."""


def _bf16_to_f32(raw: bytes) -> np.ndarray:
    u16 = np.frombuffer(raw, dtype=np.uint16)
    return (u16.astype(np.uint32) << 16).view(np.float32)


def read_ct2_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """All variables of a CTranslate2 model as numpy arrays (aliases resolved), plus header info.

    bfloat16 variables are widened to float32; other dtypes are kept as stored.
    """
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
    return variables, info
